# The SQL decoding functions on a failover slot wait for the standbys in
# pg_slotsync.synchronized_standby_slots: get_changes blocks while the
# standby is down and is released by removing the standby from the list;
# peek_changes (text and binary) and pg_replication_slot_advance wait too
# and can be cancelled; the standby catching up releases a waiting call; a
# call on an ordinary slot never waits.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;
use IPC::Run;
use Time::HiRes qw(time);

my $sb = $SlotSyncTest::STANDBY_SLOT;
my ($primary, $standby) = setup_primary_standby(
	sync => 0,
	primary_conf => qq(
pg_slotsync.synchronized_standby_slots = '$sb'
));
$primary->safe_psql('postgres', qq(
CREATE TABLE tab (id int);
SELECT pg_slotsync.create_logical_replication_slot('fo', 'test_decoding', failover => true);
SELECT pg_slotsync.create_logical_replication_slot('plain', 'test_decoding');
));

# with the standby up, nothing waits
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (1)');
$primary->wait_for_catchup($standby);
is( $primary->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_logical_slot_get_changes('fo', NULL, NULL) WHERE data LIKE 'table%'"
	),
	'1',
	'get_changes returns what the standby has');

$standby->stop;
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (2), (3)');

# a call on an ordinary slot does not wait
is( $primary->safe_psql(
		'postgres',
		"SET statement_timeout = '10s'; SELECT count(*) FROM pg_logical_slot_get_changes('plain', NULL, NULL) WHERE data LIKE 'table%'"
	),
	'3',
	'get_changes on an ordinary slot does not wait');

# peek (text and binary) and advance on the failover slot wait, and can be
# cancelled by statement_timeout
# (also when called from the select list, or from PL/pgSQL)
foreach my $query (
	"SELECT count(*) FROM pg_logical_slot_peek_changes('fo', NULL, NULL)",
	"SELECT count(*) FROM pg_logical_slot_peek_binary_changes('fo', NULL, NULL)",
	"SELECT pg_replication_slot_advance('fo', pg_current_wal_lsn())",
	"SELECT pg_logical_slot_peek_changes('fo', NULL, NULL) LIMIT 1",
	"DO \$\$BEGIN PERFORM count(*) FROM pg_logical_slot_peek_changes('fo', NULL, NULL); END\$\$"
  )
{
	my ($ret, $out, $err) = $primary->psql('postgres',
		"SET statement_timeout = '1s'; $query");
	like(
		$err,
		qr/canceling statement due to statement timeout/,
		"$query: waits for the standby until cancelled");
}

# get_changes blocks ...
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[
		'psql', '-XAtq', '-d', $primary->connstr('postgres'), '-c',
		"SELECT count(*) FROM pg_logical_slot_get_changes('fo', NULL, NULL) WHERE data LIKE 'table%'"
	],
	'>', \$out, '2>', \$err);
$primary->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%get_changes(''fo''%' AND wait_event_type = 'Extension' AND pid <> pg_backend_pid()"
) or die 'get_changes did not wait';
sleep(1);
$h->pump_nb;
ok($h->pumpable && $out eq '', 'get_changes blocks while the standby is down');
ok( $primary->safe_psql(
		'postgres',
		"SELECT confirmed_flush_lsn < pg_current_wal_lsn() FROM pg_replication_slots WHERE slot_name = 'fo'"
	) eq 't',
	'the slot has not moved');

# ... until the standby is taken off the list
$primary->safe_psql('postgres',
	"ALTER SYSTEM SET pg_slotsync.synchronized_standby_slots = ''");
my $reloaded = time();
$primary->reload;
$h->finish;
my $elapsed = time() - $reloaded;
is($out, "2\n", 'removing the standby from the list releases get_changes');
note("released $elapsed s after the reload");

# a waiting call is released when the standby catches up
$primary->safe_psql('postgres',
	"ALTER SYSTEM SET pg_slotsync.synchronized_standby_slots = '$sb'");
$primary->reload;
$primary->poll_query_until('postgres',
	"SELECT current_setting('pg_slotsync.synchronized_standby_slots') = '$sb'")
  or die 'setting did not come back';
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (4)');
($out, $err) = ('', '');
$h = IPC::Run::start(
	[
		'psql', '-XAtq', '-d', $primary->connstr('postgres'), '-c',
		"SELECT count(*) FROM pg_logical_slot_get_changes('fo', NULL, NULL) WHERE data LIKE 'table%'"
	],
	'>', \$out, '2>', \$err);
$primary->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%get_changes(''fo''%' AND wait_event_type = 'Extension' AND pid <> pg_backend_pid()"
) or die 'get_changes did not wait';
$standby->start;
$h->finish;
is($out, "1\n", 'the standby catching up releases get_changes');

# advance reaches its target once the standby has it
my $target = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$primary->wait_for_catchup($standby);
$primary->safe_psql('postgres',
	"SELECT pg_replication_slot_advance('fo', '$target')");
ok( $primary->safe_psql(
		'postgres',
		"SELECT confirmed_flush_lsn >= '$target' FROM pg_replication_slots WHERE slot_name = 'fo'"
	) eq 't',
	'advance moves the slot once the standby has the WAL');

$standby->stop;
$primary->stop;

done_testing();
