# pg_slotsync.wait_for_failover_ready(timeout, slots): true only once every
# (or every named) failover slot has a sync-ready copy caught up with where
# the primary's slot was at the call; false with a NOTICE naming the
# laggards on timeout, and never vacuously true (no primary to ask, a named
# slot the primary does not have).  Cancellable, and it leaves no
# connection behind on the primary.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby();

create_failover_slot($primary, 'wr_a');
create_failover_slot($primary, 'wr_b');
$primary->safe_psql('postgres', 'CREATE TABLE t (id int)');
wait_for_slot_ready_advancing($primary, $standby, 'wr_a');
wait_for_slot_ready_advancing($primary, $standby, 'wr_b');

sub wait_ready
{
	my ($args) = @_;
	my ($ret, $out, $err) = $standby->psql('postgres',
		"SELECT pg_slotsync.wait_for_failover_ready($args)");
	return ($out, $err);
}

my ($out, $err) = wait_ready("'60s'");
is($out, 't', 'both copies are ready and caught up');

# stop syncing: the copies stay sync-ready but fall behind the primary
$standby->safe_psql('postgres',
	'ALTER SYSTEM SET pg_slotsync.sync_replication_slots = off');
$standby->reload;
wait_for_no_worker($standby);
$primary->safe_psql('postgres', 'INSERT INTO t VALUES (1)');
advance_slot($primary, 'wr_a');
create_failover_slot($primary, 'wr_c');
$primary->wait_for_catchup($standby);

($out, $err) = wait_ready("'1s'");
is($out, 'f', 'a copy behind the primary is not ready');
like($err, qr/NOTICE:  timed out waiting for failover slots to become ready/,
	'the NOTICE says it timed out');
like(
	$err,
	qr/replication slot "wr_a": the copy's confirmed_flush_lsn \S+ is behind the primary's/,
	'it names the copy that is behind, with both positions');
like(
	$err,
	qr/replication slot "wr_c": the standby has no synchronized copy of it/,
	'and the slot that has no copy');
unlike($err, qr/"wr_b"/, 'but not the slot that is caught up');

($out, $err) = wait_ready("'1s', ARRAY['wr_b']");
is($out, 't', 'the caught-up slot alone is ready');

($out, $err) = wait_ready("'60s', ARRAY['wr_b', 'nosuch']");
is($out, 'f', 'a named slot the primary does not have is not ready');
like(
	$err,
	qr/replication slot "nosuch" is not a failover slot on the primary server/,
	'and the NOTICE says so');

# cancelled while waiting: no connection is left on the primary
my $app = "application_name = 'pg_slotsync wait_for_failover_ready'";
my ($ret, $o, $e) = $standby->psql('postgres',
	"SET statement_timeout = '300ms'; SELECT pg_slotsync.wait_for_failover_ready(NULL)");
like($e, qr/canceling statement due to statement timeout/,
	'a wait without timeout can be cancelled');
is($primary->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE $app"),
	'0', 'its connection to the primary is gone');

# syncing again: the same call returns true as soon as the copies catch up
$standby->safe_psql('postgres',
	'ALTER SYSTEM SET pg_slotsync.sync_replication_slots = on');
$standby->reload;
($out, $err) = wait_ready("NULL, ARRAY['wr_a', 'wr_b']");
is($out, 't', 'the copies caught up once sync runs again');

# A consumer ahead of this standby's WAL (here: the walreceiver stopped,
# the worker keeps a connection string of its own, nothing gates the
# consumer): failover_readiness() says this standby has not flushed what the
# consumer has received.
is( $standby->safe_psql('postgres',
		"SELECT bool_and(wal_flushed) FROM pg_slotsync.failover_readiness()"),
	't', 'wal_flushed: the standby has what every consumer confirmed');
ok(stop_wal_streaming($primary, $standby), 'the walreceiver stopped');
$primary->safe_psql('postgres', 'INSERT INTO t VALUES (2)');
get_changes($primary, 'wr_b');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT string_agg(coalesce(slot_name, '-') || ':' || wal_flushed, ',' ORDER BY slot_name NULLS FIRST) FROM pg_slotsync.failover_readiness() WHERE slot_name IS NULL OR slot_name = 'wr_b'",
		'-:false,wr_b:false'),
	'wal_flushed: false for the slot whose consumer is ahead, and for the standby');
$standby->safe_psql('postgres', 'ALTER SYSTEM RESET primary_conninfo');
$standby->safe_psql('postgres', 'ALTER SYSTEM RESET pg_slotsync.primary_conninfo');
$standby->reload;
ok( $standby->poll_query_until(
		'postgres',
		"SELECT bool_and(wal_flushed) FROM pg_slotsync.failover_readiness()"),
	'wal_flushed: true again once the standby streams');

# no primary to ask: not ready, whatever the copies say
$primary->stop;
($out, $err) = wait_ready("'60s'");
is($out, 'f', 'without a primary the standby is not called ready');
like($err,
	qr/NOTICE:  cannot tell whether the failover slots are ready\nDETAIL:  could not connect/,
	'the NOTICE says why');

$standby->stop;
done_testing();
