# pg_slotsync.sync_replication_slots(timeout): synchronizing by hand on a
# standby whose worker is off.  Refused on a primary, and while the worker or
# another call is synchronizing; returns once every failover slot of the
# primary is sync-ready; times out with the slots and reasons when one cannot
# become ready; can be cancelled.
#
# A failover slot that can never become ready: the standby has a logical slot
# of its own with that name ("mclash", copied into the standby before it
# starts, since PostgreSQL 15 cannot create logical slots in recovery), kept
# by pg_slotsync.stale_slots = keep.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby(
	sync => 0,
	standby_conf => "pg_slotsync.stale_slots = keep\n",
	before_backup => sub {
		my ($p) = @_;
		$p->safe_psql('postgres',
			"SELECT pg_slotsync.create_logical_replication_slot('mclash', 'test_decoding')"
		);
	},
	before_standby_start => sub {
		my ($p, $s) = @_;
		copy_slot_to_standby($p, $s, 'mclash');
	});

my $not_ready_sql =
  "SELECT count(*) FROM pg_slotsync.replication_slots WHERE synced AND (temporary OR sync_state IS DISTINCT FROM 'ready')";

# Run the function in the background; while it has not returned, move the
# given slots on the primary now and then (slots that existed before the
# standby synchronized anything may wait for that, as in PostgreSQL 17).
sub manual_sync_advancing
{
	my ($timeout, @slots) = @_;
	my $h = start_bg_sql($standby,
		"SELECT pg_slotsync.sync_replication_slots(timeout => '$timeout')");
	my $rounds = 0;
	wait_until(
		sub {
			return 1 unless bg_running($h);
			if (++$rounds % 5 == 0)
			{
				advance_slot($primary, $_) foreach @slots;
			}
			return 0;
		},
		120);
	return finish_bg_sql($h);
}

# ---------------------------------------------------------------------
# On a primary: refused.
# ---------------------------------------------------------------------
my ($ret, $out, $err) = $primary->psql('postgres',
	"SELECT pg_slotsync.sync_replication_slots(timeout => '10s')");
isnt($ret, 0, 'the function fails on a primary');
like(
	$err,
	qr/replication slots can only be synchronized to a standby server/,
	'with the reason');

ok(wait_for_no_worker($standby), 'no sync worker runs on the standby');
ok(!$standby->log_contains(qr/slot sync worker started/),
	'the worker never started');

# ---------------------------------------------------------------------
# By hand: creates the copies, returns when they are ready.
# ---------------------------------------------------------------------
create_failover_slot($primary, 'm1');
create_failover_slot($primary, 'm2');
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.create_logical_replication_slot('mplain', 'test_decoding')"
);
$primary->wait_for_catchup($standby);
is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name IN ('m1', 'm2')"
	),
	'0',
	'nothing is synchronized before the call');

my $offset = log_offset($standby);
($ret, $out, $err) = manual_sync_advancing('60s', 'm1', 'm2');
is($ret, 0, 'the function returns') or diag $err;
ok(is_slot_ready($standby, 'm1'), 'm1 is sync-ready when it returns');
ok(is_slot_ready($standby, 'm2'), 'm2 is sync-ready when it returns');
is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'mplain'"),
	'0',
	'a slot that is not a failover slot is not synchronized');
is( $standby->safe_psql(
		'postgres',
		"SELECT synced FROM pg_slotsync.replication_slots WHERE slot_name = 'mclash'"
	),
	'f',
	'the standby\'s own slot is untouched');
is($standby->safe_psql('postgres', $not_ready_sql),
	'0', 'no synced slot is left not ready');
is(worker_pid($standby), '', 'the call started no worker');

# A call copies the current positions.
$primary->safe_psql('postgres', 'CREATE TABLE t (id int)');
$primary->safe_psql('postgres', 'INSERT INTO t VALUES (1)');
like(get_changes($primary, 'm1'), qr/INSERT/, 'consumed on the primary');
create_failover_slot($primary, 'm3');
($ret, $out, $err) = manual_sync_advancing('60s', 'm3');
is($ret, 0, 'the function returns with a new slot') or diag $err;
ok(is_slot_ready($standby, 'm3'), 'the new slot is ready');
$primary->wait_for_catchup($standby);
$standby->safe_psql('postgres',
	"SELECT pg_slotsync.sync_replication_slots(timeout => '60s')");
foreach my $s (qw(m1 m2 m3))
{
	is(synced_slot_positions($standby, $s),
		slot_positions($primary, $s),
		"after a call $s has the primary slot's positions");
}

# ---------------------------------------------------------------------
# Refused while the worker synchronizes.
# ---------------------------------------------------------------------
$offset = log_offset($standby);
$standby->append_conf('postgresql.conf',
	"pg_slotsync.sync_replication_slots = on\n");
$standby->reload;
$standby->wait_for_log(qr/slot sync worker started/, $offset);
($ret, $out, $err) = $standby->psql('postgres',
	"SELECT pg_slotsync.sync_replication_slots(timeout => '10s')");
isnt($ret, 0, 'the function fails while the worker runs');
like(
	$err,
	qr/cannot synchronize replication slots concurrently/,
	'because it would synchronize concurrently');

$offset = log_offset($standby);
$standby->append_conf('postgresql.conf',
	"pg_slotsync.sync_replication_slots = off\n");
$standby->reload;
ok( $standby->wait_for_log(
		qr/replication slot synchronization worker will stop because "pg_slotsync.sync_replication_slots" is disabled/,
		$offset),
	'the worker stops');
ok(wait_for_no_worker($standby), 'the worker is gone');
foreach my $s (qw(m1 m2 m3))
{
	ok(is_slot_ready($standby, $s), "$s is still ready");
}

# ---------------------------------------------------------------------
# Time-outs: a failover slot that cannot become ready.
# ---------------------------------------------------------------------
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('mclash', true)");
$primary->wait_for_catchup($standby);

my $start = time();
($ret, $out, $err) = $standby->psql('postgres',
	"SELECT pg_slotsync.sync_replication_slots(timeout => '2s')");
my $elapsed = time() - $start;
isnt($ret, 0, 'the function fails when a slot cannot become ready');
like(
	$err,
	qr/timed out waiting for replication slots to become sync-ready/,
	'it times out');
like($err, qr/DETAIL:.*mclash/s, 'naming the slot that is not ready');
cmp_ok($elapsed, '>=', 1.9, 'after the timeout given');

create_failover_slot($primary, 'm4');
($ret, $out, $err) = $standby->psql('postgres',
	"SELECT pg_slotsync.sync_replication_slots(timeout => '1ms')");
isnt($ret, 0, 'a very short timeout fails');
like(
	$err,
	qr/timed out waiting for replication slots to become sync-ready/,
	'with a time-out');

is( $standby->safe_psql(
		'postgres',
		"SELECT synced FROM pg_slotsync.replication_slots WHERE slot_name = 'mclash'"
	),
	'f',
	'the standby\'s own slot is still untouched');
foreach my $s (qw(m1 m2 m3))
{
	ok(is_slot_ready($standby, $s), "$s is still ready after the time-outs");
}
is($standby->safe_psql('postgres', $not_ready_sql),
	'0', 'no synced slot is left not ready after a time-out');

# ---------------------------------------------------------------------
# statement_timeout, cancel and termination leave nothing behind.  A slot
# created now, before the call, is older than the call's anchor: with
# fetching its history off, its copy is genuinely not ready while nobody
# moves the slot on the primary.
# ---------------------------------------------------------------------
$standby->safe_psql('postgres',
	'ALTER SYSTEM SET pg_slotsync.max_wal_fetch = 0');
$standby->reload;
sub debris_is
{
	my ($n) = @_;
	return
	  "SELECT count(*) = $n FROM pg_replication_slots WHERE slot_name IN ('mwait', 'pg_slotsync_anchor')";
}
create_failover_slot($primary, 'mwait');
$primary->wait_for_catchup($standby);

my $bg = start_bg_sql($standby,
	"SELECT pg_slotsync.sync_replication_slots(timeout => '100s')");
ok($standby->poll_query_until('postgres', debris_is(2)),
	'while the call runs: a not-ready copy and the anchor');
$standby->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%sync_replication_slots(timeout => ''100s'')%' AND pid <> pg_backend_pid()"
);
my ($t_ret, $t_out, $t_err) = finish_bg_sql($bg);
isnt($t_ret, 0, 'the terminated call fails');
ok($standby->poll_query_until('postgres', debris_is(0)),
	'after the backend was terminated, nothing is left');

# statement_timeout, with the debris seen before it strikes
{
	local $ENV{PGOPTIONS} = '-c statement_timeout=3s';
	$bg = start_bg_sql($standby,
		"SELECT pg_slotsync.sync_replication_slots(timeout => '100s')");
}
ok($standby->poll_query_until('postgres', debris_is(2)),
	'while a call with a statement_timeout runs: a not-ready copy and the anchor');
($t_ret, $t_out, $t_err) = finish_bg_sql($bg);
like(
	$t_err,
	qr/canceling statement due to statement timeout/,
	'statement_timeout ends that call');
ok($standby->poll_query_until('postgres', debris_is(0)),
	'and nothing is left');

my $memory_sql =
  "SELECT count(*) FROM pg_backend_memory_contexts WHERE name LIKE 'pg_slotsync%'";
my ($st_ret, $st_out, $st_err) = $standby->psql(
	'postgres', "SET statement_timeout = '150ms';
	SELECT pg_slotsync.sync_replication_slots();
	SELECT pg_slotsync.sync_replication_slots();
	SELECT pg_slotsync.sync_replication_slots();
	RESET statement_timeout;
	$memory_sql",
	on_error_stop => 0);
like(
	$st_err,
	qr/canceling statement due to statement timeout/,
	'statement_timeout ends the call');
is($st_out, '0', 'the failed calls left no memory behind in the session');
ok($standby->poll_query_until('postgres', debris_is(0)),
	'after statement_timeout, no not-ready copy and no anchor');

$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('mwait')");
$primary->wait_for_catchup($standby);

# ---------------------------------------------------------------------
# Two calls at once; cancelling a call.
# ---------------------------------------------------------------------
create_failover_slot($primary, 'mwait2');
$primary->wait_for_catchup($standby);
$bg = start_bg_sql($standby,
	"SELECT pg_slotsync.sync_replication_slots(timeout => '100s')");
my $bg_query_sql =
  "FROM pg_stat_activity WHERE query LIKE '%sync_replication_slots(timeout => ''100s'')%' AND state = 'active' AND pid <> pg_backend_pid()";
ok( $standby->poll_query_until('postgres', "SELECT count(*) = 1 $bg_query_sql"),
	'a call is running in the background');

# until the background call has claimed synchronization, ours may get to
# run (and time out): try again
my $conflict_err = '';
ok( wait_until(
		sub {
			my ($r, $o, $e) = $standby->psql('postgres',
				"SELECT pg_slotsync.sync_replication_slots(timeout => '100ms')");
			$conflict_err = $e;
			return $e =~ /cannot synchronize replication slots concurrently/;
		}),
	'a second call is refused while the first one runs')
  or diag $conflict_err;
ok(bg_running($bg), 'the first call is still waiting');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT count(*) = 2 FROM pg_replication_slots WHERE slot_name IN ('mwait2', 'pg_slotsync_anchor')"
	),
	'it has a not-ready copy and the anchor');

$standby->safe_psql('postgres', "SELECT pg_cancel_backend(pid) $bg_query_sql");
my ($bg_ret, $bg_out, $bg_err) = finish_bg_sql($bg);
isnt($bg_ret, 0, 'the cancelled call fails');
like($bg_err, qr/canceling statement due to user request/,
	'because it was cancelled');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name IN ('mwait2', 'pg_slotsync_anchor')"
	),
	'no not-ready copy and no anchor are left after a cancel');
$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('mwait2')");

# no conflict any more: a call succeeds again (the claim was released)
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('mclash', false)");
$primary->wait_for_catchup($standby);
($ret, $out, $err) = manual_sync_advancing('60s', 'm4');
is($ret, 0, 'a call succeeds after the cancelled one') or diag $err;
ok(is_slot_ready($standby, 'm4'), 'm4 is ready');
foreach my $s (qw(m1 m2 m3))
{
	ok(is_slot_ready($standby, $s), "$s is still ready");
}

$standby->stop;
$primary->stop;

done_testing();
