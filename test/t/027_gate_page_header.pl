# A listed physical slot at a page start plus the short page header (LSN %
# 8192 = 24, what pg_create_physical_replication_slot(name, true) gives right
# after a checkpoint that began at a page start), with consumers of failover
# slots whose next record starts on that page.  The standbys have confirmed
# nothing a reader can use there (a page header alone), so the consumers
# must wait: asleep (next to no CPU), receiving the change once the slot
# advances past it, stopping at a fast shutdown, and exiting with their
# postmaster.  Both a walsender (pg_recvlogical) and a SQL function.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;
use GateTest;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 'logical');
$node->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'pg_slotsync'
autovacuum = off
max_wal_senders = 10
max_replication_slots = 10
));
$node->start;
$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_slotsync;
CREATE TABLE t (id int);
SELECT pg_slotsync.create_logical_replication_slot('fo', 'test_decoding', failover => true);
SELECT pg_slotsync.create_logical_replication_slot('fo_sql', 'test_decoding', failover => true);
));

my $recv = start_recvlogical($node, 'fo');
$node->safe_psql('postgres', 'INSERT INTO t VALUES (1)');
ok(wait_for_file_match($recv->{file}, qr/INSERT: id\[integer\]:1\b/),
	'with the gate off, the walsender streams');

# start a SQL decoding call in the background; returns its handle and pid
sub start_sql_decoding
{
	my ($prefix) = @_;
	my $h = start_bg_sql($node,
		"SELECT count(*) FROM pg_logical_slot_get_changes('fo_sql', NULL, NULL) WHERE data LIKE '%prefix: $prefix%'"
	);
	my $pid;
	wait_until(
		sub {
			$pid = $node->safe_psql('postgres',
				"SELECT pid FROM pg_stat_activity WHERE query LIKE '%get_changes(''fo_sql''%' AND pid <> pg_backend_pid()"
			);
			return $pid ne '';
		}) or die 'the SQL decoding call did not start';
	return ($h, $pid);
}

# List a slot that does not exist yet (consumers of failover slots stop
# where they are), then create it at a page start + 24 after WAL that ends
# exactly at the previous page's end; wait until the walsender has sent
# everything up to that page.  Returns the page start and the message
# prefix that filled the previous page.
sub reach_page_start
{
	my ($slot) = @_;
	set_gate($node, $slot);
	my ($lsn, $prefix) = reserve_slot_at_page_start($node, $slot, "pad_$slot");
	my $page = $node->safe_psql('postgres', "SELECT '$lsn'::pg_lsn - 24");
	note("listed slot $slot at $lsn");
	$node->poll_query_until('postgres',
		"SELECT sent_lsn >= '$page' FROM pg_stat_replication WHERE pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'fo')"
	) or die 'the walsender did not reach the page start';
	return ($page, $prefix);
}

# 1. waiting at a page start: asleep, and released when the slot advances
my ($page, $prefix) = reach_page_start('sbx');
ok(wait_for_file_match($recv->{file}, qr/prefix: $prefix,/),
	'the walsender delivered the WAL up to the page start');
my ($sql, $sql_pid) = start_sql_decoding($prefix);
my $walsender = $node->safe_psql('postgres',
	"SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'fo'");

my ($ws_cpu, $sql_cpu) = cpu_shares([ $walsender, $sql_pid ], 2);
note(sprintf('CPU while waiting: walsender %.1f%%, SQL backend %.1f%%',
		100 * $ws_cpu, 100 * $sql_cpu));
ok($ws_cpu < 0.1, 'the waiting walsender sleeps (far below a busy loop)');
ok($sql_cpu < 0.1, 'the waiting SQL function sleeps (far below a busy loop)');
is( $node->safe_psql(
		'postgres',
		"SELECT wait_event_type FROM pg_stat_activity WHERE pid = $walsender"),
	'Extension',
	'the walsender shows the gate\'s wait event');

$node->safe_psql('postgres', 'INSERT INTO t VALUES (2)');
$node->safe_psql('postgres',
	"SELECT pg_replication_slot_advance('sbx', pg_current_wal_flush_lsn())");
ok(wait_for_file_match($recv->{file}, qr/INSERT: id\[integer\]:2\b/),
	'once the listed slot advances, the walsender delivers the new row');
my $finished = wait_until(sub { !bg_running($sql) });
ok($finished, 'once the listed slot advances, the SQL function returns');
if ($finished)
{
	my ($rc, $out, $err) = finish_bg_sql($sql);
	is($out, "1\n", 'and it returns the WAL up to the page start');
}
else
{
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($sql_pid)");
	finish_bg_sql($sql);
}

# 2. a fast shutdown while both wait at a page start completes
($page, $prefix) = reach_page_start('sby');
($sql, $sql_pid) = start_sql_decoding($prefix);
my $ret = PostgreSQL::Test::Utils::system_log('pg_ctl', '-D', $node->data_dir,
	'-m', 'fast', '-t', '60', 'stop');
is($ret, 0, 'a fast shutdown completes while consumers wait at a page start');
if ($ret != 0)
{
	# clean up by force, so that the server can start again
	my @left = child_pids($node->{_pid});
	$node->kill9;
	kill 'KILL', @left;
	wait_for_pid_gone(@left);
}
else
{
	$node->_update_pid(0);
}
stop_recvlogical($recv);
finish_bg_sql($sql);

# 3. after a restart both wait there again; they exit with their postmaster
$node->start;
$recv = start_recvlogical($node, 'fo', file => $recv->{file});
$node->poll_query_until('postgres',
	"SELECT sent_lsn >= '$page' FROM pg_stat_replication WHERE pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'fo')"
) or die 'the walsender did not reach the page start after the restart';
($sql, $sql_pid) = start_sql_decoding($prefix);
$walsender = $node->safe_psql('postgres',
	"SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'fo'");
my @backends = split /\n/, $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type IN ('walsender', 'client backend') AND pid <> pg_backend_pid()"
);
ok((grep { $_ == $walsender } @backends) && (grep { $_ == $sql_pid } @backends),
	'both consumers are there');
$node->kill9;
my @survivors = wait_for_pid_gone(@backends);
is(scalar(@survivors), 0,
	'no backend survives its postmaster (' . join(',', @survivors) . ')');
kill 'KILL', @survivors;
stop_recvlogical($recv);
finish_bg_sql($sql);

done_testing();
