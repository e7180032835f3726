# Quorum forms of pg_slotsync.synchronized_standby_slots:
#   ANY n (...)    any n listed standbys must have the WAL
#   FIRST n (...)  the first n usable standbys in list order must have it;
#                  one that is down hands its place to the next, one that
#                  is connected but behind keeps it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 'logical');
$primary->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'pg_slotsync'
));
$primary->start;
$primary->safe_psql('postgres', qq(
CREATE EXTENSION pg_slotsync;
SELECT pg_create_physical_replication_slot('sb1');
SELECT pg_create_physical_replication_slot('sb2');
CREATE TABLE tab (id int);
SELECT pg_slotsync.create_logical_replication_slot('fo', 'test_decoding', failover => true);
));
$primary->backup('bk');

my %standby;
foreach my $name ('sb1', 'sb2')
{
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init_from_backup($primary, 'bk', has_streaming => 1);
	$node->append_conf('postgresql.conf', qq(
primary_slot_name = '$name'
shared_preload_libraries = 'pg_slotsync'
));
	$node->start;
	$standby{$name} = $node;
}

my $next_id = 1;

sub set_list
{
	my ($value) = @_;
	$primary->safe_psql('postgres',
		"ALTER SYSTEM SET pg_slotsync.synchronized_standby_slots = '$value'");
	$primary->reload;
	$primary->poll_query_until('postgres',
		"SELECT current_setting('pg_slotsync.synchronized_standby_slots') = '$value'"
	) or die "setting $value did not apply";
}

# insert a row, and try to decode it within "timeout": returns the number of
# rows decoded, or 'waits' if the call was cancelled by the timeout
sub insert_and_decode
{
	my ($timeout) = @_;
	$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (' . $next_id++ . ')');
	return decode($timeout);
}

sub decode
{
	my ($timeout) = @_;
	my ($ret, $out, $err) = $primary->psql('postgres',
		"SET statement_timeout = '$timeout'; SELECT count(*) FROM pg_logical_slot_get_changes('fo', NULL, NULL) WHERE data LIKE 'table%'"
	);
	return 'waits' if $err =~ /canceling statement due to statement timeout/;
	die "unexpected error: $err" if $ret != 0;
	return $out;
}

# ANY 1 with sb1 down: sb2 is enough, and nobody complains about sb1
set_list('ANY 1 (sb1, sb2)');
$standby{sb1}->stop;
my $log_offset = -s $primary->logfile;
is(insert_and_decode('30s'), '1', 'ANY 1 (sb1, sb2): sb2 alone lets data flow');
unlike(
	slurp_file($primary->logfile, $log_offset),
	qr/WARNING/,
	'ANY 1: no warning about sb1 while sb2 suffices');

# ... and data waits until sb2 has it
$standby{sb2}->stop;
$primary->safe_psql('postgres', 'INSERT INTO tab VALUES (' . $next_id++ . ')');
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[
		'psql', '-XAtq', '-d', $primary->connstr('postgres'), '-c',
		"SELECT count(*) FROM pg_logical_slot_get_changes('fo', NULL, NULL) WHERE data LIKE 'table%'"
	],
	'>', \$out, '2>', \$err);
$primary->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%get_changes(''fo''%' AND wait_event_type = 'Extension' AND pid <> pg_backend_pid()"
) or die 'get_changes did not wait';
ok( $primary->wait_for_log(
		qr/replication slot "sb2" specified in parameter "pg_slotsync.synchronized_standby_slots" does not have active_pid/,
		$log_offset),
	'ANY 1 with both down: warns about the standbys');
$standby{sb2}->start;
$h->finish;
is($out, "1\n", 'ANY 1: data flows once sb2 has it');

# FIRST 2 with sb1 down waits, and says why
set_list('FIRST 2 (sb1, sb2)');
$log_offset = -s $primary->logfile;
is(insert_and_decode('1s'), 'waits', 'FIRST 2 (sb1, sb2) with sb1 down waits');
like(
	slurp_file($primary->logfile, $log_offset),
	qr/replication slot "sb1" specified in parameter "pg_slotsync.synchronized_standby_slots" does not have active_pid/,
	'FIRST 2: warns about sb1');

# ANY 2 likewise
set_list('ANY 2 (sb1, sb2)');
is(decode('1s'), 'waits', 'ANY 2 (sb1, sb2) with sb1 down waits');

# FIRST 1 (sb1, sb2) with sb1 down: sb2 takes its place
set_list('FIRST 1 (sb1, sb2)');
is(decode('30s'), '1', 'FIRST 1 (sb1, sb2): sb2 takes the place of sb1, which is down');

# sb1 back but stalled (connected, not confirming): it keeps its place, so
# FIRST 1 waits for it although sb2 has the data
$standby{sb1}->start;
$primary->poll_query_until('postgres',
	"SELECT active FROM pg_replication_slots WHERE slot_name = 'sb1'")
  or die 'sb1 did not connect';
$primary->wait_for_catchup($standby{sb1});
my $walreceiver =
  $standby{sb1}->safe_psql('postgres', 'SELECT pid FROM pg_stat_wal_receiver');
kill 'STOP', $walreceiver;
is(insert_and_decode('1s'), 'waits',
	'FIRST 1 (sb1, sb2): a connected standby that is behind keeps its place');
set_list('FIRST 1 (sb2, sb1)');
is(decode('30s'), '1', 'FIRST 1 (sb2, sb1): the first standby confirms');
set_list('ANY 1 (sb1, sb2)');
is(insert_and_decode('30s'), '1', 'ANY 1 (sb1, sb2): one confirmation is enough');
set_list('sb1, sb2');
is(insert_and_decode('1s'), 'waits', 'plain list: waits for the stalled standby');
kill 'CONT', $walreceiver;
is(decode('30s'), '1', 'plain list: released once the standby resumes');

$standby{sb1}->stop;
$standby{sb2}->stop;
$primary->stop;

done_testing();
