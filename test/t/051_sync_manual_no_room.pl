# More failover slots on the primary than the standby can hold copies of:
# the manual function never reports success, and names every slot that has
# no ready copy, including those it had no room to create or even record.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

# the standby has room for the anchor and three copies; with fetching off,
# copies of these slots (older than the call) wait for their consumer
# 30 slots are more than the status table holds (2 * max_replication_slots
# + 16 = 24 entries)
my ($primary, $standby) = setup_primary_standby(
	sync => 0,
	primary_conf => "max_replication_slots = 40\n",
	standby_conf => "max_replication_slots = 4\npg_slotsync.max_wal_fetch = 0\n");

my @names = map { "room$_" } 1 .. 30;
create_failover_slot($primary, $_) foreach @names;
$primary->wait_for_catchup($standby);

my ($ret, $out, $err) = $standby->psql('postgres',
	"SELECT pg_slotsync.sync_replication_slots(timeout => '3s')");
isnt($ret, 0, 'the call does not succeed');
like(
	$err,
	qr/timed out waiting for replication slots to become sync-ready/,
	'it times out');
foreach my $name (@names)
{
	like($err, qr/replication slot "$name" is/, "the detail names $name");
}
like($err, qr/max_replication_slots/,
	'and says which setting is too small');
cmp_ok(
	$standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_slotsync.sync_status WHERE reason_code = 'no_free_slot'"
	),
	'>',
	0,
	'sync_status shows the copies without room as no_free_slot');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'"),
	'0',
	'nothing is left behind');

$standby->stop;
$primary->stop;
done_testing();
