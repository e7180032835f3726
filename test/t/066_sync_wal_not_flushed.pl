# A failover slot that moves past what the standby has flushed: its ready
# copy stays where the standby has the WAL (never pointing beyond it), and
# catches up as soon as the standby has flushed that WAL, without waiting
# for the slot to move again on the primary.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby();
create_failover_slot($primary, 'wf');
ok(wait_for_slot_ready_advancing($primary, $standby, 'wf'), 'wf is ready');

# WAL stops flowing; the sync worker goes on through its own connection
ok(stop_wal_streaming($primary, $standby), 'the walreceiver stopped');

$primary->safe_psql('postgres', 'CREATE TABLE t (i int)');
$primary->safe_psql('postgres', 'INSERT INTO t VALUES (1)');
get_changes($primary, 'wf');
my $moved_to = $primary->safe_psql('postgres',
	"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'wf'");
ok( $standby->poll_query_until(
		'postgres',
		"SELECT remote_confirmed_flush_lsn = '$moved_to' FROM pg_slotsync.sync_status WHERE slot_name = 'wf'"
	),
	'the worker has seen the slot move');
is( $standby->safe_psql(
		'postgres',
		"SELECT confirmed_flush_lsn < '$moved_to' FROM pg_replication_slots WHERE slot_name = 'wf'"
	),
	't',
	'the copy does not point beyond the WAL the standby has');

# WAL flows again; the primary's slot stays where it is
$standby->safe_psql('postgres', 'ALTER SYSTEM RESET primary_conninfo');
$standby->reload;
ok( $standby->poll_query_until(
		'postgres',
		"SELECT confirmed_flush_lsn = '$moved_to' FROM pg_replication_slots WHERE slot_name = 'wf'"
	),
	'once the standby has the WAL, the copy catches up by itself');
ok(is_slot_ready($standby, 'wf'), 'and is ready');

$standby->stop;
$primary->stop;
done_testing();
