# Hostile peers and pg_slotsync.sync_replication_slots(): the function runs
# the worker's queries in the calling backend, so a malformed reply must
# make it fail with a clear ERROR, never crash that backend (which would
# make the postmaster reinitialize and kill every session on the standby),
# and change no synced slot.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;
use HostileTest;
use FakePrimary;

my ($primary, $standby, $fake) = setup_with_fake(
	sync => 0,
	standby_conf => "restart_after_crash = on\n");

# By hand through the pass-through fake: the copy is made and ready.
create_failover_slot($primary, 'ms1');
$primary->wait_for_catchup($standby);
my $h = start_bg_sql($standby,
	"SELECT pg_slotsync.sync_replication_slots(timeout => '120s')");
my $rounds = 0;
wait_until(
	sub {
		return 1 unless bg_running($h);
		advance_slot($primary, 'ms1') if ++$rounds % 5 == 0;
		return 0;
	},
	120);
my ($rc, $out, $err) = finish_bg_sql($h);
is($rc, 0, 'the function synchronizes through the pass-through fake')
  or diag($err);
ok(is_slot_ready($standby, 'ms1'), 'the copy is ready');

sub manual_round
{
	my ($name, $expect, %personality) = @_;
	my $before = synced_copies($standby);
	my $marks = server_marks($standby);
	my $offset = log_offset($standby);
	$fake->set(%personality);
	my ($ret, $stdout, $stderr) = ('', '', '');
	$ret = $standby->psql(
		'postgres',
		"SELECT pg_slotsync.sync_replication_slots(timeout => '30s')",
		stdout => \$stdout,
		stderr => \$stderr);
	isnt($ret, 0, "$name: the function fails");
	like($stderr, qr/ERROR:  .*$expect/, "$name: with a clear error");
	check_no_crash($standby, $offset, $marks, $name);
	is(forged_lines($standby, $offset, 'FORGED'), 0,
		"$name: no log line forged by the peer");
	is(synced_copies($standby), $before,
		"$name: no synced slot dropped or changed");
	return;
}

manual_round(
	'long-poll answered with zero columns',
	qr/could not fetch failover slots from the primary server: malformed reply to pg_slotsync\.wait_for_failover_slot_changes\(\): 0 columns instead of 8/,
	wait => { do => 'mutate', ops => [ { op => 'no_columns' } ] });
manual_round(
	'failover_slots() answered with too few columns',
	qr/could not fetch failover slots from the primary server: malformed reply to pg_slotsync\.failover_slot_changes\(\): 2 columns instead of 12/,
	slots => { do => 'mutate', ops => [ { op => 'keep_columns', n => 2 } ] });
manual_round(
	'failover_slots() answered with NULLs everywhere',
	qr/malformed reply to pg_slotsync\.failover_slot_changes\(\): column "slot_name" of row 1 is null/,
	slots => { do => 'mutate', ops => [ { op => 'all_null' } ] });
manual_round(
	'garbage LSN',
	qr/malformed reply to pg_slotsync\.failover_slot_changes\(\): column "restart_lsn" of row 1 is not a valid LSN: "garbage"/,
	FakePrimary::slots_set(restart_lsn => 'garbage'));
manual_round(
	'error with a forged line',
	qr/could not fetch failover slots from the primary server: fake failure\\nFORGED_ERROR_LINE/,
	slots => {
		do => 'error',
		message => "fake failure\nFORGED_ERROR_LINE pretending to be a log line"
	});
manual_round(
	'FATAL at connection with a forged line',
	qr/could not connect to the primary server: .*no entry\\nFORGED_STARTUP_LINE/,
	startup_error => "no entry\nFORGED_STARTUP_LINE pretending to be a log line");
manual_round(
	'connection closed mid-result',
	qr/could not fetch failover slots from the primary server: .*server closed the connection unexpectedly/,
	slots => { do => 'close', rows => 0 });
manual_round(
	'a made-up system identifier',
	qr/database system identifier differs between the primary and standby/,
	identity => {
		do => 'mutate',
		ops => [ { op => 'set', column => 'system_identifier', value => '42' } ]
	});

# The real primary answers again: the function works.
$fake->set();
($rc, $out, $err) = ('', '', '');
$rc = $standby->psql(
	'postgres',
	"SELECT pg_slotsync.sync_replication_slots(timeout => '60s')",
	stdout => \$out,
	stderr => \$err);
is($rc, 0, 'with the real answers back, the function succeeds') or diag($err);
ok(is_slot_ready($standby, 'ms1'), 'and the copy is ready');

done_testing();
