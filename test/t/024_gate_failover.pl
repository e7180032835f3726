# Failover with pg_slotsync.synchronized_standby_slots on, under steady
# insert load: the subscription's failover slot is synchronized to the
# standby; the standby then loses its connection while the load goes on,
# so the primary commits rows the standby never gets, and the primary
# crashes.  The gate must have kept those rows from the subscriber:
# after promotion and pointing the subscription at the new primary, the
# subscriber holds exactly the rows of the new primary, each once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby(
	primary_conf => qq(
pg_slotsync.failover_slot_patterns = 'lsub%'
pg_slotsync.synchronized_standby_slots = '$SlotSyncTest::STANDBY_SLOT'
),
	# the promoted standby has no standby of its own to wait for
	standby_conf => "pg_slotsync.synchronized_standby_slots = ''\n");

my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init;
$subscriber->append_conf('postgresql.conf',
	"wal_receiver_status_interval = 1s\n");
$subscriber->start;

$primary->safe_psql('postgres',
	"CREATE TABLE tab (id int PRIMARY KEY, src text);
	 CREATE PUBLICATION pub FOR TABLE tab;
	 INSERT INTO tab SELECT g, 'initial' FROM generate_series(1, 10) g;");

# no primary key on the subscriber: a row applied twice shows as a duplicate
$subscriber->safe_psql('postgres', 'CREATE TABLE tab (id int, src text)');
my $pub_connstr = $primary->connstr . ' dbname=postgres';
$subscriber->safe_psql('postgres',
	"CREATE SUBSCRIPTION lsub1 CONNECTION '$pub_connstr' PUBLICATION pub");
$subscriber->wait_for_subscription_sync($primary, 'lsub1', 'postgres');

ok(wait_for_slot_ready($standby, 'lsub1'), 'lsub1 is sync-ready')
  or die 'lsub1 never became ready';

# steady load through the failover
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
		'postgres', "SELECT count(*) >= 100 FROM tab WHERE src = 'load'"),
	'load rows reach the subscriber');
ok(wait_for_slot_ready($standby, 'lsub1'), 'lsub1 is still ready');

# the standby loses its connection: the primary goes on committing, the
# subscriber must not get what the standby lacks
$standby->safe_psql('postgres', "ALTER SYSTEM SET primary_conninfo = ''");
$standby->reload;
$primary->poll_query_until('postgres',
	"SELECT NOT active FROM pg_replication_slots WHERE slot_name = '$SlotSyncTest::STANDBY_SLOT'"
) or die 'standby did not disconnect';
my $at_stall = $primary->safe_psql('postgres', 'SELECT max(id) FROM tab');
$primary->poll_query_until('postgres',
	"SELECT max(id) >= $at_stall + 100 FROM tab")
  or die 'load did not go on';
my $sub_max = $subscriber->safe_psql('postgres', 'SELECT max(id) FROM tab');
my $primary_max = $primary->safe_psql('postgres', 'SELECT max(id) FROM tab');
ok($sub_max <= $at_stall,
	"the subscriber is held back while the standby is away ($sub_max <= $at_stall < $primary_max)"
);

# the primary crashes; the rows the standby never got are lost with it
$primary->stop('immediate');
eval { $load->quit; };

$standby->promote;
ok( $standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
	'standby promoted');
is( $standby->safe_psql(
		'postgres',
		"SELECT synced AND failover AND NOT temporary FROM pg_slotsync.replication_slots WHERE slot_name = 'lsub1'"
	),
	't',
	'the synchronized slot remains after promotion');
my $lost = $primary_max - $standby->safe_psql('postgres', 'SELECT max(id) FROM tab');
note("rows committed on the old primary but lost in the failover: $lost");
ok($lost > 0, 'the failover lost rows the standby never received');

my $new_connstr = $standby->connstr . ' dbname=postgres';
$subscriber->safe_psql('postgres',
	"ALTER SUBSCRIPTION lsub1 CONNECTION '$new_connstr'");
$standby->safe_psql('postgres',
	"INSERT INTO tab SELECT g, 'after' FROM generate_series(50001, 50010) g");
ok( $subscriber->poll_query_until(
		'postgres', "SELECT count(*) = 10 FROM tab WHERE src = 'after'"),
	'rows inserted on the promoted standby reach the subscriber');
$standby->wait_for_catchup('lsub1');

is( $subscriber->safe_psql(
		'postgres',
		"SELECT count(*), count(DISTINCT id), md5(string_agg(id::text, ',' ORDER BY id)) FROM tab"
	),
	$standby->safe_psql(
		'postgres',
		"SELECT count(*), count(*), md5(string_agg(id::text, ',' ORDER BY id)) FROM tab"
	),
	'the subscriber has exactly the rows of the new primary, each once');

$subscriber->stop;
$standby->stop;

done_testing();
