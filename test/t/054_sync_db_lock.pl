# A primary that hangs in the middle of a sync cycle must not hold up the
# standby's replay.  The worker locks a copy's database while it changes
# the copy (so that replaying DROP DATABASE cannot remove the database
# under it), and only then: never across a round trip to the primary.
#
# Here the primary (through a fake that passes everything on) hangs while
# answering the snapshot query of a cycle that moves two copies, one in
# database db2.  Meanwhile db2 is dropped on the primary; the standby,
# which must take db2's lock to replay that (and drop db2's copy), replays
# it while the snapshot query is still hanging.  A worker that held db2's
# lock across the round trip would block replay until the primary answers
# (max_standby_streaming_delay = -1, so no conflict cancels the worker).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;
use HostileTest;

my ($primary, $standby, $fake) = setup_with_fake(
	standby_conf => "max_standby_streaming_delay = -1\n",
	before_backup => sub {
		my ($p) = @_;
		$p->safe_psql('postgres', 'CREATE DATABASE db2');
	});

$primary->safe_psql('db2',
	"SELECT pg_create_logical_replication_slot('in_db2', 'test_decoding')");
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('in_db2', true)");
create_failover_slot($primary, 'in_postgres');
ok(wait_for_slot_ready_advancing($primary, $standby, 'in_db2'),
	'the copy in db2 is ready');
ok(wait_for_slot_ready_advancing($primary, $standby, 'in_postgres'),
	'the copy in postgres is ready');

my $marks = server_marks($standby);

# hang the next snapshot query; move both slots so that a cycle needs one
my $release = PostgreSQL::Test::Utils::tempdir() . '/release';
$fake->set(hold => { kind => 'snapshot', until_file => $release });
$primary->safe_psql('db2', 'CREATE TABLE t (id int); INSERT INTO t VALUES (1)');
advance_slot($primary, 'in_db2', 'db2');
advance_slot($primary, 'in_postgres');
ok(wait_until(sub { $fake->count('snapshot hold') >= 1 }),
	'a cycle waits for the primary to answer its snapshot query');

# drop db2 on the primary: the standby must replay it now
$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('in_db2')");
$primary->safe_psql('postgres', 'DROP DATABASE db2');
my $drop_lsn = $primary->lsn('insert');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT pg_last_wal_replay_lsn() >= '$drop_lsn' AND NOT EXISTS (SELECT FROM pg_database WHERE datname = 'db2')"
	),
	'the standby replays DROP DATABASE while the primary hangs');
is($fake->count('snapshot released'), 0,
	'the snapshot query was still hanging then');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'in_db2'"),
	'0',
	'the copy in db2 went with its database');

# the primary answers again: sync goes on
PostgreSQL::Test::Utils::append_to_file($release, '');
ok(wait_for_slot_match($primary, $standby, 'in_postgres'),
	'once the primary answers, the other copy follows its slot');
check_no_crash($standby, 0, $marks, 'throughout');

$fake->stop;
$standby->stop;
$primary->stop;
done_testing();
