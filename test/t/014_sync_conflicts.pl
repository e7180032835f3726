# Conflicts with slots the standby has of its own, under
# pg_slotsync.stale_slots = keep (059 tests replace, the default): a logical
# slot of the standby that was not synchronized and has the name of a
# failover slot of the primary is left alone (and reported), while the other failover slots
# are synchronized; once the DBA drops it, the primary's slot is synchronized
# under that name.  A synchronized slot a user drops on the standby is
# synchronized again.
#
# PostgreSQL 15 cannot create logical slots during recovery, so the standby's
# own slot is the primary's slot directory copied into the standby before it
# starts (pg_basebackup leaves pg_replslot out), without pg_slotsync's marker:
# to the standby it is a plain logical slot.
#
# Not tested: a failover slot whose database does not exist on the standby;
# a physical standby always has the primary's databases.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my $clash_positions;
my ($primary, $standby) = setup_primary_standby(
	standby_conf => "pg_slotsync.stale_slots = keep\n",
	before_backup => sub {
		my ($p) = @_;
		$p->safe_psql('postgres',
			"SELECT pg_slotsync.create_logical_replication_slot('clash', 'test_decoding')"
		);
	},
	before_standby_start => sub {
		my ($p, $s) = @_;
		$clash_positions = slot_positions($p, 'clash');
		copy_slot_to_standby($p, $s, 'clash');
	});

is( $standby->safe_psql(
		'postgres',
		"SELECT slot_type, synced, failover FROM pg_slotsync.replication_slots WHERE slot_name = 'clash'"
	),
	'logical|f|f',
	'the standby has a logical slot "clash" of its own');

my $offset = log_offset($standby);
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('clash', true)");
create_failover_slot($primary, 'ok1');
create_failover_slot($primary, 'ok2');

ok(wait_for_slot_ready($standby, 'ok1'),
	'another failover slot is synchronized despite the conflict');
ok(wait_for_slot_ready($standby, 'ok2'),
	'and a third one as well');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT state FROM pg_slotsync.sync_status WHERE slot_name = 'clash'",
		'conflict'),
	'sync_status reports the conflict');
isnt(
	$standby->safe_psql(
		'postgres',
		"SELECT coalesce(reason, '') FROM pg_slotsync.sync_status WHERE slot_name = 'clash'"
	),
	'',
	'with a reason');
ok( $standby->wait_for_log(
		qr/skipping synchronization of replication slot "clash".*\n.*DETAIL:.*not synchronized/,
		$offset),
	'the conflict is logged with its reason');
is( $standby->safe_psql(
		'postgres',
		"SELECT synced, temporary FROM pg_slotsync.replication_slots WHERE slot_name = 'clash'"
	),
	'f|f',
	'the standby\'s own slot is still not a synced slot');
is(slot_positions($standby, 'clash'),
	$clash_positions, 'and it was not touched');

# the primary's clash moves on: still left alone
$primary->safe_psql('postgres', 'CREATE TABLE t (id int)');
$primary->safe_psql('postgres', 'INSERT INTO t VALUES (1)');
get_changes($primary, 'clash');
get_changes($primary, 'ok1');
ok(wait_for_slot_match($primary, $standby, 'ok1'),
	'ok1 follows its primary slot');
is(slot_positions($standby, 'clash'),
	$clash_positions,
	'the standby\'s own slot does not follow the primary\'s slot of the same name'
);
is(sync_status($standby, 'clash') =~ /^conflict\|/ ? 1 : 0,
	1, 'still a conflict');

# The DBA drops the standby's own slot: the primary's is synchronized.
$standby->safe_psql('postgres', "SELECT pg_drop_replication_slot('clash')");
ok(wait_for_slot_ready_advancing($primary, $standby, 'clash'),
	'once the standby\'s own slot is dropped, the primary\'s is synchronized under its name'
);
ok(wait_for_slot_match($primary, $standby, 'clash'),
	'with the primary\'s positions');
is( $standby->safe_psql(
		'postgres',
		"SELECT state FROM pg_slotsync.sync_status WHERE slot_name = 'clash'"),
	'ready',
	'sync_status shows it ready');

# A user drops a synchronized slot on the standby: synchronized again.
$offset = log_offset($standby);
my $dropped = wait_until(
	sub {
		my ($ret) = $standby->psql('postgres',
			"SELECT pg_drop_replication_slot('ok2')");
		return $ret == 0;
	});
ok($dropped, 'a user can drop a synced slot on the standby');
ok( $standby->wait_for_log(
		qr/replication slot "ok2" was dropped on the standby/, $offset),
	'the sync worker notices that the slot was dropped on the standby');
ok(wait_for_slot_ready_advancing($primary, $standby, 'ok2'),
	'and synchronizes it again');
ok(wait_for_slot_match($primary, $standby, 'ok2'),
	'with the primary\'s positions');

ok(wait_for_slot_ready($standby, 'ok1'), 'ok1 stayed ready throughout');

$standby->stop;
$primary->stop;

done_testing();
