# Configuration: each missing requirement of slot synchronization is
# reported in the standby's log, and fixing it with a reload starts
# synchronizing without a restart; turning pg_slotsync.sync_replication_slots
# off stops the worker and turning it on starts it again.  None of it makes
# the server crash.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

# Starts with hot_standby_feedback off.
my ($primary, $standby) = setup_primary_standby(
	standby_conf => "hot_standby_feedback = off\n",
	wait_started => 0);
my $checkpointer_pid = $standby->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'");

my $conninfo_nodb =
  $primary->connstr . ' application_name=' . $standby->name;
my $conninfo_db = $primary->connstr . ' dbname=postgres';

create_failover_slot($primary, 'cfg1');

# ---------------------------------------------------------------------
# hot_standby_feedback
# ---------------------------------------------------------------------
ok( $standby->wait_for_log(
		qr/replication slot synchronization requires "hot_standby_feedback" to be enabled/,
		0),
	'hot_standby_feedback = off is reported');
$primary->wait_for_catchup($standby);
is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_slotsync.replication_slots WHERE synced"),
	'0',
	'nothing is synchronized without hot_standby_feedback');
ok(!$standby->log_contains(qr/slot sync worker started/),
	'the worker does not claim to have started while it cannot sync');

my $offset = log_offset($standby);
$standby->append_conf('postgresql.conf', "hot_standby_feedback = on\n");
$standby->reload;
ok( $standby->wait_for_log(
		qr/replication slot synchronization worker will restart because of a parameter change/,
		$offset),
	'the worker restarts on the change');
ok($standby->wait_for_log(qr/slot sync worker started/, $offset),
	'it logs that it started once it syncs');
ok(wait_for_slot_ready_advancing($primary, $standby, 'cfg1'),
	'with hot_standby_feedback on, the slot becomes ready');

# ---------------------------------------------------------------------
# no dbname in primary_conninfo
# ---------------------------------------------------------------------
$offset = log_offset($standby);
$standby->append_conf('postgresql.conf',
	"primary_conninfo = '$conninfo_nodb'\n");
$standby->reload;
ok( $standby->wait_for_log(
		qr/replication slot synchronization requires "dbname" to be specified in "primary_conninfo"/,
		$offset),
	'primary_conninfo without dbname is reported');
create_failover_slot($primary, 'cfg2');
$primary->wait_for_catchup($standby);
is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'cfg2'"),
	'0',
	'nothing new is synchronized without a dbname');
is( $standby->safe_psql(
		'postgres',
		"SELECT synced, temporary FROM pg_slotsync.replication_slots WHERE slot_name = 'cfg1'"
	),
	't|f',
	'the ready slot stays');

# pg_slotsync.primary_conninfo, with a dbname, is what the worker uses
$offset = log_offset($standby);
$standby->append_conf('postgresql.conf',
	"pg_slotsync.primary_conninfo = '$conninfo_db'\n");
$standby->reload;
ok( $standby->wait_for_log(
		qr/replication slot synchronization worker will restart because of a parameter change/,
		$offset),
	'the worker restarts when pg_slotsync.primary_conninfo is set');
ok(wait_for_slot_ready_advancing($primary, $standby, 'cfg2'),
	'with pg_slotsync.primary_conninfo, slots are synchronized');
ok(wait_for_slot_match($primary, $standby, 'cfg1'),
	'and the older one is still synchronized');

# ---------------------------------------------------------------------
# primary_slot_name
# ---------------------------------------------------------------------
$offset = log_offset($standby);
$standby->append_conf('postgresql.conf', "primary_slot_name = 'sb_x'\n");
$standby->reload;
ok( $standby->wait_for_log(
		qr/replication slot "sb_x" specified by "primary_slot_name" does not exist on primary server/,
		$offset),
	'a primary_slot_name missing on the primary is reported');

$offset = log_offset($standby);
$standby->append_conf('postgresql.conf', "primary_slot_name = ''\n");
$standby->reload;
ok( $standby->wait_for_log(
		qr/replication slot synchronization requires "primary_slot_name" to be set/,
		$offset),
	'an empty primary_slot_name is reported');

$standby->append_conf('postgresql.conf',
	"primary_slot_name = '$SlotSyncTest::STANDBY_SLOT'\n");
$standby->reload;
$primary->wait_for_catchup($standby);
create_failover_slot($primary, 'cfg3');
ok(wait_for_slot_ready_advancing($primary, $standby, 'cfg3'),
	'with primary_slot_name fixed, slots are synchronized again');

# ---------------------------------------------------------------------
# pg_slotsync.sync_replication_slots off and on
# ---------------------------------------------------------------------
$offset = log_offset($standby);
$standby->append_conf('postgresql.conf',
	"pg_slotsync.sync_replication_slots = off\n");
$standby->reload;
ok( $standby->wait_for_log(
		qr/replication slot synchronization worker will stop because "pg_slotsync.sync_replication_slots" is disabled/,
		$offset),
	'turning sync off stops the worker');
ok(wait_for_no_worker($standby), 'the worker is gone');
is( $standby->safe_psql(
		'postgres',
		"SELECT string_agg(slot_name || ':' || synced || ':' || temporary, ',' ORDER BY slot_name)
		 FROM pg_slotsync.replication_slots WHERE slot_name LIKE 'cfg%'"),
	'cfg1:true:false,cfg2:true:false,cfg3:true:false',
	'ready slots stay while sync is off');

$offset = log_offset($standby);
$standby->append_conf('postgresql.conf',
	"pg_slotsync.sync_replication_slots = on\n");
$standby->reload;
ok($standby->wait_for_log(qr/slot sync worker started/, $offset),
	'turning sync on starts the worker');
ok(wait_for_worker($standby), 'one worker runs');
create_failover_slot($primary, 'cfg4');
ok(wait_for_slot_ready_advancing($primary, $standby, 'cfg4'),
	'and slots are synchronized again');
$primary->safe_psql('postgres', 'CREATE TABLE t (id int)');
$primary->safe_psql('postgres', 'INSERT INTO t VALUES (1)');
get_changes($primary, 'cfg1');
ok(wait_for_slot_match($primary, $standby, 'cfg1'),
	'older slots follow their primary slots again');

# ---------------------------------------------------------------------
# The upstream is a standby (here the standby itself: same cluster, in
# recovery), as when an HA tool points a standby at a member that has
# taken the leader key but is not promoted yet.
# ---------------------------------------------------------------------
$offset = log_offset($standby);
$standby->append_conf('postgresql.conf',
	"pg_slotsync.primary_conninfo = '" . $standby->connstr . " dbname=postgres'\n");
$standby->reload;
ok( $standby->wait_for_log(
		qr/cannot synchronize replication slots from a standby server/,
		$offset),
	'a standby as upstream is reported as such');
ok( !$standby->log_contains(qr/malformed reply/, $offset),
	'not as a malformed reply');
$standby->append_conf('postgresql.conf', "pg_slotsync.primary_conninfo = ''\n");
$standby->reload;
ok(wait_for_slot_match($primary, $standby, 'cfg1'),
	'pointed at the primary again, it syncs');

# ---------------------------------------------------------------------
# Never a crash.
# ---------------------------------------------------------------------
is($standby->safe_psql('postgres', 'SELECT 1'),
	'1', 'the standby accepts queries');
is( $standby->safe_psql(
		'postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"),
	$checkpointer_pid,
	'the standby never went through a crash restart');
my $log = slurp_file($standby->logfile);
unlike($log, qr/terminated by signal/, 'no process was terminated by a signal');
unlike(
	$log,
	qr/(server process|background worker "pg_slotsync[^"]*") \(PID \d+\) exited with exit code [1-9]/,
	'no backend or pg_slotsync worker exited with an error');
unlike($log, qr/PANIC|TRAP:/, 'no PANIC or assertion failure');

$standby->stop;
$primary->stop;

done_testing();
