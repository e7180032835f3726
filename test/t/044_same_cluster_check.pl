# The sync connection must reach this standby's own primary: a server of
# another cluster (pg_slotsync.primary_conninfo pointing at the wrong host)
# would otherwise make the standby drop its synced slots and copy unrelated
# ones, and an old primary left behind after a failover (same cluster, an
# older timeline) would make it follow slots nobody uses any more.  On
# connect the standby compares the server's system identifier and timeline
# with its own; on a mismatch it synchronizes nothing, drops nothing, and
# says so.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;
use HostileTest;

my ($primary, $standby, $fake) =
  setup_with_fake(standby_conf => "restart_after_crash = on\n");

create_failover_slot($primary, 'oc1');
create_failover_slot($primary, 'oc2');
ok(wait_for_slot_ready_advancing($primary, $standby, 'oc1'), 'oc1 is ready');
ok(wait_for_slot_ready_advancing($primary, $standby, 'oc2'), 'oc2 is ready');

# ---------------------------------------------------------------------
# Another cluster, with pg_slotsync, the standby's physical slot name and a
# failover slot of its own.
# ---------------------------------------------------------------------
my $other = PostgreSQL::Test::Cluster->new('other');
$other->init(allows_streaming => 'logical');
$other->append_conf('postgresql.conf',
	"shared_preload_libraries = 'pg_slotsync'\n");
$other->start;
$other->safe_psql('postgres', 'CREATE EXTENSION pg_slotsync');
$other->safe_psql('postgres',
	"SELECT pg_create_physical_replication_slot('$SlotSyncTest::STANDBY_SLOT')");
create_failover_slot($other, 'other1');

{
	my $name = 'another cluster';
	my $before = synced_copies($standby);
	my $marks = server_marks($standby);
	my $offset = log_offset($standby);
	$standby->append_conf('postgresql.conf',
		"pg_slotsync.primary_conninfo = '" . $other->connstr . " dbname=postgres'\n");
	$standby->reload;
	ok( wait_for_log_or_crash(
			$standby,
			qr/database system identifier differs between the primary and standby/,
			$offset),
		"$name: the standby says it is not its primary");
	like(
		log_since($standby, $offset),
		qr/the primary's identifier is \d+, the standby's identifier is \d+/,
		"$name: with both identifiers");
	check_no_crash($standby, $offset, $marks, $name);
	is(synced_copies($standby), $before,
		"$name: no synced slot dropped or changed");
	is( $standby->safe_psql(
			'postgres',
			"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'other1'"
		),
		'0',
		"$name: none of its slots is copied");
}

# back to the real primary, through the fake: synchronization goes on
$standby->append_conf('postgresql.conf',
	"pg_slotsync.primary_conninfo = '" . $fake->connstr . "'\n");
$standby->reload;
advance_slot($primary, 'oc1');
ok(wait_for_slot_match($primary, $standby, 'oc1'),
	'with its own primary again, the copy follows its slot');

# a peer that passes everything on to the real primary but makes up the
# system identifier is refused too
hostile_round(
	fake => $fake,
	standby => $standby,
	name => 'a made-up system identifier',
	personality => {
		identity => {
			do => 'mutate',
			ops => [ { op => 'set', column => 'system_identifier', value => '42' } ]
		}
	},
	expect => qr/the primary's identifier is 42, the standby's identifier is \d+/);

$fake->set();
$standby->reload;
advance_slot($primary, 'oc1');
ok(wait_for_slot_match($primary, $standby, 'oc1'),
	'and once it stops, the copy follows its slot again');

# ---------------------------------------------------------------------
# An old primary after a failover: the primary stops (both standbys have
# all its WAL then), a second standby is promoted, our standby follows it
# onto timeline 2, and the old primary comes back; our standby's sync
# connection still reaches it, and it drops a slot.
# ---------------------------------------------------------------------
my $backup = 'other_standby_backup';
$primary->backup($backup);
my $newprimary = PostgreSQL::Test::Cluster->new('newprimary');
$newprimary->init_from_backup($primary, $backup, has_streaming => 1);
$newprimary->start;
$primary->wait_for_catchup($newprimary);
$primary->stop;
$newprimary->promote;
$newprimary->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
$newprimary->safe_psql('postgres',
	"SELECT pg_create_physical_replication_slot('$SlotSyncTest::STANDBY_SLOT')");

$standby->append_conf('postgresql.conf',
	"primary_conninfo = '"
	  . $newprimary->connstr . ' dbname=postgres'
	  . " application_name=standby'\n");
$standby->reload;
ok( $standby->poll_query_until(
		'postgres', 'SELECT received_tli = 2 FROM pg_stat_wal_receiver'),
	'the standby follows the new primary onto timeline 2');
$newprimary->safe_psql('postgres', 'CREATE TABLE after_failover (id int)');
$newprimary->wait_for_catchup($standby);
$primary->start;

{
	my $name = 'an old primary';
	my $before = synced_copies($standby);
	my $marks = server_marks($standby);
	my $offset = log_offset($standby);
	$standby->reload;	# the worker connects afresh
	ok( wait_for_log_or_crash(
			$standby,
			qr/primary server's timeline 1 is older than this standby's timeline 2/,
			$offset),
		"$name: the standby says the server is behind its timeline");

	# the old primary drops a slot; the standby tries again meanwhile
	$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('oc2')");
	my $connects = $fake->count('connect');
	$standby->reload;
	ok(wait_until(sub { $fake->count('connect') > $connects }),
		"$name: the standby tried again");
	check_no_crash($standby, $offset, $marks, $name);
	is(synced_copies($standby), $before,
		"$name: no synced slot dropped or changed");
}

done_testing();
