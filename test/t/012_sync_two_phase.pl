# Two-phase commit across a failover: a prepared transaction decoded (and
# confirmed) on the primary is committed on the promoted standby, and the
# synchronized slots decode the COMMIT PREPARED only -- for a test_decoding
# slot created with twophase => true, and for a subscription with
# two_phase = on.  A transaction prepared but not yet consumed before the
# failover is decoded whole from the promoted standby.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby(
	primary_conf => "max_prepared_transactions = 10\n"
	  . "pg_slotsync.failover_slot_patterns = 'lsub%'\n");

my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init;
$subscriber->append_conf('postgresql.conf',
	"max_prepared_transactions = 10\nwal_receiver_status_interval = 1s\n");
$subscriber->start;

# test_decoding slot with two-phase decoding
create_failover_slot($primary, 'tp1', twophase => 1);
is( $primary->safe_psql(
		'postgres',
		"SELECT two_phase, failover FROM pg_slotsync.replication_slots WHERE slot_name = 'tp1'"
	),
	't|t',
	'two-phase failover slot on the primary');

$primary->safe_psql('postgres',
	"CREATE TABLE tp (id int PRIMARY KEY, v text);
	 CREATE PUBLICATION pub FOR TABLE tp;");
$subscriber->safe_psql('postgres', 'CREATE TABLE tp (id int PRIMARY KEY, v text)');
my $pub_connstr = $primary->connstr . ' dbname=postgres';
$subscriber->safe_psql('postgres',
	"CREATE SUBSCRIPTION lsub_tp CONNECTION '$pub_connstr' PUBLICATION pub WITH (two_phase = on)"
);
$subscriber->wait_for_subscription_sync($primary, 'lsub_tp');
ok( $subscriber->poll_query_until(
		'postgres',
		"SELECT subtwophasestate = 'e' FROM pg_subscription WHERE subname = 'lsub_tp'"
	),
	'two-phase is enabled for the subscription');
ok( $primary->poll_query_until(
		'postgres',
		"SELECT two_phase FROM pg_replication_slots WHERE slot_name = 'lsub_tp'"),
	'the subscription\'s slot decodes two-phase');

get_changes($primary, 'tp1');    # past the DDL

# gx1: prepared, decoded and confirmed on the primary
$primary->safe_psql('postgres',
	"BEGIN; INSERT INTO tp VALUES (1, 'one'); PREPARE TRANSACTION 'gx1';");
is( get_changes($primary, 'tp1'),
	"BEGIN\ntable public.tp: INSERT: id[integer]:1 v[text]:'one'\nPREPARE TRANSACTION 'gx1'",
	'the prepared transaction is decoded on the primary');

# gx2: prepared, not consumed from tp1 (the subscriber gets it)
$primary->safe_psql('postgres',
	"BEGIN; INSERT INTO tp VALUES (2, 'two'); PREPARE TRANSACTION 'gx2';");

ok( $subscriber->poll_query_until(
		'postgres', 'SELECT count(*) = 2 FROM pg_prepared_xacts'),
	'the subscriber has both transactions prepared');
is($subscriber->safe_psql('postgres', 'SELECT count(*) FROM tp'),
	'0', 'and no row committed yet');

ok(wait_for_slot_ready($standby, 'tp1'), 'tp1 is sync-ready')
  or die 'tp1 never became ready';
ok(wait_for_slot_ready($standby, 'lsub_tp'), 'lsub_tp is sync-ready')
  or die 'lsub_tp never became ready';
ok(wait_for_slot_match($primary, $standby, 'tp1'),
	'tp1 on the standby has the primary\'s positions');
ok(wait_for_slot_match($primary, $standby, 'lsub_tp'),
	'lsub_tp on the standby has the primary\'s positions');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT string_agg(slot_name || ':' || two_phase, ',' ORDER BY slot_name)
		 FROM pg_replication_slots WHERE slot_name IN ('tp1', 'lsub_tp')",
		'lsub_tp:true,tp1:true'),
	'the copies decode two-phase too (lsub_tp\'s was enabled after the slot was created)'
);

# failover
$primary->stop;
$standby->promote;
ok( $standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
	'standby promoted');
is( $standby->safe_psql(
		'postgres',
		"SELECT string_agg(gid, ',' ORDER BY gid) FROM pg_prepared_xacts"),
	'gx1,gx2',
	'the prepared transactions are on the promoted standby');
is( $standby->safe_psql(
		'postgres',
		"SELECT string_agg(slot_name || ':' || synced || ':' || failover || ':' || temporary, ',' ORDER BY slot_name)
		 FROM pg_slotsync.replication_slots WHERE slot_type = 'logical'"),
	'lsub_tp:true:true:false,tp1:true:true:false',
	'the synchronized slots remain after promotion');

my $new_connstr = $standby->connstr . ' dbname=postgres';
$subscriber->safe_psql('postgres',
	"ALTER SUBSCRIPTION lsub_tp CONNECTION '$new_connstr'");

# gx2 was never consumed from tp1: decoded whole from the promoted standby
is( get_changes($standby, 'tp1'),
	"BEGIN\ntable public.tp: INSERT: id[integer]:2 v[text]:'two'\nPREPARE TRANSACTION 'gx2'",
	'the unconsumed prepared transaction is decoded from the promoted standby'
);

$standby->safe_psql('postgres', "COMMIT PREPARED 'gx1'");
$standby->safe_psql('postgres', "COMMIT PREPARED 'gx2'");

is( get_changes($standby, 'tp1'),
	"COMMIT PREPARED 'gx1'\nCOMMIT PREPARED 'gx2'",
	'COMMIT PREPARED is decoded from the synchronized slot, and nothing else'
);

ok( $subscriber->poll_query_until(
		'postgres', "SELECT string_agg(id::text, ',' ORDER BY id) FROM tp",
		'1,2'),
	'the subscriber gets both rows after COMMIT PREPARED on the new primary');
is($subscriber->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
	'0', 'no transaction is left prepared on the subscriber');

# and a new two-phase transaction on the new primary goes through as well
$standby->safe_psql('postgres',
	"BEGIN; INSERT INTO tp VALUES (3, 'three'); PREPARE TRANSACTION 'gx3';");
$standby->safe_psql('postgres', "COMMIT PREPARED 'gx3'");
ok( $subscriber->poll_query_until(
		'postgres', "SELECT string_agg(id::text, ',' ORDER BY id) FROM tp",
		'1,2,3'),
	'a new prepared transaction reaches the subscriber');
is( get_changes($standby, 'tp1'),
	"BEGIN\ntable public.tp: INSERT: id[integer]:3 v[text]:'three'\nPREPARE TRANSACTION 'gx3'\nCOMMIT PREPARED 'gx3'",
	'and is decoded from tp1');

$subscriber->stop;
$standby->stop;

done_testing();
