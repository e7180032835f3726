# pg_slotsync.synchronized_standby_slots holds back a subscriber streaming
# a failover slot while the listed standby is down, lets a subscriber of an
# ordinary slot through, warns about the standby (once, not every loop), and
# releases everything once the standby is back.
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
CREATE TABLE tab (id int PRIMARY KEY);
CREATE PUBLICATION pub FOR TABLE tab;
));

# one subscriber, two databases: one subscription streams a failover slot,
# the other an ordinary slot
my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init;
$subscriber->start;
my $pub_connstr = $primary->connstr . ' dbname=postgres';
foreach my $name ('fo', 'plain')
{
	$subscriber->safe_psql('postgres', "CREATE DATABASE db_$name");
	$subscriber->safe_psql("db_$name", 'CREATE TABLE tab (id int PRIMARY KEY)');
	$subscriber->safe_psql("db_$name",
		"CREATE SUBSCRIPTION sub_$name CONNECTION '$pub_connstr' PUBLICATION pub"
	);
}
$primary->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM pg_replication_slots WHERE slot_name IN ('sub_fo', 'sub_plain') AND active"
) or die 'subscriptions did not start streaming';
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('sub_fo', true)");

sub rows_in
{
	my ($db) = @_;
	return $subscriber->safe_psql($db, 'SELECT count(*) FROM tab');
}

# with the standby up, both subscribers get a row
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (1)');
$subscriber->poll_query_until('db_fo', 'SELECT count(*) = 1 FROM tab')
  or die 'failover subscriber did not get the first row';
$subscriber->poll_query_until('db_plain', 'SELECT count(*) = 1 FROM tab')
  or die 'plain subscriber did not get the first row';
pass('with the standby up, both subscribers receive');

# standby down: the ordinary subscriber goes on, the failover one waits
$standby->stop;
my $log_offset = -s $primary->logfile;
$primary->safe_psql('postgres',
	'INSERT INTO tab SELECT generate_series(2, 10)');
$subscriber->poll_query_until('db_plain', 'SELECT count(*) = 10 FROM tab')
  or die 'plain subscriber did not get the rows';
pass('the subscriber of an ordinary slot receives while the standby is down');

ok( $primary->wait_for_log(
		qr/WARNING:  replication slot "$sb" specified in parameter "pg_slotsync.synchronized_standby_slots" does not have active_pid/,
		$log_offset),
	'the primary warns that the listed standby is not connected');
like(
	slurp_file($primary->logfile, $log_offset),
	qr/DETAIL:  Logical replication is waiting on the standby associated with replication slot "$sb".\n.*HINT:  Start the standby associated with the replication slot "$sb", or amend parameter "pg_slotsync.synchronized_standby_slots"./,
	'with core\'s detail and hint');

# give a gated walsender time to leak: several of its yields (one a second)
sleep(3);
is(rows_in('db_fo'), 1, 'the failover subscriber receives nothing new');
ok( $primary->safe_psql(
		'postgres',
		"SELECT f.confirmed_flush_lsn <= s.restart_lsn FROM pg_replication_slots f, pg_replication_slots s WHERE f.slot_name = 'sub_fo' AND s.slot_name = '$sb'"
	) eq 't',
	'the failover slot is not confirmed past what the standby has');
my $warnings = () = slurp_file($primary->logfile, $log_offset) =~
  /does not have active_pid/g;
ok($warnings >= 1 && $warnings <= 2,
	"the warning is not repeated every loop ($warnings in 3 s)");

# the standby comes back: the failover subscriber gets every row
$standby->start;
$subscriber->poll_query_until('db_fo', 'SELECT count(*) = 10 FROM tab')
  or die 'failover subscriber did not catch up';
is( $subscriber->safe_psql('db_fo', 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM tab'),
	'1,2,3,4,5,6,7,8,9,10',
	'once the standby is back the failover subscriber gets every row');

# the flag can be cleared while streaming: the subscriber no longer waits
$standby->stop;
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (11)');
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('sub_fo', false)");
$subscriber->poll_query_until('db_fo', 'SELECT count(*) = 11 FROM tab')
  or die 'subscriber still held back after the failover flag was cleared';
pass('clearing the failover flag releases a streaming consumer');

# and set again while streaming: it waits again
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('sub_fo', true)");
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (12)');
$subscriber->poll_query_until('db_plain', 'SELECT count(*) = 12 FROM tab')
  or die 'plain subscriber did not get row 12';
sleep(2);
is(rows_in('db_fo'), 11,
	'setting the flag while streaming holds the consumer back again');
$standby->start;
$subscriber->poll_query_until('db_fo', 'SELECT count(*) = 12 FROM tab')
  or die 'failover subscriber did not catch up again';
pass('and releases it once the standby is back');

$subscriber->stop;
$standby->stop;
$primary->stop;

done_testing();
