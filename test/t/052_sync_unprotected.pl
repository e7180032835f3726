# A copy nobody vouches for is not ready.
#
# With hot_standby_feedback turned off on the standby, the primary no
# longer keeps the catalog rows the copies need: a consumer that moves on
# and a VACUUM of the catalogs remove them.  The copies must stop being
# ready at once (and not be left usable at promotion, where decoding would
# fail with "could not map filenode"); their consumer gets a clear error.
# A copy merely not current (the primary down, the worker stopped) stays
# ready on disk but is reported stale after pg_slotsync.stale_after.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) =
  setup_primary_standby(standby_conf => "pg_slotsync.stale_after = 2s\n");

# a query's output, or '' if it fails
sub query
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	return $ret == 0 ? $out : '';
}
$primary->safe_psql('postgres', 'CREATE TABLE d (id int)');
create_failover_slot($primary, 'prot');
$primary->safe_psql('postgres', 'INSERT INTO d VALUES (1)');
get_changes($primary, 'prot');
advance_slot($primary, 'prot');
ok(wait_for_slot_match($primary, $standby, 'prot'), 'the copy is ready and current');

my $readiness_sql =
  "SELECT ready || ':' || state || ':' || coalesce(reason_code, '') FROM pg_slotsync.failover_readiness() WHERE slot_name IS NULL";
ok(wait_until(sub { query($standby, $readiness_sql) eq 'true:syncing:' }, 20),
	'the standby says it is ready for failover');

# ---------------------------------------------------------------------
# Merely not current: the primary is down, then the worker is off.
# ---------------------------------------------------------------------
$primary->stop;
ok( wait_until(
		sub {
			query($standby,
				"SELECT state || ':' || reason_code FROM pg_slotsync.sync_status WHERE slot_name = 'prot'"
			) eq 'stale:no_recent_sync';
		},
		20),
	'with the primary down, the copy is stale after stale_after');
is(query($standby, 'SELECT state FROM pg_slotsync.sync_worker'),
	'disconnected', 'the worker says it is disconnected');
like(query($standby, $readiness_sql),
	qr/^false:disconnected:sync_failing$/,
	'and the standby is not ready for failover');
is( $standby->safe_psql('postgres',
		"SELECT sync_state FROM pg_slotsync.replication_slots WHERE slot_name = 'prot'"),
	'stale', 'the slot view agrees');
$primary->start;
ok( $standby->poll_query_until(
		'postgres',
		"SELECT state FROM pg_slotsync.sync_status WHERE slot_name = 'prot'",
		'ready'),
	'with the primary back, the copy is ready again');

# ---------------------------------------------------------------------
# Unprotected: hot_standby_feedback off.
# ---------------------------------------------------------------------
my $offset = log_offset($standby);
$standby->append_conf('postgresql.conf', "hot_standby_feedback = off\n");
$standby->reload;
ok( wait_until(
		sub {
			query($standby,
				"SELECT state || ':' || reason_code FROM pg_slotsync.sync_status WHERE slot_name = 'prot'"
			) eq 'not_ready:unprotected';
		},
		20),
	'with hot_standby_feedback off, the copy is no longer ready, at once');
ok( $standby->log_contains(
		qr/replication slot "prot" is no longer sync-ready.*\n.*DETAIL:  The primary is not known to keep the catalog rows it needs, because "hot_standby_feedback" is off/,
		$offset),
	'the log says why');
is( $standby->safe_psql('postgres',
		"SELECT sync_state || ':' || plugin FROM pg_slotsync.replication_slots WHERE slot_name = 'prot'"),
	'not_ready:pg_slotsync_not_ready',
	'on disk too: the copy carries the placeholder plugin');
like(query($standby, $readiness_sql),
	qr/^false:misconfigured:/, 'the standby is not ready for failover');

# The primary now removes catalog rows the copy would need: a row written
# before a table rewrite can only be decoded with the table's old pg_class
# row, which the consumer on the primary no longer needs.
$primary->safe_psql('postgres', 'INSERT INTO d VALUES (2)');
$primary->safe_psql('postgres', 'ALTER TABLE d ALTER COLUMN id TYPE bigint');
$primary->safe_psql('postgres', 'INSERT INTO d VALUES (3)');
get_changes($primary, 'prot');
advance_slot($primary, 'prot');
$primary->safe_psql('postgres', 'VACUUM pg_class');
$primary->safe_psql('postgres', 'VACUUM pg_attribute');
$primary->wait_for_catchup($standby);

# Promotion: the unprotected copy is not left looking usable.
$offset = log_offset($standby);
$primary->stop;
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
ok( wait_until(
		sub {
			query($standby,
				"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'prot'"
			) eq '0';
		},
		20),
	'at promotion the copy that was not ready is dropped');
ok( $standby->log_contains(
		qr/dropped replication slot "prot" of database with OID \d+ at promotion/,
		$offset),
	'and the log says so');
my ($ret, $out, $err) = $standby->psql('postgres',
	"SELECT data FROM pg_logical_slot_get_changes('prot', NULL, NULL)");
isnt($ret, 0, 'its consumer cannot decode from it');
like($err, qr/replication slot "prot" does not exist/,
	'and gets a clear error');
unlike($err, qr/could not map filenode/, 'not a filenode error');

$standby->stop;
done_testing();
