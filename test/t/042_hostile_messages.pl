# Hostile peers, part 3: what a peer says rather than what it answers.
# Notices (thousands per statement, with newlines that would forge log
# lines), an error whose text forges a log line, a FATAL at connection time
# doing the same, and a connection closed in the middle of a result.  Text
# from the peer reaches the standby's log only escaped, notices only at
# DEBUG1 and only a few of them; none of it crashes the standby or changes
# a synced slot, and a notice flood does not even stop synchronization.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;
use HostileTest;

my ($primary, $standby, $fake) = setup_with_fake(
	standby_conf => "restart_after_crash = on\nlog_min_messages = debug1\n");

create_failover_slot($primary, 'hs1');
ok(wait_for_slot_ready_advancing($primary, $standby, 'hs1'), 'hs1 is ready');
ok(wait_for_slot_match($primary, $standby, 'hs1'), 'hs1 is synchronized');

# ---------------------------------------------------------------------
# A notice flood: every statement is preceded by 2000 notices.
# ---------------------------------------------------------------------
{
	my $name = 'notice flood';
	my $marks = server_marks($standby);
	my $offset = log_offset($standby);
	my $notice = { do => 'pass', notices => 2000,
		notice => "fake notice\nFORGED_NOTICE_LINE pretending to be a log line" };
	$fake->set(default => $notice);
	$standby->reload;
	my $answered = $fake->count();

	# the flood does not stop synchronization
	advance_slot($primary, 'hs1');
	ok(wait_for_slot_match($primary, $standby, 'hs1'),
		"$name: the copy still follows its slot");
	ok(wait_until(sub { $fake->count() >= $answered + 5 }),
		"$name: the fake sent 2000 notices before each of at least five statements");

	check_no_crash($standby, $offset, $marks, $name);
	my $log = log_since($standby, $offset);
	is(forged_lines($standby, $offset, 'FORGED'), 0,
		"$name: no log line forged by the peer");
	like(
		$log,
		qr/DEBUG:  notice from the primary server: NOTICE:  fake notice\\nFORGED_NOTICE_LINE/,
		"$name: notices are logged at DEBUG1, escaped");
	my @logged = ($log =~ /FORGED_NOTICE_LINE/g);
	cmp_ok(scalar(@logged), '<=', 100,
		"$name: only a few of the notices reach the log");
	$fake->set();
}

# ---------------------------------------------------------------------
# An error whose message forges a log line
# ---------------------------------------------------------------------
hostile_round(
	fake => $fake,
	standby => $standby,
	name => 'error with a forged line',
	personality => {
		slots => {
			do => 'error',
			sqlstate => 'XX000',
			message => "fake failure\nFORGED_ERROR_LINE pretending to be a log line"
		}
	},
	expect =>
	  qr/could not fetch failover slots from the primary server: fake failure\\nFORGED_ERROR_LINE/
);

# ---------------------------------------------------------------------
# A FATAL at connection time that forges a log line
# ---------------------------------------------------------------------
hostile_round(
	fake => $fake,
	standby => $standby,
	name => 'FATAL at connection with a forged line',
	personality =>
	  { startup_error => "no entry\nFORGED_STARTUP_LINE pretending to be a log line" },
	expect =>
	  qr/could not connect to the primary server: .*no entry\\nFORGED_STARTUP_LINE/);

# ---------------------------------------------------------------------
# Connection closed in the middle of a result
# ---------------------------------------------------------------------
hostile_round(
	fake => $fake,
	standby => $standby,
	name => 'connection closed mid-result',
	personality => { slots => { do => 'close', rows => 1 } },
	expect =>
	  qr/could not fetch failover slots from the primary server: .*server closed the connection unexpectedly/
);

# ---------------------------------------------------------------------
# The real primary answers again.
# ---------------------------------------------------------------------
$fake->set();
$standby->reload;
advance_slot($primary, 'hs1');
ok(wait_for_slot_match($primary, $standby, 'hs1'),
	'once the primary answers again, the copy follows its slot');

done_testing();
