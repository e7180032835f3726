# Leftover logical slots on a syncing standby (a demoted primary's own
# slots), under pg_slotsync.stale_slots.
#
# The standby gets two logical slots of its own, copied in before it starts
# (PostgreSQL 15 cannot create logical slots in recovery; pg_basebackup and
# pg_rewind leave pg_replslot out): "clash", the name of a failover slot of
# the primary, and "oldpub", which is not a failover slot there.  Both hold
# back the primary's catalog_xmin through hot_standby_feedback.
#
# keep: both stay, sync_status reports the conflict, the view shows what
# they hold and no drop time.  replace: "clash" is dropped at once (its old
# position logged) and the primary's slot synchronized in its place;
# "oldpub" is shown with the time it will be dropped, and dropped once the
# grace period is over; then the primary's catalog_xmin moves on.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby(
	standby_conf => "pg_slotsync.stale_slots = keep\n",
	before_backup => sub {
		my ($p) = @_;
		$p->safe_psql('postgres',
			"SELECT pg_create_logical_replication_slot('clash', 'test_decoding')");
		$p->safe_psql('postgres',
			"SELECT pg_create_logical_replication_slot('oldpub', 'test_decoding')");
	},
	before_standby_start => sub {
		my ($p, $s) = @_;
		copy_slot_to_standby($p, $s, 'clash');
		copy_slot_to_standby($p, $s, 'oldpub');
	});

my $old_clash = slot_positions($standby, 'clash');
my $held_xmin = $standby->safe_psql('postgres',
	"SELECT catalog_xmin FROM pg_replication_slots WHERE slot_name = 'oldpub'");

# the primary's oldpub is not needed there: only the standby's holds rows
$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('oldpub')");
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('clash', true)");
create_failover_slot($primary, 'fresh');
ok(wait_for_slot_ready($standby, 'fresh'),
	'keep: another failover slot is synchronized');

my $view_sql = "SELECT slot_name, database, plugin, catalog_xmin, "
  . "wal_held_bytes > 0, failover_slot_on_primary, first_seen IS NOT NULL, "
  . "drop_at IS NOT NULL FROM pg_slotsync.stale_slots ORDER BY 1";
ok( $standby->poll_query_until(
		'postgres', $view_sql,
		"clash|postgres|test_decoding|$held_xmin|t|t|t|f\n"
		  . "oldpub|postgres|test_decoding|$held_xmin|t|f|t|f"),
	'keep: the view shows both leftovers, what they hold, and no drop time');
like(sync_status($standby, 'clash'), qr/^conflict\|/,
	'keep: the same-name leftover blocks its failover slot');
ok( $standby->log_contains(
		qr/found stale replication slot "oldpub" on the standby\n.*DETAIL:  It was not synchronized from the primary, where it is not a failover slot/
	),
	'keep: the leftover is logged');

# Move a slot of the primary until its catalog_xmin is past the leftovers'.
sub move_past_held
{
	my ($name) = @_;
	return wait_until(
		sub {
			$primary->safe_psql('postgres', 'CREATE TABLE IF NOT EXISTS t (id int); INSERT INTO t VALUES (1)');
			advance_slot($primary, $name);
			return $primary->safe_psql('postgres',
				"SELECT catalog_xmin::text::bigint > $held_xmin FROM pg_replication_slots WHERE slot_name = '$name'"
			) eq 't';
		});
}

# the primary's failover slot moves on; the leftovers keep its catalog_xmin
# back
ok(move_past_held('fresh'), "the primary's slot moves past the leftovers' catalog_xmin");
ok(wait_for_slot_match($primary, $standby, 'fresh'),
	'keep: the copy follows its slot');
wait_for_primary_slot_sync($primary);
my $primary_xmin_sql =
  "SELECT catalog_xmin FROM pg_replication_slots WHERE slot_name = '$SlotSyncTest::STANDBY_SLOT'";
is($primary->safe_psql('postgres', $primary_xmin_sql),
	$held_xmin, "keep: the primary's catalog_xmin is held back by the leftovers");

# replace, with a long grace period: clash is replaced at once
my $offset = log_offset($standby);
$standby->safe_psql('postgres',
	"ALTER SYSTEM SET pg_slotsync.stale_slots = replace");
$standby->safe_psql('postgres',
	"ALTER SYSTEM SET pg_slotsync.stale_slot_grace = '1h'");
$standby->reload;
my (undef, $restart) = split /\|/, $old_clash;
ok( $standby->wait_for_log(
		qr/dropped stale replication slot "clash" of database with OID \d+ to synchronize the primary's slot of that name\n.*DETAIL:  It was not synchronized from the primary; it was at restart_lsn \Q$restart\E,/,
		$offset),
	'replace: the same-name leftover is dropped, its position logged');
ok(wait_for_slot_ready_advancing($primary, $standby, 'clash'),
	'replace: the primary\'s slot is synchronized in its place');
ok(wait_for_slot_match($primary, $standby, 'clash'),
	'with the primary\'s positions');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT slot_name, failover_slot_on_primary, drop_at > first_seen + interval '59 min' FROM pg_slotsync.stale_slots",
		'oldpub|f|t'),
	'replace: the other leftover is shown with the time it will be dropped');

# the grace period ends
$offset = log_offset($standby);
$standby->safe_psql('postgres',
	"ALTER SYSTEM SET pg_slotsync.stale_slot_grace = '1s'");
$standby->reload;
ok( $standby->wait_for_log(
		qr/dropped stale replication slot "oldpub" of database with OID \d+\n.*DETAIL:  It was not synchronized from the primary, where it is not a failover slot, since/,
		$offset),
	'replace: after the grace period the leftover is dropped');
ok(wait_for_slot_absent($standby, 'oldpub'), 'it is gone');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM pg_slotsync.stale_slots'),
	'0', 'and the view is empty');

# nothing holds the primary's catalog rows back any more
ok(move_past_held('clash'), "the primary's other slot moves on too");
ok(wait_for_slot_match($primary, $standby, 'clash'), 'and its copy follows');
ok( $primary->poll_query_until(
		'postgres', "SELECT catalog_xmin::text::bigint > $held_xmin FROM pg_replication_slots WHERE slot_name = '$SlotSyncTest::STANDBY_SLOT'"),
	"replace: the primary's catalog_xmin moves on");
ok(is_slot_ready($standby, 'fresh') && is_slot_ready($standby, 'clash'),
	'both copies are ready');

$standby->stop;
$primary->stop;
done_testing();
