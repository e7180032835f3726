# A fast shutdown while a walsender is held back by
# pg_slotsync.synchronized_standby_slots:
#  - the listed standby is down: the walsender raises core's ERROR and exits
#    at once, without sending what the standby lacks;
#  - the listed standby is connected but does not confirm: the walsender
#    waits for wal_sender_timeout, then logs and exits, still without
#    sending (core would wait forever);
#  - the standby confirms during the wait: the walsender sends the change
#    and stops normally.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;
use IPC::Run;
use Time::HiRes qw(time);

my $sb = $SlotSyncTest::STANDBY_SLOT;
my ($primary, $standby) = setup_primary_standby(
	sync => 0,
	primary_conf => qq(
pg_slotsync.synchronized_standby_slots = '$sb'
pg_slotsync.failover_slot_patterns = 'sub%'
wal_sender_timeout = 3s
));
$primary->safe_psql('postgres', qq(
CREATE TABLE tab (id int PRIMARY KEY);
CREATE PUBLICATION pub FOR TABLE tab;
));

my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init;
$subscriber->append_conf('postgresql.conf',
	"wal_retrieve_retry_interval = 100ms\n");
$subscriber->start;
$subscriber->safe_psql('postgres', 'CREATE TABLE tab (id int PRIMARY KEY)');
my $pub_connstr = $primary->connstr . ' dbname=postgres';
$subscriber->safe_psql('postgres',
	"CREATE SUBSCRIPTION sub1 CONNECTION '$pub_connstr' PUBLICATION pub");

my $rows = 0;

# insert a row and wait until the subscription's walsender holds it back
sub insert_held_back
{
	$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (' . ++$rows . ')');
	$primary->poll_query_until('postgres',
		"SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'sub1')"
	) or die 'the walsender was not held back';
}

sub stop_primary
{
	my $start = time();
	$primary->stop('fast');
	return time() - $start;
}

sub subscriber_rows
{
	return $subscriber->safe_psql('postgres', 'SELECT count(*) FROM tab');
}

$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (' . ++$rows . ')');
$subscriber->poll_query_until('postgres', "SELECT count(*) = $rows FROM tab")
  or die 'subscriber did not start';

# 1. standby down
$standby->stop;
insert_held_back();
my $log_offset = -s $primary->logfile;
my $took = stop_primary();
note("shutdown took $took s");
ok($took < 30, 'shutdown does not hang while the listed standby is down');
like(
	slurp_file($primary->logfile, $log_offset),
	qr/ERROR:  replication slot "$sb" specified in parameter "pg_slotsync.synchronized_standby_slots" does not have active_pid/,
	'the waiting walsender raises an ERROR at shutdown');
is(subscriber_rows(), $rows - 1, 'and does not send the change the standby lacks');

# 2. a connected standby that does not confirm: pg_receivewal on the slot
# reports its flush position only when its file is synced
$primary->start;
my $walarchive = PostgreSQL::Test::Utils::tempdir;
my $receivewal = IPC::Run::start(
	[
		'pg_receivewal', '-D', $walarchive, '-S', $sb, '-s', '1', '-n',
		'-d', $primary->connstr('postgres')
	],
	'>', \my $rw_out, '2>', \my $rw_err);
$primary->poll_query_until('postgres',
	"SELECT active FROM pg_replication_slots WHERE slot_name = '$sb'")
  or die 'pg_receivewal did not start';
$subscriber->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_subscription WHERE pid IS NULL")
  or die 'subscription did not reconnect';
insert_held_back();
$log_offset = -s $primary->logfile;
$took = stop_primary();
note("shutdown took $took s");
ok($took >= 2.5 && $took < 30,
	'shutdown waits about wal_sender_timeout for a connected standby');
like(
	slurp_file($primary->logfile, $log_offset),
	qr/LOG:  terminating walsender process for replication slot "sub1" during shutdown\n.*DETAIL:  The standbys listed in parameter "pg_slotsync.synchronized_standby_slots" did not confirm WAL location/,
	'then logs that it gives up');
is(subscriber_rows(), $rows - 2, 'without sending the change');
$receivewal->finish;

# 3. the standby confirms during the shutdown wait
$primary->start;
$standby->start;
$subscriber->poll_query_until('postgres', "SELECT count(*) = $rows FROM tab")
  or die 'subscriber did not catch up after the standby came back';
$primary->wait_for_catchup($standby);
my $walreceiver =
  $standby->safe_psql('postgres', 'SELECT pid FROM pg_stat_wal_receiver');
kill 'STOP', $walreceiver;
insert_held_back();
# resume the standby half a second into the shutdown
system("(sleep 0.5; kill -CONT $walreceiver) &");
$took = stop_primary();
note("shutdown took $took s");
is(subscriber_rows(), $rows,
	'a standby that confirms during shutdown lets the change through');

$standby->stop;
$subscriber->stop;

done_testing();
