# Copies of slots older than the standby's sync when their history cannot
# be completed from the primary: never ready, with a reason that says why.
#  - the primary's slot lost its WAL (max_slot_wal_keep_size): invalidated;
#  - fetching is off (pg_slotsync.max_wal_fetch = 0): the copy waits for
#    its consumer, and says fetching is off;
#  - the standby removed WAL since it started: the copy waits, says so, and
#    is fetched after a restart of the standby.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby(
	sync => 0,
	primary_conf => "max_slot_wal_keep_size = 1MB\n",
	before_backup => sub {
		my ($p) = @_;
		# 'lost' loses its WAL to max_slot_wal_keep_size ...
		create_failover_slot($p, 'lost');
		$p->safe_psql('postgres', 'CREATE TABLE big (v text)');
		for (1 .. 2)
		{
			$p->safe_psql('postgres',
				"INSERT INTO big SELECT repeat('x', 1000) FROM generate_series(1, 2000)");
			$p->safe_psql('postgres', 'SELECT pg_switch_wal()');
		}
		$p->safe_psql('postgres', 'CHECKPOINT');
		# ... then 'kept' is created, older than the standby too
		$p->safe_psql('postgres',
			'ALTER SYSTEM SET max_slot_wal_keep_size = -1; SELECT pg_reload_conf()');
		create_failover_slot($p, 'kept');
		for (1 .. 2)
		{
			$p->safe_psql('postgres', "INSERT INTO big VALUES ('z')");
			$p->safe_psql('postgres', 'SELECT pg_switch_wal()');
		}
		$p->safe_psql('postgres', 'CHECKPOINT');
	});
is( $primary->safe_psql('postgres',
		"SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost'"),
	'lost', 'the primary\'s slot lost its WAL');

sub status_of
{
	my ($name) = @_;
	return $standby->safe_psql('postgres',
		"SELECT state || '|' || coalesce(reason_code, '') || '|' || coalesce(reason, '') FROM pg_slotsync.sync_status WHERE slot_name = '$name'"
	);
}

# ---------------------------------------------------------------------
# Fetching off: the copy waits, and says why.
# ---------------------------------------------------------------------
$standby->append_conf('postgresql.conf',
	"pg_slotsync.max_wal_fetch = 0\npg_slotsync.sync_replication_slots = on\n");
$standby->reload;
ok( $standby->poll_query_until(
		'postgres',
		"SELECT state || '|' || reason_code FROM pg_slotsync.sync_status WHERE slot_name = 'lost'",
		'invalidated|remote_invalidated'),
	'a slot that lost its WAL on the primary is invalidated, not ready');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT reason_code FROM pg_slotsync.sync_status WHERE slot_name = 'kept'",
		'waiting_for_remote'),
	'with fetching off, the old slot\'s copy waits for its consumer');
like(status_of('kept'), qr/fetching history is off/, 'and says why');
ok(!is_slot_ready($standby, 'kept'), 'it is not ready');

# ---------------------------------------------------------------------
# The standby removed WAL since it started.
# ---------------------------------------------------------------------
$standby->append_conf('postgresql.conf',
	"pg_slotsync.sync_replication_slots = off\npg_slotsync.max_wal_fetch = 1GB\n");
$standby->reload;
ok(wait_for_no_worker($standby), 'sync is off again');
for (1 .. 3)
{
	$primary->safe_psql('postgres', 'SELECT pg_switch_wal()');
	$primary->safe_psql('postgres', "INSERT INTO big VALUES ('y')");
}
$primary->safe_psql('postgres', 'CHECKPOINT');
$primary->wait_for_catchup($standby);
$standby->safe_psql('postgres', 'CHECKPOINT');
$standby->append_conf('postgresql.conf',
	"pg_slotsync.sync_replication_slots = on\n");
$standby->reload;
ok( $standby->poll_query_until(
		'postgres',
		"SELECT reason_code FROM pg_slotsync.sync_status WHERE slot_name = 'kept'",
		'waiting_for_remote'),
	'after the standby removed WAL, the old slot\'s copy waits');
like(status_of('kept'), qr/the standby removed WAL up to/, 'and says why');

$standby->restart;
ok(wait_for_slot_ready($standby, 'kept'),
	'after a restart of the standby, its history is fetched and the copy is ready');
ok(!is_slot_ready($standby, 'lost'), 'the invalidated one is still not ready');

$standby->stop;
$primary->stop;
done_testing();
