# Promotion: synchronized slots that are sync-ready stay (synced, failover,
# not temporary) and decode exactly the changes after their confirmed
# position; synchronized slots that are not ready are dropped.
#
# A copy that cannot be ready: the primary gives a new slot the oldest
# catalog_xmin any of its slots holds (here that of a plain, unconsumed slot),
# while the primary's physical slot for the standby already keeps only newer
# catalog rows (hot_standby_feedback never moves it back).  As in
# PostgreSQL 17, such a copy waits for the primary's slot to move on --
# "Synchronization could lead to data loss".
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby();
my $sb = $SlotSyncTest::STANDBY_SLOT;

$primary->safe_psql('postgres', 'CREATE TABLE t (id int)');
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.create_logical_replication_slot('oldplain', 'test_decoding')"
);
create_failover_slot($primary, 'f1');
ok(wait_for_slot_ready($standby, 'f1'), 'f1 is sync-ready')
  or die 'f1 never became ready';

# Move f1 (and so the standby's feedback) past oldplain's catalog_xmin.
my $n = 0;
ok( wait_until(
		sub {
			$n++;
			$primary->safe_psql('postgres', "INSERT INTO t VALUES (-$n)");
			$primary->safe_psql('postgres', 'CHECKPOINT');
			get_changes($primary, 'f1');
			return $primary->safe_psql(
				'postgres',
				"SELECT (SELECT catalog_xmin::text::bigint FROM pg_replication_slots WHERE slot_name = 'f1')
					  > (SELECT catalog_xmin::text::bigint FROM pg_replication_slots WHERE slot_name = 'oldplain')"
			) eq 't';
		}),
	'f1\'s catalog_xmin moved past the plain slot\'s');
ok(wait_for_slot_match($primary, $standby, 'f1'), 'f1 is synchronized');
ok( $primary->poll_query_until(
		'postgres',
		"SELECT (SELECT catalog_xmin FROM pg_replication_slots WHERE slot_name = '$sb')
			  = (SELECT catalog_xmin FROM pg_replication_slots WHERE slot_name = 'f1')"
	),
	'the primary keeps catalog rows for the standby from f1\'s catalog_xmin on'
);

my $offset = log_offset($standby);
create_failover_slot($primary, 'nr');
is( $primary->safe_psql(
		'postgres',
		"SELECT (SELECT catalog_xmin FROM pg_replication_slots WHERE slot_name = 'nr')
			  = (SELECT catalog_xmin FROM pg_replication_slots WHERE slot_name = 'oldplain')"
	),
	't',
	'the new slot got the plain slot\'s older catalog_xmin');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT state FROM pg_slotsync.sync_status WHERE slot_name = 'nr'",
		'not_ready'),
	'its copy is not ready');
ok( $standby->wait_for_log(
		qr/could not synchronize replication slot "nr".*\n.*DETAIL:\s+Synchronization could lead to data loss, because/,
		$offset),
	'and the log says why');
is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_slotsync.replication_slots
		 WHERE slot_name = 'nr' AND synced AND NOT temporary AND sync_state = 'ready'"),
	'0',
	'the copy is not offered as sync-ready');
isnt(
	$standby->safe_psql(
		'postgres',
		"SELECT coalesce(reason, '') FROM pg_slotsync.sync_status WHERE slot_name = 'nr'"
	),
	'',
	'sync_status gives a reason');

# changes after f1's confirmed position, not consumed on the primary
ok(wait_for_slot_match($primary, $standby, 'f1'),
	'f1 is synchronized before the last changes');
$primary->safe_psql('postgres', 'INSERT INTO t VALUES (5), (6), (7)');
$primary->safe_psql('postgres', 'INSERT INTO t VALUES (8)');
$primary->wait_for_catchup($standby);

$primary->stop;
$standby->promote;
ok( $standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
	'standby promoted');

ok(wait_for_slot_absent($standby, 'nr'),
	'the copy that was not ready is dropped at promotion');
is( $standby->safe_psql(
		'postgres',
		"SELECT synced, failover, temporary, plugin FROM pg_slotsync.replication_slots WHERE slot_name = 'f1'"
	),
	't|t|f|test_decoding',
	'the sync-ready slot stays, synced and failover, not temporary');
is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'oldplain'"),
	'0',
	'the plain slot was never on the standby');
ok(wait_for_no_worker($standby), 'no sync worker runs after promotion');

is( get_changes($standby, 'f1'),
	"BEGIN
table public.t: INSERT: id[integer]:5
table public.t: INSERT: id[integer]:6
table public.t: INSERT: id[integer]:7
COMMIT
BEGIN
table public.t: INSERT: id[integer]:8
COMMIT",
	'f1 decodes exactly the changes after its confirmed position on the promoted standby'
);
$standby->safe_psql('postgres', 'INSERT INTO t VALUES (9)');
is( get_changes($standby, 'f1'),
	"BEGIN\ntable public.t: INSERT: id[integer]:9\nCOMMIT",
	'and the changes made on the promoted standby');

my ($ret, $out, $err) = $standby->psql('postgres',
	"SELECT pg_slotsync.sync_replication_slots(timeout => '10s')");
like(
	$err,
	qr/replication slots can only be synchronized to a standby server/,
	'the promoted standby refuses to synchronize by hand');

$standby->stop;

done_testing();
