# Nothing unsafe survives an abnormal exit.  What syncing leaves behind
# that nobody may use (copies that are not sync-ready, and the worker's
# anchor slot) would hold WAL for ever, and a not-ready copy must never
# pass for a failover slot.  It is removed when the server starts as a
# primary (after a crash, standby.signal removed), when sync is off and
# nobody syncs (also after a crash of the worker), and, without the
# library, by the cleanup query docs/reference.md gives for uninstalling.
use strict;
use warnings;
use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

# 'old' exists before the standby syncs: with fetching its history off, its
# copy waits for its consumer (not ready); 'fresh' is created while the
# worker runs (ready at once).
my $no_fetch = "pg_slotsync.max_wal_fetch = 0\n";
my ($primary, $standby) = setup_primary_standby(
	standby_conf => $no_fetch,
	before_backup => sub {
		create_failover_slot($_[0], 'old');
	});
create_failover_slot($primary, 'fresh');
ok(wait_for_slot_ready($standby, 'fresh'), 'a fresh slot is ready');

my $state_sql = "SELECT string_agg(slot_name || ':' || coalesce(sync_state, '-') || ':' || failover, ',' ORDER BY slot_name)
	FROM pg_slotsync.replication_slots WHERE slot_type = 'logical'";
ok( $standby->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_slotsync.replication_slots WHERE slot_name = 'old' AND sync_state = 'not_ready'"
	),
	'the old slot has a copy that is not ready');
is( $standby->safe_psql('postgres', $state_sql),
	'fresh:ready:true,old:not_ready:false,pg_slotsync_anchor:-:false',
	'a not-ready copy and the anchor are no failover slots');

# ---------------------------------------------------------------------
# Crash, then start as a primary.
# ---------------------------------------------------------------------
$standby->stop('immediate');
unlink($standby->data_dir . '/standby.signal')
  or die "could not remove standby.signal: $!";
my $offset = log_offset($standby);
$standby->start;
ok( $standby->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name IN ('old', 'pg_slotsync_anchor')"
	),
	'started as a primary, the server drops the not-ready copy and the anchor');
ok( $standby->log_contains(
		qr/dropped replication slot "old" of database with OID \d+ because the server runs as a primary/,
		$offset),
	'and logs the copy it dropped');
ok( $standby->log_contains(
		qr/dropped replication slot "pg_slotsync_anchor" of database with OID \d+ because the server runs as a primary/,
		$offset),
	'and the anchor');
is( $standby->safe_psql('postgres',
		'SELECT string_agg(slot_name, \',\' ORDER BY slot_name) FROM pg_slotsync.failover_slots()'),
	'fresh',
	'the ready copy stays, the only failover slot');
$standby->stop;

# ---------------------------------------------------------------------
# The worker crashes while sync is being turned off.
# ---------------------------------------------------------------------
my ($primary2, $standby2) = setup_primary_standby(
	primary_name => 'primary2',
	standby_name => 'standby2',
	standby_conf => "restart_after_crash = on\n$no_fetch",
	before_backup => sub {
		create_failover_slot($_[0], 'old2');
	});
ok( $standby2->poll_query_until(
		'postgres',
		"SELECT count(*) = 2 FROM pg_replication_slots WHERE slot_name IN ('old2', 'pg_slotsync_anchor')"
	),
	'a not-ready copy and the anchor exist');
# The worker cannot clean up: it is stopped while sync is turned off, then
# killed (which restarts the server processes).
my $pid = worker_pid($standby2);
kill 'STOP', $pid;
$standby2->safe_psql('postgres',
	'ALTER SYSTEM SET pg_slotsync.sync_replication_slots = off');
$standby2->reload;
$standby2->poll_query_until('postgres',
	"SELECT setting = 'off' FROM pg_settings WHERE name = 'pg_slotsync.sync_replication_slots'");
$offset = log_offset($standby2);
kill 'KILL', $pid;
ok( $standby2->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name IN ('old2', 'pg_slotsync_anchor')",
		't'),
	'after the crash, with sync off, nothing is left');
ok( $standby2->log_contains(
		qr/dropped replication slot "old2" of database with OID \d+ because slot synchronization is off/,
		$offset),
	'the launcher says so');

# ---------------------------------------------------------------------
# Uninstalled: the documented cleanup query does the same by hand.
# ---------------------------------------------------------------------
$standby2->safe_psql('postgres',
	'ALTER SYSTEM SET pg_slotsync.sync_replication_slots = on');
$standby2->reload;
ok( $standby2->poll_query_until(
		'postgres',
		"SELECT count(*) = 2 FROM pg_replication_slots WHERE slot_name IN ('old2', 'pg_slotsync_anchor')"
	),
	'syncing again: a not-ready copy and the anchor');
$standby2->stop('immediate');
$standby2->append_conf('postgresql.conf',
	"shared_preload_libraries = ''\npg_slotsync.sync_replication_slots = off\n");
$standby2->adjust_conf('postgresql.auto.conf', 'pg_slotsync.sync_replication_slots', undef);
$standby2->start;

my $top = dirname(dirname(dirname(__FILE__)));
open(my $fh, '<', "$top/docs/reference.md") or die "docs/reference.md: $!";
my $doc = do { local $/; <$fh> };
close $fh;
my ($cleanup) =
  $doc =~ /<!-- uninstall cleanup -->\s*```sql\n(.*?)```/s;
ok(defined $cleanup, 'docs/reference.md gives the cleanup query');
$standby2->safe_psql('postgres', $cleanup // 'SELECT 1');
is( $standby2->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name IN ('old2', 'pg_slotsync_anchor')"
	),
	'0',
	'the documented query removes the not-ready copy and the anchor');

$standby2->stop;
$primary->stop;
$primary2->stop;
done_testing();
