# Hostile peers, part 4: a peer that answers the long-poll at once, with
# nothing changed.  The worker must not spin: when a reply comes early and
# the change token (and everything else) is the same, it waits out the rest
# of the interval it asked for before its next cycle.  Counted here by the
# long-polls the fake answers per second, so no product counter is needed;
# the bound (20 a second) is far above what the worker asks for (one per
# 10 s idle, one per 100 ms while a slot is pending) and far below a spin.
# Once the real primary answers again, a change still reaches the standby a
# round trip later.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use SlotSyncTest;
use HostileTest;
use FakePrimary;

my ($primary, $standby, $fake) =
  setup_with_fake(standby_conf => "restart_after_crash = on\n");

create_failover_slot($primary, 'hs1');
ok(wait_for_slot_ready_advancing($primary, $standby, 'hs1'), 'hs1 is ready');
ok(wait_for_slot_match($primary, $standby, 'hs1'), 'hs1 is synchronized');

# Long-polls per second, counted over at least $secs seconds.
sub long_poll_rate
{
	my ($secs) = @_;
	my $n0 = $fake->count('wait');
	my $t0 = time();
	wait_until(sub { time() - $t0 >= $secs }, $secs + 10);
	my $n1 = $fake->count('wait');
	return ($n1 - $n0) / (time() - $t0);
}

my $before = synced_copies($standby);
my $marks = server_marks($standby);
my $offset = log_offset($standby);
$fake->set(FakePrimary::immediate_long_poll());
$standby->reload;

ok( wait_for_log_or_crash(
		$standby,
		qr/primary server answered the wait for failover slot changes early without a change/,
		$offset),
	'the early answer is logged');
my $rate = long_poll_rate(3);
cmp_ok($rate, '<', 20, 'the worker does not spin on immediate answers')
  or diag(sprintf('%.0f long-polls a second', $rate));
check_no_crash($standby, $offset, $marks, 'immediate answers');
is(synced_copies($standby), $before, 'no synced slot dropped or changed');
my @early =
  (log_since($standby, $offset) =~ /answered the wait for failover slot changes early/g);
is(scalar(@early), 1, 'and it is logged once');

# the worker is still at work meanwhile: a change gets through
advance_slot($primary, 'hs1');
ok(wait_for_slot_match($primary, $standby, 'hs1'),
	'a change still reaches the standby while the peer answers at once');

# ---------------------------------------------------------------------
# The real primary answers again: the one-round-trip path is as before.
# ---------------------------------------------------------------------
$fake->set();
$standby->reload;
ok(wait_until(sub { $fake->count('wait') > 0 }), 'long-polls go on');
advance_slot($primary, 'hs1');
ok(wait_for_slot_match($primary, $standby, 'hs1'),
	'the copy follows its slot');

done_testing();
