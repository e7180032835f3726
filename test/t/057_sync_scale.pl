# Scale: with a few hundred failover slots, a cycle looks only at what
# changed.  One slot moves: the standby's last cycle decided that slot
# alone; a slot dropped on the primary is gone from the standby at once;
# the whole list still arrives when the standby asks for it (after a
# reconnect); and when every slot moves at once, each copy catches up.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my $nslots = 300;
my ($primary, $standby) = setup_primary_standby(
	primary_conf => "max_replication_slots = 320\nmax_wal_senders = 10\n",
	standby_conf => "max_replication_slots = 320\n");

$primary->safe_psql('postgres',
	"SELECT count(*) FROM generate_series(1, $nslots) i, LATERAL pg_slotsync.create_logical_replication_slot('s' || i, 'test_decoding', failover => true)"
);
ok( $standby->poll_query_until(
		'postgres',
		"SELECT count(*) = $nslots FROM pg_slotsync.sync_status WHERE state = 'ready'"),
	"all $nslots copies are ready");

my $examined_sql = 'SELECT last_cycle_slots FROM pg_slotsync.sync_worker';
my $cycles_sql = 'SELECT cycles FROM pg_slotsync.sync_worker';

# One slot moves: the next cycle decides it alone.
$primary->safe_psql('postgres', 'CREATE TABLE t (id int)');
$primary->safe_psql('postgres', 'INSERT INTO t VALUES (1)');
my $cycles = $standby->safe_psql('postgres', $cycles_sql);
$primary->safe_psql('postgres',
	"SELECT count(*) FROM pg_logical_slot_get_changes('s7', NULL, NULL)");
ok(wait_for_slot_match($primary, $standby, 's7'), 'the moved slot is synchronized');
my @examined;
ok( wait_until(
		sub {
			return 0 if $standby->safe_psql('postgres', $cycles_sql) <= $cycles;
			push @examined, $standby->safe_psql('postgres', $examined_sql);
			return $examined[-1] == 1;
		},
		30),
	'a cycle decided only the slot that moved')
  or diag 'slots the cycles decided: ' . join(',', @examined);

# A slot dropped on the primary is gone from the standby at once.
$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('s42')");
ok(wait_for_slot_absent($standby, 's42'), 'a dropped slot disappears from the standby');
ok( $standby->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_slotsync.sync_status WHERE slot_name = 's42'"),
	'and from sync_status');

# After a reconnect the whole list comes again: every slot is decided.
$primary->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE '%pg_slotsync worker'"
);
ok( wait_until(
		sub { $standby->safe_psql('postgres', $examined_sql) == $nslots - 1 },
		30),
	'after a reconnect, the whole list is decided again');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_slotsync.sync_status WHERE state = 'ready'"),
	$nslots - 1,
	'every copy is still ready');

# Every slot moves at once, past a fresh xl_running_xacts: every copy
# needs its state file written and a snapshot, more than a cycle goes on
# starting (the rest waits for the next cycles, in order).  Every copy
# catches up all the same, and stays ready.
my $positions_sql =
  "SELECT string_agg(slot_name || ' ' || restart_lsn || ' ' || confirmed_flush_lsn || ' ' || catalog_xmin, ', ' ORDER BY slot_name) FROM pg_replication_slots WHERE slot_name ~ '^s[0-9]+\$'";
my $restarts_sql =
  "SELECT string_agg(restart_lsn::text, ',' ORDER BY slot_name) FROM pg_replication_slots WHERE slot_name ~ '^s[0-9]+\$'";
my $restarts_before = $primary->safe_psql('postgres', $restarts_sql);
foreach my $round (1, 2)
{
	$primary->safe_psql('postgres', 'CHECKPOINT');
	$primary->safe_psql('postgres', "INSERT INTO t VALUES ($round)");
	$primary->safe_psql('postgres',
		"SELECT count(pg_replication_slot_advance(slot_name, pg_current_wal_lsn())) FROM pg_replication_slots WHERE slot_name ~ '^s[0-9]+\$'"
	);
}
my $restarts_after = $primary->safe_psql('postgres', $restarts_sql);
my $moved = grep { $_ } map { (split /,/, $restarts_before)[$_] ne (split /,/, $restarts_after)[$_] }
  0 .. $nslots - 2;
is($moved, $nslots - 1, "every slot's restart_lsn moved on the primary");
my $want = $primary->safe_psql('postgres', $positions_sql);
my $got = '';
ok( wait_until(
		sub {
			$got = $standby->safe_psql('postgres', $positions_sql);
			return $got eq $want;
		},
		60),
	'every copy caught up with its slot');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_slotsync.sync_status WHERE state = 'ready'"),
	$nslots - 1,
	'every copy is ready');

$standby->stop;
$primary->stop;
done_testing();
