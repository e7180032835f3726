# The failover flag lives and dies with its slot: it survives a clean
# restart and a crash, is gone after a drop by any route, can be set while a
# consumer streams from the slot, and patterns apply on reload.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 'logical');
$node->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'pg_slotsync'
max_replication_slots = 10
));
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_slotsync');

sub flag_of
{
	my ($n, $slot) = @_;
	return $n->safe_psql('postgres',
		"SELECT coalesce((SELECT failover FROM pg_slotsync.replication_slots WHERE slot_name = '$slot')::text, 'missing')"
	);
}

$node->safe_psql('postgres',
	"SELECT pg_slotsync.create_logical_replication_slot('fo', 'test_decoding', failover => true)"
);
$node->safe_psql('postgres',
	"SELECT pg_slotsync.create_logical_replication_slot('plain', 'test_decoding')"
);
is(flag_of($node, 'fo'),    'true',  'failover slot is flagged');
is(flag_of($node, 'plain'), 'false', 'plain slot is not');

# survives a clean restart and a crash
$node->restart;
is(flag_of($node, 'fo'),    'true',  'flag survives a clean restart');
is(flag_of($node, 'plain'), 'false', 'no flag appears on restart');
$node->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('plain', true)");
$node->stop('immediate');
$node->start;
is(flag_of($node, 'fo'),    'true', 'flag survives an immediate stop');
is(flag_of($node, 'plain'), 'true', 'a flag set just before the crash survives it');

# dropped through SQL, re-created with the same name: no flag
$node->safe_psql('postgres', "SELECT pg_drop_replication_slot('fo')");
is(flag_of($node, 'fo'), 'missing', 'slot is gone');
$node->safe_psql('postgres',
	"SELECT pg_slotsync.create_logical_replication_slot('fo', 'test_decoding')");
is(flag_of($node, 'fo'), 'false', 're-created slot starts without the flag');

# through a replication connection: CREATE_ and DROP_REPLICATION_SLOT
my $repl_connstr = $node->connstr('postgres') . ' replication=database';
my ($ret, $out, $err) = $node->psql(
	'postgres',
	'CREATE_REPLICATION_SLOT repl_slot LOGICAL test_decoding',
	extra_params => [ '-d', $repl_connstr ]);
is($ret, 0, 'slot created over the replication protocol') or diag $err;
$node->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('repl_slot', true)");
is(flag_of($node, 'repl_slot'), 'true', 'flag set on a protocol-created slot');
($ret, $out, $err) = $node->psql(
	'postgres',
	'DROP_REPLICATION_SLOT repl_slot',
	extra_params => [ '-d', $repl_connstr ]);
is($ret, 0, 'slot dropped over the replication protocol') or diag $err;
$node->psql(
	'postgres',
	'CREATE_REPLICATION_SLOT repl_slot LOGICAL test_decoding',
	extra_params => [ '-d', $repl_connstr ]);
is(flag_of($node, 'repl_slot'), 'false',
	'slot re-created over the protocol starts without the flag');

# a subscription's slot: flag set while the subscription streams from it,
# by pattern on reload, and gone with DROP SUBSCRIPTION
my $sub = PostgreSQL::Test::Cluster->new('subscriber');
$sub->init;
$sub->start;
$node->safe_psql('postgres',
	'CREATE TABLE tab (id int primary key); CREATE PUBLICATION pub FOR TABLE tab');
$sub->safe_psql('postgres', 'CREATE TABLE tab (id int primary key)');
my $pub_connstr = $node->connstr . ' dbname=postgres';
$sub->safe_psql('postgres',
	"CREATE SUBSCRIPTION sub1 CONNECTION '$pub_connstr' PUBLICATION pub");
$node->poll_query_until('postgres',
	"SELECT active FROM pg_replication_slots WHERE slot_name = 'sub1'")
  or die 'subscription did not start streaming';

$node->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('sub1', true)");
is( $node->safe_psql(
		'postgres',
		"SELECT active, failover FROM pg_slotsync.replication_slots WHERE slot_name = 'sub1'"
	),
	't|t',
	'flag set while the subscription is streaming from the slot');
$node->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('sub1', false)");
is(flag_of($node, 'sub1'), 'false', 'flag cleared while streaming');

$node->safe_psql('postgres',
	"ALTER SYSTEM SET pg_slotsync.failover_slot_patterns = 'nomatch, sub%'");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT failover FROM pg_slotsync.replication_slots WHERE slot_name = 'sub1'")
  or die 'pattern did not apply on reload';
pass('pattern applies on reload');
is(flag_of($node, 'plain'), 'true', 'flagged slot stays flagged');
is(flag_of($node, 'fo'), 'false', 'slot outside the pattern is not a failover slot');

# a bad value in the file keeps the old one and says why
$node->safe_psql('postgres',
	'ALTER SYSTEM RESET pg_slotsync.failover_slot_patterns');
$node->append_conf('postgresql.conf',
	"pg_slotsync.failover_slot_patterns = 'Sub%'");
my $log_offset = -s $node->logfile;
$node->reload;
ok( $node->wait_for_log(
		qr/invalid value for parameter "pg_slotsync.failover_slot_patterns": "Sub%"/,
		$log_offset),
	'a bad value at reload is reported');
is(flag_of($node, 'sub1'), 'true', 'and the previous patterns stay in force');
$node->safe_psql('postgres',
	"ALTER SYSTEM SET pg_slotsync.failover_slot_patterns = 'x%'");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT NOT failover FROM pg_slotsync.replication_slots WHERE slot_name = 'sub1'")
  or die 'pattern change did not apply';
pass('a pattern change that no longer matches clears it on reload');

$node->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('sub1', true)");
$sub->safe_psql('postgres', 'DROP SUBSCRIPTION sub1');
is(flag_of($node, 'sub1'), 'missing', 'DROP SUBSCRIPTION dropped the slot');
$node->safe_psql('postgres',
	"SELECT pg_slotsync.create_logical_replication_slot('sub1', 'pgoutput')");
is(flag_of($node, 'sub1'), 'false',
	'a slot re-created after DROP SUBSCRIPTION has no flag');
$sub->stop;

# on a standby: failover is refused for new and existing slots
$node->safe_psql('postgres',
	"SELECT pg_create_physical_replication_slot('sb_slot')");
$node->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'bk', has_streaming => 1);
$standby->append_conf('postgresql.conf', "primary_slot_name = 'sb_slot'");
$standby->start;
($ret, $out, $err) = $standby->psql('postgres',
	"SELECT pg_slotsync.create_logical_replication_slot('sb_fo', 'test_decoding', failover => true)"
);
like(
	$err,
	qr/cannot enable failover for a replication slot created on the standby/,
	'failover refused for a slot created on a standby');
($ret, $out, $err) = $standby->psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('plain', true)");
like(
	$err,
	qr/cannot enable failover for a replication slot on the standby/,
	'alter refused on a standby');
$standby->stop;

# wal_level below logical (a node of its own: a server with logical slots
# refuses to start at wal_level = replica)
$node->stop;
my $replica_level = PostgreSQL::Test::Cluster->new('replica_level');
$replica_level->init(allows_streaming => 1);
$replica_level->append_conf('postgresql.conf',
	"shared_preload_libraries = 'pg_slotsync'");
$replica_level->start;
$replica_level->safe_psql('postgres', 'CREATE EXTENSION pg_slotsync');
($ret, $out, $err) = $replica_level->psql('postgres',
	"SELECT pg_slotsync.create_logical_replication_slot('wl', 'test_decoding', failover => true)"
);
like($err, qr/logical decoding requires "?wal_level"? >= logical/,
	'wal_level below logical is refused');
is(flag_of($replica_level, 'wl'), 'missing', 'and leaves no slot behind');
$replica_level->stop;

# loaded any other way than shared_preload_libraries: a clear error
my $bare = PostgreSQL::Test::Cluster->new('bare');
$bare->init;
$bare->start;
($ret, $out, $err) = $bare->psql('postgres', 'CREATE EXTENSION pg_slotsync');
like(
	$err,
	qr/pg_slotsync must be loaded via "shared_preload_libraries"/,
	'CREATE EXTENSION without preloading is refused');
($ret, $out, $err) = $bare->psql('postgres', "LOAD 'pg_slotsync'");
like(
	$err,
	qr/pg_slotsync must be loaded via "shared_preload_libraries"/,
	'LOAD is refused');
$bare->stop;

done_testing();
