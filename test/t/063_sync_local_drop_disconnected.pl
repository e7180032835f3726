# A local logical slot dropped on the standby while the sync worker cannot
# reach the primary.  A drop normally cuts the worker's wait for the primary
# short, so that the next cycle sees it at once; with no session to cut
# short, it must not keep cutting the worker's reconnection attempts short
# (which spun the worker, never syncing again once the primary was back).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby(
	standby_conf => "pg_slotsync.stale_slots = keep\n");

# a logical slot of the standby's own, not a failover slot
$standby->stop;
$primary->safe_psql('postgres',
	"SELECT pg_create_logical_replication_slot('own', 'test_decoding')");
copy_slot_to_standby($primary, $standby, 'own');
$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('own')");
$standby->start;

create_failover_slot($primary, 'f1');
ok(wait_for_slot_ready_advancing($primary, $standby, 'f1'), 'f1 is ready');

$primary->stop('immediate');
ok( $standby->poll_query_until(
		'postgres', "SELECT state FROM pg_slotsync.sync_worker",
		'disconnected'),
	'the worker cannot reach the primary');
$standby->safe_psql('postgres', "SELECT pg_drop_replication_slot('own')");
my $dropped_at = $standby->safe_psql('postgres', 'SELECT now()');

$primary->start;
ok( $standby->poll_query_until(
		'postgres',
		"SELECT last_sync_time > '$dropped_at' FROM pg_slotsync.sync_worker"),
	'once the primary is back, the worker syncs again')
  or diag $standby->safe_psql('postgres',
	'SELECT state, cycles, last_error FROM pg_slotsync.sync_worker');
advance_slot($primary, 'f1');
ok(wait_for_slot_match($primary, $standby, 'f1'), 'and f1 follows its slot');

$primary->stop;
$standby->stop;
done_testing();
