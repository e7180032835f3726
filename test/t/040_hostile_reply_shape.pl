# Hostile peers, part 1: replies of the wrong shape.  Whatever answers the
# sync worker's connection (a wrong pg_slotsync.primary_conninfo, a hijacked
# address, a proxy) must never crash the standby: a reply with no columns,
# too few columns or NULLs everywhere fails that cycle with a clear message,
# logged once however often it comes back, and changes no synced slot; once
# the real primary answers again, synchronization goes on.
#
# restart_after_crash is on, as in production: a crashing worker then makes
# the postmaster reinitialize (every session on the standby killed) in a
# loop, which the checks below catch as a new checkpointer.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;
use HostileTest;

my ($primary, $standby, $fake) =
  setup_with_fake(standby_conf => "restart_after_crash = on\n");

create_failover_slot($primary, 'hs1');
create_failover_slot($primary, 'hs2');
ok(wait_for_slot_ready_advancing($primary, $standby, 'hs1'), 'hs1 is ready');
ok(wait_for_slot_ready_advancing($primary, $standby, 'hs2'), 'hs2 is ready');
ok(wait_for_slot_match($primary, $standby, 'hs1'),
	'hs1 is synchronized through the pass-through fake');

my $offset = hostile_round(
	fake => $fake,
	standby => $standby,
	name => 'long-poll answered with zero columns',
	personality =>
	  { wait => { do => 'mutate', ops => [ { op => 'no_columns' } ] } },
	expect =>
	  qr/malformed reply to pg_slotsync\.wait_for_failover_slot_changes\(\): 0 columns instead of 8/
);

# The same trouble again and again is logged once, not at every retry.
my $connects = $fake->count('connect');
foreach (1 .. 3)
{
	$standby->reload;
	my $want = $connects + $_;
	wait_until(sub { $fake->count('connect') >= $want });
}
my @same = (log_since($standby, $offset) =~ /0 columns instead of 8/g);
is(scalar(@same), 1, 'the same malformed reply is logged once, not per retry');

hostile_round(
	fake => $fake,
	standby => $standby,
	name => 'failover_slots() answered with too few columns',
	personality => {
		slots => { do => 'mutate', ops => [ { op => 'keep_columns', n => 2 } ] }
	},
	expect =>
	  qr/malformed reply to pg_slotsync\.failover_slot_changes\(\): 2 columns instead of 12/
);

hostile_round(
	fake => $fake,
	standby => $standby,
	name => 'long-poll answered with NULLs everywhere',
	personality =>
	  { wait => { do => 'mutate', ops => [ { op => 'all_null' } ] } },
	expect =>
	  qr/malformed reply to pg_slotsync\.wait_for_failover_slot_changes\(\): column "change_token" of row 1 is null/
);

hostile_round(
	fake => $fake,
	standby => $standby,
	name => 'failover_slots() answered with NULLs everywhere',
	personality =>
	  { slots => { do => 'mutate', ops => [ { op => 'all_null' } ] } },
	expect =>
	  qr/malformed reply to pg_slotsync\.failover_slot_changes\(\): column "slot_name" of row 1 is null/
);

hostile_round(
	fake => $fake,
	standby => $standby,
	name => 'session setup answered with zero columns',
	personality =>
	  { setup => { do => 'mutate', ops => [ { op => 'no_columns' } ] } },
	expect =>
	  qr/could not check the primary server: malformed reply to pg_catalog\.set_config\(\): 0 columns instead of 1/
);

# ---------------------------------------------------------------------
# The real primary answers again: synchronization goes on.
# ---------------------------------------------------------------------
$fake->set();
$standby->reload;
advance_slot($primary, 'hs1');
ok(wait_for_slot_match($primary, $standby, 'hs1'),
	'once the primary answers again, the copy follows its slot');
ok(wait_for_slot_match($primary, $standby, 'hs2'), 'and so does the other');

done_testing();
