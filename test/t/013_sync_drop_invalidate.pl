# What happens to synchronized slots when their primary slot goes away or
# breaks: a slot dropped on the primary, or no longer a failover slot, is
# dropped on the standby; a slot invalidated on the primary is invalidated on
# the standby; a copy invalidated on the standby only (its own
# max_slot_wal_keep_size) is made good again once the primary's slot moves
# on; and none of this keeps other slots from being synchronized.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby();

$primary->safe_psql('postgres', 'CREATE TABLE t (id int, pad text)');

foreach my $s (qw(d1 d2 keep))
{
	create_failover_slot($primary, $s);
}
foreach my $s (qw(d1 d2 keep))
{
	ok(wait_for_slot_ready($standby, $s), "$s is sync-ready")
	  or die "$s never became ready";
}

# ---------------------------------------------------------------------
# Dropped on the primary: dropped on the standby.
# ---------------------------------------------------------------------
my $offset = log_offset($standby);
$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('d1')");
ok( $standby->wait_for_log(
		qr/dropped replication slot "d1" of database with OID \d+/, $offset),
	'the standby logs dropping d1');
ok(wait_for_slot_absent($standby, 'd1'), 'd1 is gone from the standby');
ok( wait_until(sub { sync_status($standby, 'd1') eq '' }),
	'd1 is gone from sync_status');

# ---------------------------------------------------------------------
# Failover flag cleared on the primary: dropped on the standby.
# ---------------------------------------------------------------------
$offset = log_offset($standby);
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('d2', false)");
ok( $standby->wait_for_log(
		qr/dropped replication slot "d2" of database with OID \d+/, $offset),
	'the standby logs dropping d2');
ok(wait_for_slot_absent($standby, 'd2'), 'd2 is gone from the standby');
is($primary->safe_psql('postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'd2'"),
	'1', 'd2 still exists on the primary');
ok(wait_for_slot_ready($standby, 'keep'), 'keep is still ready');

# Failover again: synchronized again.
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('d2', true)");
ok(wait_for_slot_ready_advancing($primary, $standby, 'd2'),
	'd2 is synchronized again once it is a failover slot again');
$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('d2')");
ok(wait_for_slot_absent($standby, 'd2'), 'd2 is dropped again');

# Fill the current WAL segment a little, switch to a new one and write there.
sub new_segment
{
	my ($node) = @_;
	$node->safe_psql('postgres',
		"INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g"
	);
	$node->safe_psql('postgres', 'SELECT pg_switch_wal()');
	$node->safe_psql('postgres',
		"INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 10) g");
	return;
}

# ---------------------------------------------------------------------
# Invalidated on the standby only: the standby's own
# max_slot_wal_keep_size removes WAL its copy needs.  The copy must not stay
# a ready slot without its WAL; once the primary's slot moves on, the
# standby has a ready copy again.
# ---------------------------------------------------------------------
create_failover_slot($primary, 'sinv');
ok(wait_for_slot_ready($standby, 'sinv'), 'sinv is sync-ready');

$standby->append_conf('postgresql.conf', "max_slot_wal_keep_size = 1MB\n");
$standby->reload;
$offset = log_offset($standby);
my $invalidated = 0;
for (my $i = 0; $i < 10 && !$invalidated; $i++)
{
	new_segment($primary);
	$primary->safe_psql('postgres', 'CHECKPOINT');
	$primary->wait_for_catchup($standby);
	$standby->safe_psql('postgres', 'CHECKPOINT');    # restartpoint
	$invalidated =
	  $standby->log_contains(qr/invalidating slot "sinv"/, $offset);
}
ok($invalidated, 'the copy of sinv was invalidated on the standby')
  or die 'the copy was never invalidated on the standby';

# From then on it is never shown ready: not by the views, whether or not
# the worker has looked at it yet, and not after the worker has.
my $sinv_state = "SELECT state || ' ' || coalesce(reason_code, '')
	FROM pg_slotsync.sync_status WHERE slot_name = 'sinv'";
isnt($standby->safe_psql('postgres', $sinv_state),
	'ready ', 'the invalidated copy is not shown ready');
ok( wait_until(
		sub {
			$standby->safe_psql('postgres', $sinv_state) =~
			  /^not_ready (waiting_for_remote|history_unavailable)$/;
		}),
	'the worker starts the copy over, not ready until the primary\'s slot moves'
) or diag $standby->safe_psql('postgres', $sinv_state);
{
	# reset the standby's limit, then move the primary's slot on
	$standby->append_conf('postgresql.conf', "max_slot_wal_keep_size = -1\n");
	$standby->reload;
	ok( wait_until(
			sub {
				return 1
				  if $standby->safe_psql(
					'postgres',
					"SELECT count(*) = 1 FROM pg_slotsync.replication_slots
					 WHERE slot_name = 'sinv' AND synced AND NOT temporary AND sync_state = 'ready'
					   AND wal_status IN ('reserved', 'extended')") eq 't';
				new_segment($primary);
				advance_slot($primary, 'sinv');
				return 0;
			}),
		'sinv is a ready copy with its WAL again after the primary\'s slot moved on'
	);
	ok(wait_for_slot_match($primary, $standby, 'sinv'),
		'and has the primary slot\'s positions');
}
$standby->append_conf('postgresql.conf', "max_slot_wal_keep_size = -1\n");
$standby->reload;

# ---------------------------------------------------------------------
# Invalidated on the primary: invalidated on the standby.  With a 1MB
# max_slot_wal_keep_size every slot left behind in an older WAL segment is
# invalidated by the next checkpoint, so only pinv is left to it.
# ---------------------------------------------------------------------
foreach my $s (qw(sinv keep))
{
	$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('$s')");
	ok(wait_for_slot_absent($standby, $s), "$s dropped on the standby");
}
create_failover_slot($primary, 'pinv');
ok(wait_for_slot_ready_advancing($primary, $standby, 'pinv'),
	'pinv is sync-ready')
  or die 'pinv never became ready';

$primary->safe_psql('postgres',
	"ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
$primary->reload;
my $lost = 0;
for (my $i = 0; $i < 10 && !$lost; $i++)
{
	new_segment($primary);
	# the standby's physical slot must not be invalidated as well
	wait_for_primary_slot_sync($primary)
	  or die 'standby\'s slot did not catch up';
	$primary->safe_psql('postgres', 'CHECKPOINT');
	$lost = $primary->safe_psql('postgres',
		"SELECT wal_status = 'lost' FROM pg_replication_slots WHERE slot_name = 'pinv'"
	) eq 't';
}
$primary->safe_psql('postgres',
	'ALTER SYSTEM RESET max_slot_wal_keep_size');
$primary->reload;
ok($lost, 'pinv is invalidated on the primary')
  or die 'could not invalidate pinv';
is( $primary->safe_psql(
		'postgres',
		"SELECT wal_status FROM pg_replication_slots WHERE slot_name = '$SlotSyncTest::STANDBY_SLOT'"
	),
	'reserved',
	'the standby\'s physical slot is fine');

ok( $standby->poll_query_until(
		'postgres',
		"SELECT coalesce((SELECT state FROM pg_slotsync.sync_status WHERE slot_name = 'pinv') = 'invalidated', false)
			OR coalesce((SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'pinv') = 'lost', false)"
	),
	'pinv is invalidated on the standby as well');
is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_slotsync.replication_slots
		 WHERE slot_name = 'pinv' AND sync_state = 'ready' AND wal_status <> 'lost'"),
	'0',
	'the standby does not offer pinv as a ready slot with WAL');

# other slots keep being synchronized
create_failover_slot($primary, 'after_inv');
ok(wait_for_slot_ready($standby, 'after_inv'),
	'a new failover slot is synchronized after the invalidation');
$primary->safe_psql('postgres', 'INSERT INTO t VALUES (0)');
get_changes($primary, 'after_inv');
ok(wait_for_slot_match($primary, $standby, 'after_inv'),
	'and follows its primary slot');

# dropping the invalidated slot on the primary drops it on the standby
$offset = log_offset($standby);
$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('pinv')");
ok(wait_for_slot_absent($standby, 'pinv'),
	'the invalidated slot is dropped on the standby once dropped on the primary'
);
# the line comes right after the drop: wait for it
ok( $standby->wait_for_log(
		qr/dropped replication slot "pinv" of database with OID \d+/, $offset),
	'and the drop is logged');

ok($standby->safe_psql('postgres', 'SELECT 1') eq '1',
	'the standby is alive');
$standby->stop;
$primary->stop;

done_testing();
