# The "failover slot moves" counter (include/failover_slot_moves.h), which
# the standbys' long-poll on the primary can sleep on: it moves when a
# logical walsender's failover slot moves (a subscription confirming rows),
# when a SQL function decodes or advances a failover slot, and when a
# failover flag is set or cleared; it does not move for ordinary slots.
# Seen through pg_slotsync.gate_status().failover_slot_moves.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 'logical');
$primary->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'pg_slotsync'
pg_slotsync.failover_slot_patterns = 'fo_%'
autovacuum = off
));
$primary->start;
$primary->safe_psql('postgres', qq(
CREATE EXTENSION pg_slotsync;
CREATE TABLE tab (id int PRIMARY KEY);
CREATE PUBLICATION pub FOR TABLE tab;
SELECT pg_slotsync.create_logical_replication_slot('fo_sql', 'test_decoding');
SELECT pg_slotsync.create_logical_replication_slot('plain_sql', 'test_decoding');
));

sub moves
{
	return $primary->safe_psql('postgres',
		'SELECT failover_slot_moves FROM pg_slotsync.gate_status()');
}

sub confirmed
{
	my ($slot) = @_;
	return $primary->safe_psql('postgres',
		"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$slot'"
	);
}

my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init;
$subscriber->append_conf('postgresql.conf',
	"wal_receiver_status_interval = 1s\n");
$subscriber->start;
my $connstr = $primary->connstr . ' dbname=postgres';
foreach my $name ('fo_sub', 'plain_sub')
{
	$subscriber->safe_psql('postgres', "CREATE DATABASE db_$name");
	$subscriber->safe_psql("db_$name", 'CREATE TABLE tab (id int PRIMARY KEY)');
	$subscriber->safe_psql("db_$name",
		"CREATE SUBSCRIPTION $name CONNECTION '$connstr' PUBLICATION pub WITH (copy_data = false)"
	);
}
$primary->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM pg_replication_slots WHERE slot_name IN ('fo_sub', 'plain_sub') AND active"
) or die 'the subscriptions did not start';

# 1. a walsender's failover slot moves as the subscriber confirms
my $before = moves();
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (1)');
my $lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_flush_lsn()');
$primary->poll_query_until('postgres',
	"SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = 'fo_sub'"
) or die 'the failover slot did not move';
ok($primary->poll_query_until('postgres',
		"SELECT failover_slot_moves > $before FROM pg_slotsync.gate_status()"),
	'a walsender moving its failover slot moves the counter');

# 2. ... and not for an ordinary slot
$subscriber->safe_psql('db_fo_sub', 'ALTER SUBSCRIPTION fo_sub DISABLE');
$primary->poll_query_until('postgres',
	"SELECT NOT active FROM pg_replication_slots WHERE slot_name = 'fo_sub'")
  or die 'the failover subscription did not stop';
$before = moves();
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (2)');
$lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_flush_lsn()');
$primary->poll_query_until('postgres',
	"SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = 'plain_sub'"
) or die 'the ordinary slot did not move';
is(moves(), $before, 'a walsender moving an ordinary slot does not');

# 3. SQL functions: decoding or advancing a failover slot
$before = moves();
$primary->safe_psql('postgres',
	"SELECT count(*) FROM pg_logical_slot_get_changes('plain_sql', NULL, NULL)");
is(moves(), $before, 'get_changes on an ordinary slot does not move the counter');

$primary->safe_psql('postgres',
	"SELECT count(*) FROM pg_logical_slot_get_changes('fo_sql', NULL, NULL)");
my $after = moves();
ok($after > $before,
	'get_changes on a failover slot moves it, by the end of its transaction');

$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (3)');
$before = moves();
$primary->safe_psql('postgres',
	"SELECT pg_replication_slot_advance('fo_sql', pg_current_wal_flush_lsn())");
ok(moves() > $before, 'pg_replication_slot_advance of a failover slot moves it');

# a decoding that ends in an error still counts what it moved
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (4)');
$before = moves();
my ($ret, $out, $err) = $primary->psql('postgres',
	"BEGIN; SELECT count(*) FROM pg_logical_slot_get_changes('fo_sql', NULL, NULL); SELECT 1/0; COMMIT;"
);
like($err, qr/division by zero/, 'a transaction that decoded, then failed');
ok(moves() > $before, 'moves the counter when it aborts');

# 4. failover flags
$before = moves();
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('plain_sql', true)");
ok(moves() > $before, 'setting a failover flag moves the counter');
$before = moves();
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.create_logical_replication_slot('new_fo', 'test_decoding', failover => true)"
);
ok(moves() > $before, 'creating a failover slot moves the counter');

$subscriber->stop;
$primary->stop;

done_testing();
