# Basic slot synchronization: a failover slot of the primary appears on the
# standby, becomes sync-ready and follows the primary's slot; slots that are
# not failover slots stay on the primary; a slot created on an idle primary
# becomes ready without further activity there; ready slots stay ready over a
# standby restart and over a crash of the sync worker.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

# restart_after_crash: the worker is killed with SIGKILL below
my ($primary, $standby) =
  setup_primary_standby(standby_conf => "restart_after_crash = on\n");

# ---------------------------------------------------------------------
# A failover slot is synchronized; a plain one is not.
# ---------------------------------------------------------------------
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.create_logical_replication_slot('plain', 'test_decoding')"
);
my $offset = log_offset($standby);
create_failover_slot($primary, 'fo1');

ok(wait_for_slot_ready($standby, 'fo1'),
	'failover slot becomes sync-ready on the standby')
  or die 'failover slot never became ready';
ok( $standby->wait_for_log(
		qr/newly created replication slot "fo1" is sync-ready now/, $offset),
	'readiness is logged');

is( $standby->safe_psql(
		'postgres',
		"SELECT slot_type, plugin, database, two_phase, failover, synced, temporary, sync_state, sync_reason IS NULL
		 FROM pg_slotsync.replication_slots WHERE slot_name = 'fo1'"),
	'logical|test_decoding|postgres|f|t|t|f|ready|t',
	'the copy is a persistent synced failover slot of the same plugin and database'
);
is( $standby->safe_psql(
		'postgres',
		"SELECT database, state, reason IS NULL, last_sync_time IS NOT NULL
		 FROM pg_slotsync.sync_status WHERE slot_name = 'fo1'"),
	'postgres|ready|t|t',
	'sync_status reports the slot ready');

ok(wait_for_slot_match($primary, $standby, 'fo1'),
	'the copy has the primary slot\'s catalog_xmin, restart_lsn and confirmed_flush_lsn'
);

is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'plain'"),
	'0',
	'a slot that is not a failover slot is not synchronized');
is( $standby->safe_psql(
		'postgres',
		"SELECT string_agg(slot_name::text, ',' ORDER BY slot_name) FROM pg_slotsync.sync_status"
	),
	'fo1',
	'sync_status lists the failover slot only');

# The plain slot goes: left behind, its old catalog_xmin would be given to
# every slot created later on the primary, older than what the primary now
# keeps for this standby, and such a slot (as in PostgreSQL 17) cannot be
# ready until its consumer moves it -- not what the idle case below is about.
$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('plain')");

# ---------------------------------------------------------------------
# The copy follows the primary's slot as a consumer moves it.
# ---------------------------------------------------------------------
my $before = slot_positions($standby, 'fo1');
$primary->safe_psql('postgres',
	'CREATE TABLE t1 (id int PRIMARY KEY, v text)');
$primary->safe_psql('postgres',
	"INSERT INTO t1 SELECT g, 'x' FROM generate_series(1, 100) g");
$primary->safe_psql('postgres', 'CHECKPOINT');
$primary->safe_psql('postgres', "INSERT INTO t1 VALUES (101, 'y')");
my $changes = get_changes($primary, 'fo1');
like(
	$changes,
	qr/table public\.t1: INSERT: id\[integer\]:101 v\[text\]:'y'/,
	'changes decoded on the primary');
my $consumed_to = $primary->safe_psql('postgres',
	"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'fo1'"
);

ok(wait_for_slot_match($primary, $standby, 'fo1'),
	'after consumption on the primary the copy has the same catalog_xmin, restart_lsn and confirmed_flush_lsn'
);
isnt(slot_positions($standby, 'fo1'), $before, 'the copy moved');
is( $standby->safe_psql(
		'postgres',
		"SELECT confirmed_flush_lsn >= '$consumed_to' FROM pg_replication_slots WHERE slot_name = 'fo1'"
	),
	't',
	'the copy is confirmed up to where the primary\'s consumer got');
ok( wait_until(
		sub {
			$standby->safe_psql(
				'postgres',
				"SELECT remote_catalog_xmin, remote_restart_lsn, remote_confirmed_flush_lsn
				 FROM pg_slotsync.sync_status WHERE slot_name = 'fo1'") eq
			  slot_positions($primary, 'fo1');
		}),
	'sync_status shows the primary\'s positions');

# ---------------------------------------------------------------------
# A failover slot created on an idle primary becomes ready: nothing else
# happens on the primary, we only look at the standby.
# ---------------------------------------------------------------------
$primary->wait_for_catchup($standby);
$offset = log_offset($standby);
create_failover_slot($primary, 'idle1');
ok(wait_for_slot_ready($standby, 'idle1'),
	'slot created on an idle primary becomes sync-ready');
is(synced_slot_positions($standby, 'idle1'),
	slot_positions($primary, 'idle1'),
	'with the primary slot\'s positions');
ok( $standby->log_contains(
		qr/newly created replication slot "idle1" is sync-ready now/, $offset),
	'readiness of the idle slot is logged');

# ---------------------------------------------------------------------
# A clean restart of the standby keeps ready slots ready.
# ---------------------------------------------------------------------
my %pos = map { $_ => slot_positions($standby, $_) } qw(fo1 idle1);
$offset = log_offset($standby);
$standby->restart;
foreach my $s (qw(fo1 idle1))
{
	is( $standby->safe_psql(
			'postgres',
			"SELECT synced, temporary, failover FROM pg_slotsync.replication_slots WHERE slot_name = '$s'"
		),
		't|f|t',
		"$s is still a persistent synced failover slot after a restart");
	is(slot_positions($standby, $s), $pos{$s},
		"$s keeps its positions over the restart");
}
ok($standby->wait_for_log(qr/slot sync worker started/, $offset),
	'worker starts again after the restart');
ok(wait_for_slot_ready($standby, 'fo1'),   'fo1 is ready after the restart');
ok(wait_for_slot_ready($standby, 'idle1'), 'idle1 is ready after the restart');

$primary->safe_psql('postgres', "INSERT INTO t1 VALUES (102, 'z')");
like(get_changes($primary, 'fo1'), qr/id\[integer\]:102/,
	'more changes consumed on the primary');
ok(wait_for_slot_match($primary, $standby, 'fo1'),
	'the copy follows the primary again after the restart');

# ---------------------------------------------------------------------
# kill -9 of the worker: the server restarts, the worker comes back, the
# slots are still there and ready, and sync goes on.
# ---------------------------------------------------------------------
ok(wait_for_worker($standby), 'the sync worker is running');
my $pid = worker_pid($standby);
like($pid, qr/^\d+$/, 'found the worker\'s pid');
$offset = log_offset($standby);
kill 'KILL', $pid;
ok( $standby->wait_for_log(
		qr/all server processes terminated; reinitializing/, $offset),
	'the postmaster reinitializes after the worker\'s crash');
ok( wait_until(
		sub {
			my $p = eval { worker_pid($standby) } // '';
			return $p ne '' && $p ne $pid;
		}),
	'a new sync worker runs after the crash');
foreach my $s (qw(fo1 idle1))
{
	ok(wait_for_slot_ready($standby, $s), "$s is ready after the crash");
	is( $standby->safe_psql(
			'postgres',
			"SELECT synced, temporary, failover FROM pg_slotsync.replication_slots WHERE slot_name = '$s'"
		),
		't|f|t',
		"$s is still a persistent synced failover slot after the crash");
}

$primary->safe_psql('postgres', "INSERT INTO t1 VALUES (103, 'w')");
$primary->safe_psql('postgres', 'CHECKPOINT');
$primary->safe_psql('postgres', "INSERT INTO t1 VALUES (104, 'v')");
like(get_changes($primary, 'fo1'), qr/id\[integer\]:104/,
	'more changes consumed on the primary after the crash');
ok(wait_for_slot_match($primary, $standby, 'fo1'),
	'the standby catches up with the primary after the crash');
ok(wait_for_slot_match($primary, $standby, 'idle1'),
	'the idle slot is still equal to the primary\'s');
$standby->stop;
$primary->stop;

done_testing();
