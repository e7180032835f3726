# A walsender held back by pg_slotsync.synchronized_standby_slots stays a
# good citizen: it keeps exchanging keepalives so that neither side times
# out over a wait longer than the timeouts, it ends at once on
# pg_terminate_backend and when its client goes away, and a reload that takes
# the standby off the list releases it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;
use Time::HiRes qw(time usleep);

my $sb = $SlotSyncTest::STANDBY_SLOT;
my ($primary, $standby) = setup_primary_standby(
	sync => 0,
	primary_conf => qq(
pg_slotsync.synchronized_standby_slots = '$sb'
pg_slotsync.failover_slot_patterns = 'sub%'
wal_sender_timeout = 2s
));
$primary->safe_psql('postgres', qq(
CREATE TABLE tab (id int PRIMARY KEY);
CREATE PUBLICATION pub FOR TABLE tab;
));

# the subscription's slot is a failover slot by pattern
my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init;
$subscriber->append_conf('postgresql.conf', "wal_receiver_timeout = 2s\n");
$subscriber->start;
$subscriber->safe_psql('postgres', 'CREATE TABLE tab (id int PRIMARY KEY)');
my $pub_connstr = $primary->connstr . ' dbname=postgres';
$subscriber->safe_psql('postgres',
	"CREATE SUBSCRIPTION sub1 CONNECTION '$pub_connstr' PUBLICATION pub");
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (1)');
$subscriber->poll_query_until('postgres', 'SELECT count(*) = 1 FROM tab')
  or die 'subscriber did not get the first row';
is( $primary->safe_psql(
		'postgres',
		"SELECT failover FROM pg_slotsync.replication_slots WHERE slot_name = 'sub1'"
	),
	't',
	'the subscription\'s slot is a failover slot by pattern');

sub walsender_pid
{
	return $primary->safe_psql('postgres',
		"SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'sub1' AND active"
	);
}

# hold the walsender back for more than twice both timeouts
$standby->stop;
my $primary_offset = -s $primary->logfile;
my $subscriber_offset = -s $subscriber->logfile;
my $walsender = walsender_pid();
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (2)');
my $reply_before = $primary->safe_psql('postgres',
	"SELECT reply_time FROM pg_stat_replication WHERE pid = $walsender");
sleep(5);
is($subscriber->safe_psql('postgres', 'SELECT count(*) FROM tab'),
	'1', 'the walsender was held back for 5 s');
is(walsender_pid(), $walsender, 'the same walsender is still streaming');
ok( $primary->safe_psql(
		'postgres',
		"SELECT reply_time > '$reply_before' FROM pg_stat_replication WHERE pid = $walsender"
	) eq 't',
	'the subscriber kept replying while the walsender waited');
unlike(
	slurp_file($primary->logfile, $primary_offset),
	qr/terminating walsender process due to replication timeout/,
	'the walsender did not time out');
unlike(
	slurp_file($subscriber->logfile, $subscriber_offset),
	qr/timeout/,
	'the subscriber did not time out');
is( $primary->safe_psql(
		'postgres',
		"SELECT wait_event_type FROM pg_stat_activity WHERE pid = $walsender"),
	'Extension',
	'the waiting walsender shows an extension wait event');

# seconds until the process is gone (undef if still there after 10 s)
sub time_until_gone
{
	my ($pid, $start) = @_;
	for (my $i = 0; $i < 10000; $i++)
	{
		return time() - $start unless kill(0, $pid);
		usleep(1000);
	}
	return undef;
}

# pg_terminate_backend ends it at once
my $start = time();
$primary->safe_psql('postgres', "SELECT pg_terminate_backend($walsender)");
my $took = time_until_gone($walsender, $start);
ok(defined $took, 'pg_terminate_backend ends a waiting walsender');
note("walsender gone ${took} s after pg_terminate_backend");
ok(defined $took && $took < 1, 'within a second');

# the subscriber reconnects and waits again; its going away ends the
# walsender at once
$primary->poll_query_until('postgres',
	"SELECT active_pid IS NOT NULL AND active_pid <> $walsender FROM pg_replication_slots WHERE slot_name = 'sub1'"
) or die 'subscriber did not reconnect';
$walsender = walsender_pid();
$primary->poll_query_until('postgres',
	"SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $walsender"
) or die 'new walsender did not wait';
$start = time();
$subscriber->stop('immediate');
$took = time_until_gone($walsender, $start);
ok(defined $took, 'a waiting walsender ends when its client goes away');
note("walsender gone ${took} s after the subscriber was told to stop");
ok(defined $took && $took < 1, 'within a second');
$subscriber->start;

# a reload that takes the standby off the list releases the walsender
$primary->poll_query_until('postgres',
	"SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'sub1')"
) or die 'walsender did not wait after the subscriber restarted';
$primary->safe_psql('postgres',
	"ALTER SYSTEM SET pg_slotsync.synchronized_standby_slots = ''");
$primary->reload;
$subscriber->poll_query_until('postgres', 'SELECT count(*) = 2 FROM tab')
  or die 'reload did not release the walsender';
pass('a reload that empties the list releases the walsender');

$subscriber->stop;
$primary->stop;

done_testing();
