# The guards of the SQL decoding functions.  pg_slotsync.debug_gate_skip_attach
# makes each way the gate attaches to them fail in turn, as if a minor
# release had changed it:
#   sql           the decoding context is not recognised: a warning, and the
#                 statement is cancelled at the next interrupt check;
#   sql_reader    the reader is not one the gate knows: the refusing reader
#                 raises an error on its first page;
#   sql_callback  the invalidation callback never attaches: the replay guard
#                 cancels the statement before a change reaches its result.
# Each of pg_logical_slot_get_changes, _peek_changes, their binary variants
# and pg_replication_slot_advance on a failover slot must then fail with
# nothing returned and the slot unmoved, although the standby is up and
# confirms everything (the gate would let them through).  The one exception,
# documented in docs/gate.md: without the callback, pg_replication_slot_advance
# (which replays no transaction) is not refused.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

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
INSERT INTO tab VALUES (1), (2), (3);
));
$primary->wait_for_catchup($standby);

my %functions = (
	get => "SELECT data FROM pg_logical_slot_get_changes('fo', NULL, NULL)",
	peek => "SELECT data FROM pg_logical_slot_peek_changes('fo', NULL, NULL)",
	get_binary =>
	  "SELECT data FROM pg_logical_slot_get_binary_changes('fo', NULL, NULL)",
	peek_binary =>
	  "SELECT data FROM pg_logical_slot_peek_binary_changes('fo', NULL, NULL)",
	advance =>
	  "SELECT end_lsn FROM pg_replication_slot_advance('fo', pg_current_wal_flush_lsn())"
);

my %refusal = (
	sql =>
	  qr/WARNING:  cannot decode failover replication slot "fo" without waiting for the standbys\nDETAIL:  A logical decoding context is in use, but pg_slotsync does not recognise its layout\..*ERROR:  canceling statement due to user request/s,
	sql_reader =>
	  qr/ERROR:  cannot decode failover replication slot "fo" without waiting for the standbys\nDETAIL:  The decoding reads WAL through a function pg_slotsync does not know/,
	sql_callback =>
	  qr/WARNING:  cannot decode failover replication slot "fo" without waiting for the standbys\nDETAIL:  Decoding is about to return a transaction, but pg_slotsync was never attached to it\..*ERROR:  canceling statement due to user request/s
);

sub confirmed
{
	my ($slot) = @_;
	return $primary->safe_psql('postgres',
		"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$slot'"
	);
}

foreach my $mode ('sql', 'sql_reader', 'sql_callback')
{
	foreach my $fn (sort keys %functions)
	{
		next if $mode eq 'sql_callback' && $fn eq 'advance';
		my $before = confirmed('fo');
		my ($ret, $out, $err) = $primary->psql('postgres',
			"SET pg_slotsync.debug_gate_skip_attach = '$mode'; $functions{$fn}");
		isnt($ret, 0, "$mode: $fn on a failover slot fails");
		like($err, $refusal{$mode}, "$mode: $fn is refused by the guard");
		is($out, '', "$mode: $fn returns nothing");
		is(confirmed('fo'), $before, "$mode: $fn leaves the slot where it was");
	}
}

# documented: without the invalidation callback, advance is not refused
my ($ret, $out, $err) = $primary->psql('postgres',
	"SET pg_slotsync.debug_gate_skip_attach = 'sql_callback'; $functions{advance}"
);
is($ret, 0,
	'sql_callback: advance is not refused (no transaction is replayed; see docs/gate.md)'
);

# an unknown reader on an ordinary slot is not refused
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (4)');
is( $primary->safe_psql(
		'postgres',
		"SET pg_slotsync.debug_gate_skip_attach = 'sql_reader'; SELECT count(*) FROM pg_logical_slot_get_changes('plain', NULL, NULL) WHERE data LIKE 'table%'"
	),
	'4',
	'sql_reader: decoding an ordinary slot is not refused');

# with the gate attached, the failover slot's changes come out
is( $primary->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_logical_slot_get_changes('fo', NULL, NULL) WHERE data LIKE 'table%'"
	),
	'1',
	'with the gate attached, get_changes returns the change after the advance');
ok( $primary->safe_psql('postgres',
		'SELECT refused >= 14 FROM pg_slotsync.gate_status()') eq 't',
	'gate_status() counts the refusals');

$standby->stop;
$primary->stop;

done_testing();
