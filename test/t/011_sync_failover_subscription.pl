# Failover of logical subscriptions: the slots of two subscriptions are
# failover slots (by pattern) and are synchronized to the standby; the
# primary is stopped while rows are being inserted, the standby is promoted,
# the subscriptions are pointed at it, and every row of the new primary
# reaches the subscriber exactly once -- including a transaction that was
# begun on the primary before the slot was synchronized and committed after,
# which the subscriber can only get by decoding from the synchronized slot on
# the promoted standby.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby(
	primary_conf => "pg_slotsync.failover_slot_patterns = 'lsub%'\n");

my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init;
$subscriber->append_conf('postgresql.conf',
	"wal_receiver_status_interval = 1s\n");
$subscriber->start;

$primary->safe_psql('postgres',
	"CREATE TABLE tab (id int PRIMARY KEY, src text);
	 CREATE PUBLICATION pub FOR TABLE tab;
	 INSERT INTO tab SELECT g, 'initial' FROM generate_series(1, 10) g;");

# No primary key on the subscriber: a row applied twice shows as a duplicate
# instead of stopping replication.
$subscriber->safe_psql('postgres', 'CREATE DATABASE sub2db');
foreach my $db ('postgres', 'sub2db')
{
	$subscriber->safe_psql($db, 'CREATE TABLE tab (id int, src text)');
}
my $pub_connstr = $primary->connstr . ' dbname=postgres';
$subscriber->safe_psql('postgres',
	"CREATE SUBSCRIPTION lsub1 CONNECTION '$pub_connstr' PUBLICATION pub");
$subscriber->safe_psql('sub2db',
	"CREATE SUBSCRIPTION lsub2 CONNECTION '$pub_connstr' PUBLICATION pub");
$subscriber->wait_for_subscription_sync($primary, 'lsub1', 'postgres');
$subscriber->wait_for_subscription_sync($primary, 'lsub2', 'sub2db');

is( $primary->safe_psql(
		'postgres',
		"SELECT string_agg(slot_name || ':' || failover, ',' ORDER BY slot_name)
		 FROM pg_slotsync.replication_slots WHERE slot_type = 'logical'"),
	'lsub1:true,lsub2:true',
	'the subscriptions\' slots are failover slots by pattern');

$primary->safe_psql('postgres',
	"INSERT INTO tab SELECT g, 'streamed' FROM generate_series(11, 20) g");
$primary->wait_for_catchup('lsub1');
$primary->wait_for_catchup('lsub2');

# A transaction begun before the slots are synchronized, still open.
my $open_txn = $primary->background_psql('postgres');
my $open_lsn = $open_txn->query_safe('SELECT pg_current_wal_insert_lsn()');
$open_txn->query_safe(
	"BEGIN; INSERT INTO tab SELECT g, 'open' FROM generate_series(1001, 1010) g;"
);

$primary->safe_psql('postgres',
	"INSERT INTO tab SELECT g, 'streamed' FROM generate_series(21, 30) g");
my $after_30 = $primary->lsn('insert');
$primary->wait_for_catchup('lsub1');
$primary->wait_for_catchup('lsub2');
foreach my $db ('postgres', 'sub2db')
{
	is($subscriber->safe_psql($db, 'SELECT count(*) FROM tab'),
		'30', "subscriber ($db) has the committed rows");
}

ok(wait_for_slot_ready($standby, 'lsub1'), 'lsub1 is sync-ready')
  or die 'lsub1 never became ready';
ok(wait_for_slot_ready($standby, 'lsub2'), 'lsub2 is sync-ready')
  or die 'lsub2 never became ready';
ok(wait_for_slot_match($primary, $standby, 'lsub1'),
	'lsub1 on the standby has the primary\'s positions');

# Let lsub2 confirm everything up to row 30, then stop it: from here on it
# gets nothing from the old primary.
ok( $primary->poll_query_until(
		'postgres',
		"SELECT confirmed_flush_lsn >= '$after_30' FROM pg_replication_slots WHERE slot_name = 'lsub2'"
	),
	'lsub2 confirmed row 30 on the primary');
$subscriber->safe_psql('sub2db', 'ALTER SUBSCRIPTION lsub2 DISABLE');
ok( $primary->poll_query_until(
		'postgres',
		"SELECT NOT active FROM pg_replication_slots WHERE slot_name = 'lsub2'"
	),
	'lsub2 no longer streams');
ok(wait_for_slot_match($primary, $standby, 'lsub2'),
	'lsub2 on the standby has the primary\'s positions');
is( $standby->safe_psql(
		'postgres',
		"SELECT restart_lsn <= '$open_lsn' AND confirmed_flush_lsn > '$open_lsn'
		 FROM pg_replication_slots WHERE slot_name = 'lsub2'"),
	't',
	'the copy of lsub2 is confirmed past the start of the open transaction and can decode it from its start'
);

# Steady load on the primary through the failover.
my $load = $primary->background_psql('postgres', on_error_stop => 0);
$load->query_until(
	qr/load_started/, q(\echo load_started
DO $$
BEGIN
	FOR i IN 100001..200000 LOOP
		INSERT INTO tab VALUES (i, 'load');
		COMMIT;
		PERFORM pg_sleep(0.002);
	END LOOP;
END
$$;
));
ok( $subscriber->poll_query_until(
		'postgres', "SELECT count(*) >= 50 FROM tab WHERE src = 'load'"),
	'load rows reach the subscriber');

# Commit the open transaction while the load goes on.
$open_txn->query_safe('COMMIT');
$open_txn->quit;
ok( $subscriber->poll_query_until(
		'postgres', "SELECT count(*) = 10 FROM tab WHERE src = 'open'"),
	'the committed transaction reaches lsub1 from the primary');
ok( $subscriber->poll_query_until(
		'postgres',
		"SELECT count(*) >= 100 FROM tab WHERE src = 'load'"),
	'load goes on');
is($subscriber->safe_psql('sub2db', "SELECT count(*) FROM tab"),
	'30', 'the disabled subscription got nothing more');
ok(wait_for_slot_ready($standby, 'lsub1'), 'lsub1 is still ready');

# Failover, under load.
$primary->stop;
eval { $load->quit; };
$standby->promote;
ok( $standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
	'standby promoted');

is( $standby->safe_psql(
		'postgres',
		"SELECT string_agg(slot_name || ':' || synced || ':' || failover || ':' || temporary, ',' ORDER BY slot_name)
		 FROM pg_slotsync.replication_slots WHERE slot_name LIKE 'lsub%'"),
	'lsub1:true:true:false,lsub2:true:true:false',
	'the synchronized slots remain after promotion');

my $new_connstr = $standby->connstr . ' dbname=postgres';
$subscriber->safe_psql('postgres',
	"ALTER SUBSCRIPTION lsub1 CONNECTION '$new_connstr'");
$subscriber->safe_psql('sub2db',
	"ALTER SUBSCRIPTION lsub2 CONNECTION '$new_connstr'");
$subscriber->safe_psql('sub2db', 'ALTER SUBSCRIPTION lsub2 ENABLE');

$standby->safe_psql('postgres',
	"INSERT INTO tab SELECT g, 'after' FROM generate_series(50001, 50010) g");
foreach my $db ('postgres', 'sub2db')
{
	ok( $subscriber->poll_query_until(
			$db, "SELECT count(*) = 10 FROM tab WHERE src = 'after'"),
		"rows inserted on the promoted standby reach the subscriber ($db)");
}
$standby->wait_for_catchup('lsub1');
$standby->wait_for_catchup('lsub2');

my $expected = $standby->safe_psql('postgres',
	"SELECT count(*), count(*), md5(string_agg(id::text, ',' ORDER BY id)) FROM tab"
);
my $nload = $standby->safe_psql('postgres',
	"SELECT count(*) FROM tab WHERE src = 'load'");
note "new primary has $nload load rows";
foreach my $db ('postgres', 'sub2db')
{
	is( $subscriber->safe_psql(
			$db,
			"SELECT count(*), count(DISTINCT id), md5(string_agg(id::text, ',' ORDER BY id)) FROM tab"
		),
		$expected,
		"subscriber ($db) has every row of the new primary exactly once");
}
is($subscriber->safe_psql('sub2db', "SELECT count(*) FROM tab WHERE src = 'open'"),
	'10',
	'the transaction begun before the sync and committed after reached the subscriber through the promoted standby'
);

$subscriber->stop;
$standby->stop;

done_testing();
