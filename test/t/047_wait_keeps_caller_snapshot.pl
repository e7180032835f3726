# pg_slotsync.wait_for_failover_slot_change() must not hurt its caller.  It
# gives up its snapshot's xmin while it waits, so that the sync worker's
# long-poll never holds back vacuum on the primary.  That is only safe when
# nothing else in the session can still need what that snapshot sees: a
# REPEATABLE READ transaction (its snapshot outlives the statement), an open
# cursor, or a query that also reads a table must keep their rows.  Checked
# by counting 1000 rows before and after a call during which another session
# deletes 990 of them and vacuums; the count must stay 1000.  The worker's
# own shape of call still holds no xmin.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 'logical');
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'pg_slotsync'\nautovacuum = off\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_slotsync');

my $wakeups = 0;

sub token
{
	return $node->safe_psql('postgres',
		'SELECT change_token FROM pg_slotsync.wait_for_failover_slot_change(NULL, NULL, 0)'
	);
}

# SQL that waits (up to a minute) for the failover slots to change, with
# the select list the sync worker uses.
sub wait_sql
{
	my $t = token();
	return
	  "SELECT change_token, in_recovery, wal_level_logical, standby_slot_is_physical, "
	  . "standby_slot_catalog_xmin "
	  . "FROM pg_slotsync.wait_for_failover_slot_change(NULL, $t, 60000)";
}

# Wait until a session waits in the function, and return its backend_xmin
# ('' when it holds none).
sub waiting_session_xmin
{
	$node->poll_query_until(
		'postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE query LIKE '%wait_for_failover_slot_change(NULL, %60000)%'
		   AND state = 'active' AND wait_event = 'Extension'
		   AND pid <> pg_backend_pid()})
	  or die 'no session waits in the function';
	return $node->safe_psql(
		'postgres', q{
		SELECT backend_xmin FROM pg_stat_activity
		 WHERE query LIKE '%wait_for_failover_slot_change(NULL, %60000)%'
		   AND state = 'active' AND pid <> pg_backend_pid()});
}

# End the wait: a new failover slot changes the token.
sub wake
{
	$wakeups++;
	create_failover_slot($node, "wake$wakeups");
	return;
}

sub fill_table
{
	$node->safe_psql(
		'postgres', q{
		DROP TABLE IF EXISTS t;
		CREATE TABLE t (id int);
		INSERT INTO t SELECT generate_series(1, 1000);
		VACUUM t;});
	return;
}

# While the waiting session waits: delete 990 rows and vacuum.
sub delete_and_vacuum
{
	$node->safe_psql('postgres', 'DELETE FROM t WHERE id > 10');
	$node->safe_psql('postgres', 'VACUUM t');
	return;
}

# ---------------------------------------------------------------------
# REPEATABLE READ: the transaction's snapshot outlives the call.
# ---------------------------------------------------------------------
fill_table();
my $s = $node->background_psql('postgres');
$s->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
like($s->query_safe("SELECT 'count=' || count(*) FROM t"),
	qr/count=1000/, 'REPEATABLE READ: 1000 rows at first');
$s->query_until(qr/waiting/, "\\echo waiting\n" . wait_sql() . ";\n");
isnt(waiting_session_xmin(), '',
	'REPEATABLE READ: the waiting call keeps the transaction\'s xmin');
delete_and_vacuum();
wake();
like($s->query_safe("SELECT 'count=' || count(*) FROM t"),
	qr/count=1000/, 'REPEATABLE READ: still 1000 rows after the call');
$s->query_safe('COMMIT');

# ---------------------------------------------------------------------
# READ COMMITTED with an open cursor: the cursor's snapshot must hold.
# ---------------------------------------------------------------------
fill_table();
$s->query_safe('BEGIN');
$s->query_safe('DECLARE c CURSOR FOR SELECT count(*) FROM t');
$s->query_until(qr/waiting/, "\\echo waiting\n" . wait_sql() . ";\n");
isnt(waiting_session_xmin(), '',
	'open cursor: the waiting call keeps the cursor\'s xmin');
delete_and_vacuum();
wake();
like($s->query_safe("FETCH ALL FROM c"),
	qr/(^|\n)1000$/, 'open cursor: it still counts 1000 rows');
$s->query_safe('COMMIT');

# ---------------------------------------------------------------------
# A statement that reads a table besides calling the function.
# ---------------------------------------------------------------------
fill_table();
my $h = start_bg_sql($node,
	    "SELECT count(*) FROM t, ("
	  . wait_sql()
	  . ") w WHERE w.change_token IS NOT NULL");
isnt(waiting_session_xmin(), '',
	'a query reading a table: the waiting call keeps its xmin');
delete_and_vacuum();
wake();
my ($rc, $out, $err) = finish_bg_sql($h);
chomp $out;
is($out, '1000', 'a query reading a table: it counts 1000 rows');
$s->quit;

# ---------------------------------------------------------------------
# The worker's shape of call (the call alone, then failover_slots(), in
# one simple query) holds no xmin while it waits.
# ---------------------------------------------------------------------
$h = start_bg_sql($node,
	wait_sql() . '; SELECT count(*) FROM pg_slotsync.failover_slots()');
is(waiting_session_xmin(), '',
	'the worker\'s long-poll holds no xmin while it waits');
wake();
($rc, $out, $err) = finish_bg_sql($h);
is($rc, 0, 'and it returns when a slot changes') or diag($err);

# ---------------------------------------------------------------------
# The same for version 1.1's long-poll, as the worker calls it now: the
# wait, then failover_slot_changes(), in one simple query, with the token
# of the session's previous answer.
# ---------------------------------------------------------------------
my $script = PostgreSQL::Test::Utils::tempdir() . '/changes.sql';
PostgreSQL::Test::Utils::append_to_file(
	$script, q{
SELECT change_token AS t FROM pg_slotsync.wait_for_failover_slot_changes(NULL, NULL, 0) \gset
SELECT count(*) > 0 FROM pg_slotsync.failover_slot_changes();
SELECT change_token, full_list, in_recovery, wal_level_logical, standby_slot_is_physical, standby_slot_catalog_xmin, system_identifier, timeline FROM pg_slotsync.wait_for_failover_slot_changes(NULL, :t, 60000) \; SELECT count(*) FROM pg_slotsync.failover_slot_changes();
});
$h = { out => '', err => '' };
$h->{run} = IPC::Run::start(
	[
		$node->installed_command('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr('postgres'), '-f', $script
	],
	'>', \$h->{out}, '2>', \$h->{err});
$node->poll_query_until(
	'postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE query LIKE '%wait_for_failover_slot_changes(NULL, %60000)%'
	   AND state = 'active' AND wait_event = 'Extension'
	   AND pid <> pg_backend_pid()})
  or die 'no session waits in the function';
is( $node->safe_psql(
		'postgres', q{
		SELECT backend_xmin FROM pg_stat_activity
		 WHERE query LIKE '%wait_for_failover_slot_changes(NULL, %60000)%'
		   AND state = 'active' AND pid <> pg_backend_pid()}),
	'',
	'1.1: the worker\'s long-poll holds no xmin while it waits');
wake();
($rc, $out, $err) = finish_bg_sql($h);
is($rc, 0, '1.1: it returns when a slot changes') or diag($err);
like($out, qr/\n1$/, '1.1: with the one slot that changed');

done_testing();
