# Every failover slot ready within seconds on a standby built long after the
# slots were created, with the primary and the consumers idle: the WAL the
# standby never had (from before its base backup) and the logical rewrite
# mapping files it deleted (VACUUM FULL / CLUSTER of catalogs) are fetched
# from the primary.  Decoding from the copies after promotion yields exactly
# what the primary's slots would have, and a subscription and pg_recvlogical
# resume across a failover under load with every row exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my @peek_args = "'include-xids', '0', 'skip-empty-xacts', '1'";
my $primary;

# ---------------------------------------------------------------------
# The slots and their consumers come first, then catalog rewrites and
# DDL, then the standby is built.
# ---------------------------------------------------------------------
my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init;
$subscriber->start;
$subscriber->safe_psql('postgres', 'CREATE TABLE t (id int, v text)');

my $standby;
($primary, $standby) = setup_primary_standby(
	sync => 0,
	primary_conf => "wal_log_hints = on\n",
	start_standby => 0,
	before_backup => sub {
		my ($p) = @_;
		$p->safe_psql('postgres',
			"CREATE TABLE t (id int, v text); CREATE PUBLICATION pub FOR TABLE t"
		);
		create_failover_slot($p, 'old1');
		create_failover_slot($p, 'old2');
		$p->safe_psql('postgres', "INSERT INTO t VALUES (1, 'before')");
		get_changes($p, 'old2');    # old2's consumer moved; old1's did not
		$subscriber->safe_psql('postgres',
			"CREATE SUBSCRIPTION sub CONNECTION '"
			  . $p->connstr . ' dbname=postgres'
			  . "' PUBLICATION pub WITH (slot_name = 'sub')");
		$p->safe_psql('postgres',
			"SELECT pg_slotsync.alter_replication_slot('sub', true)");
		$subscriber->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM t WHERE id = 1");

		# catalogs rewritten, and DDL, after the slots' restart_lsn
		$p->safe_psql('postgres', 'VACUUM FULL pg_class');
		$p->safe_psql('postgres',
			'CLUSTER pg_attribute USING pg_attribute_relid_attnum_index');
		$p->safe_psql('postgres', 'ALTER TABLE t ADD COLUMN w int');
		$subscriber->safe_psql('postgres', 'ALTER TABLE t ADD COLUMN w int');
		$p->safe_psql('postgres', "INSERT INTO t VALUES (2, 'after ddl', 2)");
		# the backup starts several segments later
		$p->safe_psql('postgres', 'CREATE TABLE filler (id int)');
		for (1 .. 3)
		{
			$p->safe_psql('postgres', 'SELECT pg_switch_wal()');
			$p->safe_psql('postgres', 'INSERT INTO filler VALUES (1)');
		}
		$p->safe_psql('postgres', 'CHECKPOINT');
	});

# A standby without logical slots deletes every mapping file at each
# restartpoint: this one starts without them, as after such a restartpoint
# and a restart.
my $mappings_dir = $standby->data_dir . '/pg_logical/mappings';
opendir(my $dh, $mappings_dir) or die "$mappings_dir: $!";
my @maps = grep { /^map-/ } readdir $dh;
closedir $dh;
ok(scalar(@maps) > 0, 'the catalog rewrites left mapping files in the backup');
unlink("$mappings_dir/$_") or die "$_: $!" foreach @maps;
$standby->start;
$primary->wait_for_catchup($standby);

my $slot_sql =
  "SELECT slot_name, restart_lsn, confirmed_flush_lsn, catalog_xmin FROM pg_replication_slots WHERE slot_name IN ('old1', 'old2') ORDER BY 1";
my $primary_slots = $primary->safe_psql('postgres', $slot_sql);

# ---------------------------------------------------------------------
# By hand first: the slots are ready when the call returns.
# ---------------------------------------------------------------------
my ($ret, $out, $err) = $standby->psql('postgres',
	"SELECT pg_slotsync.sync_replication_slots(timeout => '60s')");
is($ret, 0, 'a manual sync returns') or diag $err;
foreach my $s (qw(old1 old2 sub))
{
	ok(is_slot_ready($standby, $s), "$s is ready when it returns");
}
is($primary->safe_psql('postgres', $slot_sql), $primary_slots,
	'without moving the idle slots on the primary');
ok( $standby->log_contains(
		qr/fetched [1-9]\d* WAL segments and [1-9]\d* logical rewrite mapping files from the primary server/),
	'the missing WAL and mapping files were fetched');

# The oldest segment old1 needs came from the primary, not the base backup:
# it has the archive status the walreceiver gives what it streams, so it is
# never archived a second time once it is removed after a promotion.
my $first_fetched = $primary->safe_psql('postgres',
	"SELECT pg_walfile_name(restart_lsn) FROM pg_replication_slots WHERE slot_name = 'old1'"
);
is( $standby->safe_psql(
		'postgres',
		"SELECT string_agg(name, ',') FROM pg_ls_archive_statusdir() WHERE name LIKE '$first_fetched.%'"
	),
	"$first_fetched.done",
	'a fetched WAL segment is marked as archived');

# ---------------------------------------------------------------------
# The worker does the same, on an idle primary.
# ---------------------------------------------------------------------
$standby->append_conf('postgresql.conf',
	"pg_slotsync.sync_replication_slots = on\n");
$standby->reload;
foreach my $s (qw(old1 old2 sub))
{
	ok(wait_for_slot_ready($standby, $s), "the worker keeps $s ready");
}
is($primary->safe_psql('postgres', $slot_sql), $primary_slots,
	'the primary is still idle: no slot moved');

# What the primary's slots would decode now.
my %expected;
foreach my $s (qw(old1 old2))
{
	$expected{$s} = $primary->safe_psql('postgres',
		"SELECT string_agg(data, E'\\n') FROM pg_logical_slot_peek_changes('$s', NULL, NULL, @peek_args)"
	);
}
like($expected{old1}, qr/after ddl/, 'old1 has the changes across the rewrites to decode');

# ---------------------------------------------------------------------
# Failover under load.
# ---------------------------------------------------------------------
my $recv_file = $primary->basedir . '/recv.out';
my $recv = IPC::Run::start(
	[
		'pg_recvlogical', '-d', $primary->connstr . ' dbname=postgres',
		'--slot', 'old2', '--start', '-o', 'include-xids=0', '-o',
		'skip-empty-xacts=1', '-f', $recv_file, '-F', '1', '-s', '1'
	]);
my $next = 100;
for (1 .. 20)
{
	$primary->safe_psql('postgres', "INSERT INTO t VALUES ($next, 'load', 0)");
	$next++;
}
$primary->wait_for_catchup($standby);
ok(wait_for_slot_match($primary, $standby, 'sub'), 'the subscription\'s copy is current');
$recv->signal('TERM');
$recv->finish;
$primary->stop;
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');

is( $standby->safe_psql('postgres',
		"SELECT string_agg(data, E'\\n') FROM pg_logical_slot_peek_changes('old1', NULL, NULL, @peek_args)"
	),
	$expected{old1} . join('', map { "\nBEGIN\ntable public.t: INSERT: id[integer]:$_ v[text]:'load' w[integer]:0\nCOMMIT" } 100 .. 119),
	'after promotion, old1 decodes exactly what the primary\'s slot would have, across the catalog rewrites');

$subscriber->safe_psql('postgres',
	"ALTER SUBSCRIPTION sub CONNECTION '" . $standby->connstr . ' dbname=postgres' . "'");
for (1 .. 10)
{
	$standby->safe_psql('postgres', "INSERT INTO t VALUES ($next, 'promoted', 0)");
	$next++;
}
ok( $subscriber->poll_query_until(
		'postgres',
		"SELECT count(*) = 32 AND count(DISTINCT id) = 32 FROM t"),
	'the subscription has every row exactly once across the failover');

$recv = IPC::Run::start(
	[
		'pg_recvlogical', '-d', $standby->connstr . ' dbname=postgres',
		'--slot', 'old2', '--start', '-o', 'include-xids=0', '-o',
		'skip-empty-xacts=1', '-f', $recv_file, '-F', '1', '-s', '1'
	]);
ok( wait_until(
		sub {
			open(my $f, '<', $recv_file) or return 0;
			my $text = do { local $/; <$f> };
			close $f;
			return $text =~ /id\[integer\]:129 /;
		},
		30),
	'pg_recvlogical resumes on the new primary');
$recv->signal('TERM');
$recv->finish;
open(my $f, '<', $recv_file) or die "$recv_file: $!";
my @ids = map { /id\[integer\]:(\d+) / ? $1 : () } <$f>;
close $f;
my %seen;
$seen{$_}++ foreach grep { $_ >= 100 } @ids;
is(join(',', sort { $a <=> $b } keys %seen), join(',', 100 .. 129),
	'pg_recvlogical got every row after its start, no gap');

$standby->stop;
$subscriber->stop;
done_testing();
