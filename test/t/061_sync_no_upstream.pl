# A standby whose HA tool finds no leader: Patroni then rewrites the
# standby's configuration without primary_conninfo and primary_slot_name,
# reloads it, and sets both again once a member leads.  Nothing streams to
# the standby meanwhile, so nothing can remove the catalog rows its ready
# copies need: the copies must stay ready (stale, after a while), the
# pre-promote check must let the standby be promoted, a promotion must keep
# the copies, and their consumer must resume from them.  (With
# primary_conninfo set and primary_slot_name unset, WAL streams from a
# primary that is not known to keep those rows: the copies are demoted,
# as before.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby();
my $slot_conf = "primary_slot_name = '$SlotSyncTest::STANDBY_SLOT'\n";
my $conninfo_conf =
  "primary_conninfo = '" . $primary->connstr . " dbname=postgres'\n";

$primary->safe_psql('postgres', 'CREATE TABLE d (id int)');
create_failover_slot($primary, 'kept');
$primary->safe_psql('postgres', 'INSERT INTO d VALUES (1)');
get_changes($primary, 'kept');
ok(wait_for_slot_match($primary, $standby, 'kept'),
	'the copy is ready and current');

# What the standby says of the copy: state and reason code.
sub copy_state
{
	return $standby->safe_psql('postgres',
		"SELECT state || ':' || coalesce(reason_code, '') FROM pg_slotsync.sync_status WHERE slot_name = 'kept'"
	);
}

# The leader is gone, and the HA tool, finding none, takes both settings
# away.  Wait until the worker has applied the change and tried again.
sub lose_leader
{
	my $offset = log_offset($standby);
	$primary->stop;
	$standby->append_conf('postgresql.conf',
		"primary_conninfo = ''\nprimary_slot_name = ''\n");
	$standby->reload;
	$standby->wait_for_log(
		qr/replication slot synchronization requires "primary_slot_name" to be set/,
		$offset);
	return $offset;
}

# Run pg_slotsync_ready --pre-promote; (exit status, stdout).
sub pre_promote_check
{
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			$standby->installed_command('pg_slotsync_ready'), '--pre-promote',
			'--state-file', "$PostgreSQL::Test::Utils::tmp_check/054.state",
			'-h', $standby->host, '-p', $standby->port
		],
		'>', \$out, '2>', \$err);
	return ($? >> 8, $out);
}

my $offset = lose_leader();
like(copy_state(), qr/^(ready|stale):/,
	'with no primary_conninfo and no primary_slot_name, the copy is not demoted');
ok( !$standby->log_contains(qr/replication slot "kept" is no longer sync-ready/,
		$offset),
	'the log does not say it was');
is( $standby->safe_psql('postgres',
		"SELECT plugin FROM pg_replication_slots WHERE slot_name = 'kept'"),
	'test_decoding', 'on disk it is still a usable copy');
my ($rc, $out) = pre_promote_check();
is($rc, 0, 'the pre-promote check allows the promotion')
  or diag($out);

# A leader again, with the same slot name: the copy is confirmed, not made
# again.
$offset = log_offset($standby);
$standby->append_conf('postgresql.conf', $conninfo_conf . $slot_conf);
$primary->start;
$standby->reload;
$primary->safe_psql('postgres', 'INSERT INTO d VALUES (2)');
is( $standby->safe_psql('postgres',
		"SELECT pg_slotsync.wait_for_failover_ready('60 s')"),
	't',
	'streaming again, the copy is ready and caught up with the primary');
is(copy_state(), 'ready:', 'the view agrees');
ok( !$standby->log_contains(qr/replication slot "kept" is no longer sync-ready/,
		$offset),
	'it was never demoted');

# The leader goes again, and this standby is promoted: the consumer
# resumes from the copy and gets the row it had not consumed.
$primary->safe_psql('postgres', 'INSERT INTO d VALUES (3)');
$primary->wait_for_catchup($standby);
lose_leader();
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
like(
	get_changes($standby, 'kept'),
	qr/^BEGIN\ntable public\.d: INSERT: id\[integer\]:2\nCOMMIT\nBEGIN\ntable public\.d: INSERT: id\[integer\]:3\nCOMMIT$/,
	'after promotion the consumer resumes from the copy, missing nothing');

# The demotion that stays: WAL streams (primary_conninfo set) through no
# slot.
my $standby2 = PostgreSQL::Test::Cluster->new('standby2');
$standby->backup('b2');
$standby2->init_from_backup($standby, 'b2', has_streaming => 1);
$standby->safe_psql('postgres',
	"SELECT pg_create_physical_replication_slot('sb2_slot')");
$standby2->append_conf(
	'postgresql.conf', qq(
primary_slot_name = 'sb2_slot'
primary_conninfo = '${\ $standby->connstr} dbname=postgres'
hot_standby_feedback = on
pg_slotsync.sync_replication_slots = on
));
$standby2->start;
ok( $standby2->poll_query_until('postgres', ready_sql('kept')),
	'a standby of the new primary has a ready copy');
$offset = log_offset($standby2);
$standby2->append_conf('postgresql.conf', "primary_slot_name = ''\n");
$standby2->reload;
ok( $standby2->wait_for_log(
		qr/replication slot "kept" is no longer sync-ready\n.*DETAIL:  The primary is not known to keep the catalog rows it needs, because "primary_slot_name" is not set/,
		$offset),
	'streaming through no slot, the copy is demoted');

$standby2->stop;
$standby->stop;
done_testing();
