# Every way to decode or move a failover slot, with the listed standby
# stopped: held, or (copying a slot, as in core) documented; and released
# once the standby is back.  pg_slotsync.gate_status() shows who waits.
#   walsender + pgoutput (a subscription), walsender + test_decoding
#   (pg_recvlogical), pg_logical_slot_get_changes, _peek_changes,
#   _get_binary_changes, _peek_binary_changes, pg_replication_slot_advance,
#   pg_copy_logical_replication_slot.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;
use GateTest;

my $sb = $SlotSyncTest::STANDBY_SLOT;
my ($primary, $standby) = setup_primary_standby(
	sync => 0,
	primary_conf => qq(
pg_slotsync.synchronized_standby_slots = '$sb'
pg_slotsync.failover_slot_patterns = 'sub%, pat_%'
));
ok( $primary->log_contains(
		qr/LOG:  pg_slotsync standby gate active; mechanisms ready: walsender, sql, shutdown_detection/
	),
	'the primary logs at startup that the gate is active, and its mechanisms');

my @sql_slots = ('fo_get', 'fo_peek', 'fo_getb', 'fo_peekb', 'fo_adv', 'fo_src');
$primary->safe_psql('postgres',
	"CREATE TABLE tab (id int PRIMARY KEY); CREATE PUBLICATION pub FOR TABLE tab;"
	  . join('',
		map { "SELECT pg_slotsync.create_logical_replication_slot('$_', 'test_decoding', failover => true);" }
		  ('fo_td', @sql_slots)));

my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init;
$subscriber->start;
$subscriber->safe_psql('postgres', 'CREATE TABLE tab (id int PRIMARY KEY)');
$subscriber->safe_psql('postgres',
	"CREATE SUBSCRIPTION sub1 CONNECTION '"
	  . $primary->connstr
	  . " dbname=postgres' PUBLICATION pub WITH (copy_data = false)");
my $recv = start_recvlogical($primary, 'fo_td');

$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (1)');
$subscriber->poll_query_until('postgres', 'SELECT count(*) = 1 FROM tab')
  or die 'the subscriber did not get row 1';
ok(wait_for_file_match($recv->{file}, qr/id\[integer\]:1\b/),
	'with the standby up, both walsenders deliver');

# the standby stops; a row it will not have
$standby->stop;
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (2)');

# walsenders: held
foreach my $slot ('sub1', 'fo_td')
{
	ok( $primary->poll_query_until(
			'postgres',
			"SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$slot')"
		),
		"walsender of $slot waits for the standby");
}

# SQL functions: held until cancelled, the slot unmoved
my %functions = (
	fo_get => "SELECT data FROM pg_logical_slot_get_changes('fo_get', NULL, NULL)",
	fo_peek => "SELECT data FROM pg_logical_slot_peek_changes('fo_peek', NULL, NULL)",
	fo_getb =>
	  "SELECT data FROM pg_logical_slot_get_binary_changes('fo_getb', NULL, NULL)",
	fo_peekb =>
	  "SELECT data FROM pg_logical_slot_peek_binary_changes('fo_peekb', NULL, NULL)",
	fo_adv =>
	  "SELECT end_lsn FROM pg_replication_slot_advance('fo_adv', pg_current_wal_flush_lsn())"
);
sub confirmed
{
	my ($slot) = @_;
	return $primary->safe_psql('postgres',
		"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$slot'"
	);
}

foreach my $slot (sort keys %functions)
{
	my $before = confirmed($slot);
	my ($ret, $out, $err) = $primary->psql('postgres',
		"SET statement_timeout = '1s'; $functions{$slot}");
	like(
		$err,
		qr/canceling statement due to statement timeout/,
		"$slot: waits for the standby");
	is($out, '', "$slot: returns nothing meanwhile");
	is(confirmed($slot), $before, "$slot: its confirmed position did not move");
}

# copying a failover slot: as in core, the copy is an ordinary slot (so it is
# not synchronized, and its consumers are not held) unless its name matches
# a pattern; copying reads no WAL and never waits
$primary->safe_psql('postgres',
	"SELECT pg_copy_logical_replication_slot('fo_src', 'copy_plain')");
$primary->safe_psql('postgres',
	"SELECT pg_copy_logical_replication_slot('fo_src', 'pat_copy')");
is( $primary->safe_psql(
		'postgres',
		"SELECT string_agg(slot_name || '=' || failover, ',' ORDER BY slot_name) FROM pg_slotsync.replication_slots WHERE slot_name IN ('copy_plain', 'pat_copy', 'fo_src')"
	),
	'copy_plain=false,fo_src=true,pat_copy=true',
	'a copy of a failover slot is a failover slot only by pattern');
is( $primary->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_logical_slot_get_changes('copy_plain', NULL, NULL) WHERE data LIKE 'table%'"
	),
	'2',
	'an ordinary copy is not held (documented, as in core)');
my ($ret, $out, $err) = $primary->psql('postgres',
	"SET statement_timeout = '1s'; SELECT data FROM pg_logical_slot_get_changes('pat_copy', NULL, NULL)"
);
like($err, qr/canceling statement due to statement timeout/,
	'a copy that is a failover slot by pattern is held');

# gate_status() while two walsenders and a backend wait
my $bg = start_bg_sql($primary,
	"SELECT count(*) FROM pg_logical_slot_get_changes('fo_get', NULL, NULL) WHERE data LIKE 'table%'"
);
ok( $primary->poll_query_until(
		'postgres',
		"SELECT waiting_walsenders = 2 AND waiting_backends = 1 FROM pg_slotsync.gate_status()"
	),
	'gate_status() counts the waiting walsenders and backend');
is( $primary->safe_psql(
		'postgres',
		"SELECT configured, waiting_slots, oldest_wait_start <= now() FROM pg_slotsync.gate_status()"
	),
	't|{fo_get,fo_td,sub1}|t',
	'gate_status() says for which slots, and since when');

# the standby returns: everything is released
$standby->start;
$subscriber->poll_query_until('postgres', 'SELECT count(*) = 2 FROM tab')
  or die 'the subscriber did not get row 2';
pass('subscription (pgoutput) released');
ok(wait_for_file_match($recv->{file}, qr/id\[integer\]:2\b/),
	'pg_recvlogical (test_decoding) released');
my $finished = wait_until(sub { !bg_running($bg) });
ok($finished, 'the waiting get_changes returns');
($ret, $out, $err) = finish_bg_sql($bg);
is($out, "2\n", 'with both rows');
foreach my $slot ('fo_peek', 'fo_getb', 'fo_peekb', 'pat_copy')
{
	my $fn = $functions{$slot};
	($fn = $functions{fo_get}) =~ s/fo_get/$slot/ unless defined $fn;
	my $data = $slot =~ /b$/ ? "convert_from(data, 'UTF8')" : 'data';
	is( $primary->safe_psql('postgres',
			"SELECT count(*) FROM ($fn) c WHERE $data LIKE 'table%'"),
		'2',
		"$slot: returns the rows once the standby has them");
}
my $target = $primary->safe_psql('postgres', 'SELECT pg_current_wal_flush_lsn()');
$primary->safe_psql('postgres',
	"SELECT pg_replication_slot_advance('fo_adv', '$target')");
is( $primary->safe_psql(
		'postgres',
		"SELECT confirmed_flush_lsn >= '$target' FROM pg_replication_slots WHERE slot_name = 'fo_adv'"
	),
	't',
	'fo_adv: advances once the standby has the WAL');
ok( $primary->poll_query_until(
		'postgres',
		"SELECT waiting_walsenders = 0 AND waiting_backends = 0 AND waiting_slots = '{}' AND oldest_wait_start IS NULL FROM pg_slotsync.gate_status()"
	),
	'gate_status() shows nobody waiting');

stop_recvlogical($recv);
$subscriber->stop;
$standby->stop;
$primary->stop;

done_testing();
