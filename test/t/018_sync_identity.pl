# A ready copy is always the primary's slot: same database, plugin,
# two_phase and incarnation.  A failover slot dropped on the primary and
# created again under the same name (another plugin, another database) is
# another slot: the standby's copy of the old one is dropped and the new one
# copied, not ready until proven again; after promotion the consumer of the
# new slot finds its slot as it was on the primary.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby();

# What the standby's copy is: plugin|database|sync_state
my $copy_sql = "SELECT plugin, database, sync_state
	FROM pg_slotsync.replication_slots WHERE slot_name = 'idt'";

sub primary_incarnation
{
	return $primary->safe_psql('postgres',
		"SELECT to_jsonb(f)->>'incarnation' FROM pg_slotsync.failover_slots() f WHERE slot_name = 'idt'"
	);
}

# Wait until the standby's copy is ready as plugin|database.
sub wait_for_copy
{
	my ($plugin, $database) = @_;
	my $got = '';
	my $ok = wait_until(
		sub {
			advance_slot($primary, 'idt', $database);
			$got = $standby->safe_psql('postgres', $copy_sql);
			return $got eq "$plugin|$database|ready";
		},
		30);
	diag "the standby's copy is \"$got\"" unless $ok;
	return $ok;
}

sub standby_incarnation
{
	return $standby->safe_psql('postgres',
		"SELECT to_jsonb(s)->>'incarnation' FROM pg_slotsync.sync_status s WHERE slot_name = 'idt'"
	);
}

create_failover_slot($primary, 'idt');
ok(wait_for_copy('test_decoding', 'postgres'), 'the copy is ready');
is(standby_incarnation(), primary_incarnation(),
	'sync_status shows the primary slot\'s incarnation');
my $first_incarnation = primary_incarnation();

# ---------------------------------------------------------------------
# Re-created while sync is off: another plugin, another database.
# ---------------------------------------------------------------------
$standby->safe_psql('postgres',
	'ALTER SYSTEM SET pg_slotsync.sync_replication_slots = off');
$standby->reload;
ok(wait_for_no_worker($standby), 'sync is off');

$primary->safe_psql('postgres', 'CREATE DATABASE db2');
$primary->safe_psql('db2', 'CREATE TABLE d (id int); CREATE PUBLICATION p FOR TABLE d');
$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('idt')");
$primary->safe_psql('db2',
	"SELECT 1 FROM pg_create_logical_replication_slot('idt', 'pgoutput')");
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('idt', true)");
isnt(primary_incarnation(), $first_incarnation,
	'the re-created slot is another incarnation');
$primary->wait_for_catchup($standby);
is( $standby->safe_psql('postgres', $copy_sql),
	'test_decoding|postgres|ready',
	'while sync is off the standby still has the old copy');

my $offset = log_offset($standby);
$standby->safe_psql('postgres',
	'ALTER SYSTEM SET pg_slotsync.sync_replication_slots = on');
$standby->reload;
ok(wait_for_copy('pgoutput', 'db2'),
	'with sync on again, the copy is of the new slot');
is(standby_incarnation(), primary_incarnation(), 'of its incarnation');
ok( $standby->log_contains(
		qr/could not synchronize replication slot "idt".*\n.*DETAIL:  The reason is that the standby's copy is of incarnation \d+ of the slot, the primary's slot is incarnation \d+/,
		$offset),
	'the identity change is logged');
ok( $standby->log_contains(
		qr/dropped replication slot "idt" of database with OID \d+/, $offset),
	'the old copy was dropped');

# ---------------------------------------------------------------------
# Re-created while the worker runs, in one statement, another plugin.
# ---------------------------------------------------------------------
my $before = primary_incarnation();
$primary->safe_psql('db2',
	"SELECT pg_drop_replication_slot('idt'), pg_create_logical_replication_slot('idt', 'test_decoding')"
);
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('idt', true)");
isnt(primary_incarnation(), $before, 'another incarnation again');
ok(wait_for_copy('test_decoding', 'db2'),
	'the running worker copies the new slot, not the old identity');

# ---------------------------------------------------------------------
# After promotion the slot is the primary's new one.
# ---------------------------------------------------------------------
$primary->safe_psql('db2', 'INSERT INTO d VALUES (1)');
advance_slot($primary, 'idt', 'db2');
ok(wait_for_slot_match($primary, $standby, 'idt'), 'the copy is current');
$primary->stop;
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
$standby->safe_psql('db2', 'INSERT INTO d VALUES (2)');
like(
	$standby->safe_psql('db2',
		"SELECT string_agg(data, ' ') FROM pg_logical_slot_get_changes('idt', NULL, NULL)"
	),
	qr/INSERT: id\[integer\]:2/,
	'after promotion the slot decodes in its database with its plugin');

$standby->stop;
done_testing();
