# The walsender's terminal guard.  With pg_slotsync.debug_gate_skip_attach
# = 'walsender' the gate does not attach to walsenders, as if a minor
# release had changed how a walsender starts streaming: a logical walsender
# of a failover slot must then be refused with a FATAL before it sends
# anything (a subscription with pgoutput, pg_recvlogical with
# test_decoding), a walsender of an ordinary slot streams (with a warning),
# and is refused as soon as its slot becomes a failover slot.  The standby
# is up and confirms everything: a refused consumer gets nothing although
# the gate would let it through.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;
use GateTest;

my $sb = $SlotSyncTest::STANDBY_SLOT;
my ($primary, $standby) = setup_primary_standby(
	sync => 0,
	primary_conf => qq(
pg_slotsync.synchronized_standby_slots = '$sb'
pg_slotsync.failover_slot_patterns = 'sub%'
pg_slotsync.debug_gate_skip_attach = 'walsender'
));
$primary->safe_psql('postgres', qq(
CREATE TABLE tab (id int PRIMARY KEY);
CREATE PUBLICATION pub FOR TABLE tab;
SELECT pg_slotsync.create_logical_replication_slot('fo_recv', 'test_decoding', failover => true);
SELECT pg_slotsync.create_logical_replication_slot('plain_recv', 'test_decoding');
));

sub refused
{
	return $primary->safe_psql('postgres',
		'SELECT refused FROM pg_slotsync.gate_status()');
}

# 1. a subscription (pgoutput) on a failover slot: refused, nothing applied
my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init;
$subscriber->append_conf('postgresql.conf',
	"wal_retrieve_retry_interval = 200ms\n");
$subscriber->start;
$subscriber->safe_psql('postgres', 'CREATE TABLE tab (id int PRIMARY KEY)');
my $log_offset = -s $primary->logfile;
$subscriber->safe_psql('postgres',
	"CREATE SUBSCRIPTION sub1 CONNECTION '"
	  . $primary->connstr
	  . " dbname=postgres' PUBLICATION pub WITH (copy_data = false)");
$primary->safe_psql('postgres',
	'INSERT INTO tab SELECT generate_series(1, 10)');
$primary->wait_for_catchup($standby);
my $fatal =
  qr/FATAL:  cannot stream failover replication slot "sub1" without waiting for the standbys/;
ok($primary->wait_for_log($fatal, $log_offset),
	'the walsender of a failover slot is refused with a FATAL');
# the subscriber retries; wait until it was refused again
wait_until(sub { my @n = slurp_file($primary->logfile, $log_offset) =~ /$fatal/g; @n >= 3 })
  or die 'the subscriber did not retry';
like(
	slurp_file($primary->logfile, $log_offset),
	qr/$fatal\n.*DETAIL:  pg_slotsync could not attach to this walsender's logical decoding/,
	'the message says why');
is($subscriber->safe_psql('postgres', 'SELECT count(*) FROM tab'),
	'0', 'the subscriber received nothing');
is( $primary->safe_psql(
		'postgres',
		"SELECT confirmed_flush_lsn < pg_current_wal_flush_lsn() FROM pg_replication_slots WHERE slot_name = 'sub1'"
	),
	't',
	'the failover slot did not move past the rows');
ok(refused() >= 3, 'gate_status() counts the refusals');

# 2. pg_recvlogical (test_decoding) on a failover slot: refused
my $recv = start_recvlogical($primary, 'fo_recv');
$recv->{run}->finish;
like(
	$recv->{err},
	qr/cannot stream failover replication slot "fo_recv" without waiting for the standbys/,
	'pg_recvlogical on a failover slot is refused');
ok(!-s $recv->{file}, 'and received nothing');

# 3. an ordinary slot streams (with a warning), until it becomes a failover
# slot while streaming
$log_offset = -s $primary->logfile;
$recv = start_recvlogical($primary, 'plain_recv');
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (11)');
ok(wait_for_file_match($recv->{file}, qr/INSERT: id\[integer\]:11\b/),
	'the walsender of an ordinary slot streams');
ok( $primary->wait_for_log(
		qr/WARNING:  pg_slotsync could not attach to the walsender of replication slot "plain_recv"/,
		$log_offset),
	'with a warning that it could not attach');
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('plain_recv', true)");
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (12)');
$recv->{run}->finish;
like(
	$recv->{err},
	qr/cannot stream failover replication slot "plain_recv" without waiting for the standbys/,
	'once its slot is a failover slot, it is refused');
unlike(slurp_file($recv->{file}), qr/id\[integer\]:12\b/,
	'before sending the next change');

# 4. attaching again: the subscriber gets every row
$primary->safe_psql('postgres',
	"ALTER SYSTEM SET pg_slotsync.debug_gate_skip_attach = 'none'");
$primary->reload;
$subscriber->poll_query_until('postgres', 'SELECT count(*) = 12 FROM tab')
  or die 'the subscriber did not catch up once the gate attached';
pass('with the gate attached, the subscriber receives every row');

$subscriber->stop;
$standby->stop;
$primary->stop;

done_testing();
