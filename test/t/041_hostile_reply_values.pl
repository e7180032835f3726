# Hostile peers, part 2: replies of the right shape with values no primary
# sends.  Wrong column types, garbage text, absurd LSNs, slot and plugin
# names that are invalid or look like paths, a 200-character name that the
# name type would cut down to a real slot's name, a slot listed twice,
# thousands of slots, a serialized snapshot that is not bytea.  The
# standby checks every value before using any: a bad reply fails the cycle
# with a clear message (the offending value escaped) and changes no synced
# slot; values a primary could send (a position far ahead, thousands of
# slots) are handled as from a primary, without harm to the copies.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;
use HostileTest;
use FakePrimary;

my ($primary, $standby, $fake) =
  setup_with_fake(standby_conf => "restart_after_crash = on\n");

# a 63-character slot name: the longest there is
my $long = 'hs_' . ('x' x 60);
create_failover_slot($primary, 'hs1');
create_failover_slot($primary, $long);
ok(wait_for_slot_ready_advancing($primary, $standby, 'hs1'), 'hs1 is ready');
ok(wait_for_slot_ready_advancing($primary, $standby, $long),
	'the slot with the 63-character name is ready');
ok(wait_for_slot_match($primary, $standby, 'hs1'), 'hs1 is synchronized');

sub round
{
	my ($name, $expect, %personality) = @_;
	return hostile_round(
		fake => $fake,
		standby => $standby,
		name => $name,
		personality => \%personality,
		expect => $expect);
}

my $slots_reply = qr/malformed reply to pg_slotsync\.failover_slot_changes\(\): /;

# ---------------------------------------------------------------------
# Types and garbage
# ---------------------------------------------------------------------
round(
	'restart_lsn of type text',
	qr/${slots_reply}column "restart_lsn" has type OID 25 instead of 3220/,
	slots => {
		do => 'mutate',
		ops => [ { op => 'retype', column => 'restart_lsn', type => 25 } ]
	});
round(
	'garbage LSN',
	qr/${slots_reply}column "confirmed_flush_lsn" of row \d+ is not a valid LSN: "garbage"/,
	FakePrimary::slots_set(confirmed_flush_lsn => 'garbage'));
round(
	'LSN 0/0',
	qr/${slots_reply}column "restart_lsn" of row \d+ is not a valid LSN: "0\/0"/,
	FakePrimary::slots_set(restart_lsn => '0/0'));
round(
	'garbage xid',
	qr/${slots_reply}column "catalog_xmin" of row \d+ is not a valid xid: "12abc"/,
	FakePrimary::slots_set(catalog_xmin => '12abc'));
round(
	'garbage boolean',
	qr/${slots_reply}column "invalidated" of row \d+ is not a valid boolean: "yes"/,
	FakePrimary::slots_set(invalidated => 'yes'));
round(
	'garbage change token',
	qr/malformed reply to pg_slotsync\.wait_for_failover_slot_changes\(\): column "change_token" of row 1 is not a valid bigint: "1e9"/,
	wait => {
		do => 'mutate',
		ops => [ { op => 'set', column => 'change_token', value => '1e9' } ]
	});

# ---------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------
round(
	'path-like slot name',
	qr/${slots_reply}row \d+: "\.\.\/\.\.\/global" is not a valid replication slot name/,
	FakePrimary::slots_set(_slot => 'hs1', slot_name => '../../global'));
round(
	'format-string slot name',
	qr/${slots_reply}row \d+: "%s%n" is not a valid replication slot name/,
	FakePrimary::slots_set(_slot => 'hs1', slot_name => '%s%n'));
round(
	'slot name with a newline',
	qr/${slots_reply}row \d+: "hs1\\nFORGED_NAME_LINE" is not a valid replication slot name/,
	FakePrimary::slots_set(_slot => 'hs1', slot_name => "hs1\nFORGED_NAME_LINE"));

# 200 characters, the first 63 of them a real slot's name, going backwards:
# cut down to a name, it would make the standby drop its ready copy
round(
	'200-character slot name',
	qr/${slots_reply}row \d+: "\Q$long\Ey+\.\.\." is not a valid replication slot name/,
	FakePrimary::slots_set(
		_slot => $long,
		restart_lsn => '0/1',
		confirmed_flush_lsn => '0/1',
		slot_name => $long . ('y' x 137)));
round(
	'path-like output plugin name',
	qr/${slots_reply}column "plugin" of row \d+ is not a valid output plugin name: "\.\.\/\.\.\/\.\.\/tmp\/evil"/,
	FakePrimary::slots_set(plugin => '../../../tmp/evil'));
round(
	'a slot listed twice',
	qr/${slots_reply}replication slot "hs1" is listed twice/,
	slots => {
		do => 'mutate',
		ops => [ { op => 'add_rows', count => 1, name => 'hs1' } ]
	});

# ---------------------------------------------------------------------
# Positions far ahead of anything: a primary could say that; the standby
# waits for WAL it does not have and shows what it was told.
# ---------------------------------------------------------------------
{
	my $name = 'LSNs FFFFFFFF/FFFFFFFF';
	my $before = synced_copies($standby);
	my $marks = server_marks($standby);
	my $offset = log_offset($standby);
	$fake->set(
		FakePrimary::slots_set(
			restart_lsn => 'FFFFFFFF/FFFFFFFF',
			confirmed_flush_lsn => 'FFFFFFFF/FFFFFFFF'));
	$standby->reload;
	ok( $standby->poll_query_until(
			'postgres',
			"SELECT remote_confirmed_flush_lsn = 'FFFFFFFF/FFFFFFFF' FROM pg_slotsync.sync_status WHERE slot_name = 'hs1'"
		),
		"$name: sync_status shows what the primary said");
	check_no_crash($standby, $offset, $marks, $name);
	is(synced_copies($standby), $before,
		"$name: no synced slot dropped or changed");
}

# ---------------------------------------------------------------------
# A serialized snapshot that is not bytea, offered when hs1 moves
# ---------------------------------------------------------------------
my $garbage_lsn;
{
	my $name = 'garbage serialized snapshot';
	my $before = slot_positions($standby, 'hs1');
	my $marks = server_marks($standby);
	my $offset = log_offset($standby);
	$fake->set(
		snapshot => {
			do => 'mutate',
			ops => [ { op => 'set', column => 'snapshot', value => 'garbage' } ]
		});
	$standby->reload;
	advance_slot($primary, 'hs1');
	$garbage_lsn = $primary->safe_psql('postgres',
		"SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'hs1'");
	ok( wait_for_log_or_crash(
			$standby,
			qr/could not fetch serialized snapshots from the primary server: malformed reply to pg_slotsync\.failover_slot_snapshots\(\): column "snapshot" of row 1 is not a valid bytea/,
			$offset),
		"$name: the standby's log says what is wrong");
	check_no_crash($standby, $offset, $marks, $name);
	is(slot_positions($standby, 'hs1'),
		$before, "$name: the copy did not move with a snapshot it cannot trust");
}

# ---------------------------------------------------------------------
# Thousands of slots (here 3000 copies of hs1's row): the standby makes
# what copies it has room for, and the real ones are untouched.
# ---------------------------------------------------------------------
$fake->set();
$standby->reload;
ok(wait_for_slot_match($primary, $standby, 'hs1'),
	'with the real answers back, hs1 follows its slot');
{
	my $name = 'thousands of slots';
	my $before = synced_copies($standby);
	my $marks = server_marks($standby);
	my $offset = log_offset($standby);
	$fake->set(
		slots => {
			do => 'mutate',
			ops => [ { op => 'add_rows', count => 3000, name => 'bulk_%05d' } ]
		});
	$standby->reload;
	ok( wait_for_log_or_crash(
			$standby,
			qr/could not synchronize replication slot "bulk_\d+"/, $offset),
		"$name: the standby says which it cannot synchronize");
	check_no_crash($standby, $offset, $marks, $name);
	is(synced_copies($standby), $before,
		"$name: the real copies are untouched");
}

# ---------------------------------------------------------------------
# The real primary answers again.
# ---------------------------------------------------------------------
$fake->set();
$standby->reload;
ok( $standby->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name LIKE 'bulk%'"
	),
	'copies of slots the primary does not have go away');
ok(wait_for_slot_match($primary, $standby, 'hs1'),
	'hs1 follows its slot');
my $snapfile = sprintf('pg_logical/snapshots/%X-%X.snap',
	map { hex } split(m{/}, $garbage_lsn));
if (-e $primary->data_dir . "/$snapfile")
{
	is(slurp_file($standby->data_dir . "/$snapfile"),
		slurp_file($primary->data_dir . "/$snapfile"),
		'the standby has the primary\'s serialized snapshot, not the garbage');
}
advance_slot($primary, $long);
ok(wait_for_slot_match($primary, $standby, $long),
	'the slot with the long name follows its slot');

done_testing();
