# A serialized snapshot the standby receives is checked (magic, version,
# length, CRC) before it is installed.  A damaged one never makes a copy
# ready, nor moves a ready copy onto it: the copy says snapshot_invalid, and
# recovers once the primary's slot moves on to a good snapshot.
#
# The damage is done to the primary's file while the sync worker is
# stopped (SIGSTOP), between the slot's move and the worker's next look.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

# 'older' exists before the standby syncs; with fetching its history off,
# its copy waits for its consumer
my ($primary, $standby) = setup_primary_standby(
	standby_conf => "pg_slotsync.max_wal_fetch = 0\n",
	before_backup => sub {
		create_failover_slot($_[0], 'older');
	});
create_failover_slot($primary, 'fresh');
ok(wait_for_slot_ready($standby, 'fresh'), 'a fresh slot is ready');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT reason_code = 'waiting_for_remote' FROM pg_slotsync.sync_status WHERE slot_name = 'older'"
	),
	'a slot older than the standby\'s sync waits for its consumer');

# Move the slot on the primary so that its restart_lsn is at a serialized
# snapshot, and damage that file; returns the new restart_lsn.
sub move_and_damage
{
	my ($name) = @_;
	my $before = $primary->safe_psql('postgres',
		"SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = '$name'");
	$primary->safe_psql('postgres', 'CREATE TABLE IF NOT EXISTS t (id int); INSERT INTO t VALUES (1)');
	advance_slot($primary, $name);
	advance_slot($primary, $name);
	my $lsn = $primary->safe_psql('postgres',
		"SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = '$name'");
	isnt($lsn, $before, "$name moved on the primary");
	my ($hi, $lo) = split m{/}, $lsn;
	my $file = sprintf('%s/pg_logical/snapshots/%X-%X.snap',
		$primary->data_dir, hex($hi), hex($lo));
	ok(-f $file, "the primary has a serialized snapshot at $name\'s restart_lsn");
	open(my $fh, '+<', $file) or die "could not open $file: $!";
	binmode $fh;
	seek($fh, 24, 0);
	read($fh, my $byte, 1);
	seek($fh, 24, 0);
	print $fh chr(ord($byte) ^ 0xff);
	close $fh;
	return $lsn;
}

sub status_of
{
	my ($name) = @_;
	return $standby->safe_psql('postgres',
		"SELECT state || ':' || coalesce(reason_code, '') FROM pg_slotsync.sync_status WHERE slot_name = '$name'"
	);
}

my $worker = worker_pid($standby);
kill 'STOP', $worker;
my $fresh_before = $standby->safe_psql('postgres',
	"SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'fresh'");
my $fresh_lsn = move_and_damage('fresh');
my $older_lsn = move_and_damage('older');
my $offset = log_offset($standby);
kill 'CONT', $worker;

ok( $standby->poll_query_until(
		'postgres',
		"SELECT reason_code = 'snapshot_invalid' FROM pg_slotsync.sync_status WHERE slot_name = 'older'"
	),
	'the copy that would become ready says its snapshot is invalid');
is(status_of('older'), 'not_ready:snapshot_invalid',
	'and is not ready');
ok(!is_slot_ready($standby, 'older'), 'the view agrees');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT reason_code = 'snapshot_invalid' FROM pg_slotsync.sync_status WHERE slot_name = 'fresh'"
	),
	'the ready copy does not move onto the damaged snapshot');
is( $standby->safe_psql('postgres',
		"SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'fresh'"),
	$fresh_before,
	'it stays where its last good snapshot was');
my ($hi, $lo) = split m{/}, $older_lsn;
ok( !-f sprintf('%s/pg_logical/snapshots/%X-%X.snap',
		$standby->data_dir, hex($hi), hex($lo)),
	'the damaged file was not installed');
ok( $standby->log_contains(
		qr/could not synchronize replication slot "older".*\n.*the serialized snapshot at [0-9A-F\/]+ received from the primary is not valid/,
		$offset),
	'the reason is logged');

# The consumer moves on to a good snapshot: both recover.
$primary->safe_psql('postgres', 'INSERT INTO t VALUES (2)');
advance_slot($primary, 'older');
ok(wait_for_slot_match($primary, $standby, 'older'),
	'once the slot moves on, the copy is ready at the primary\'s position');
advance_slot($primary, 'fresh');
ok(wait_for_slot_match($primary, $standby, 'fresh'),
	'and the other copy follows again');

$standby->stop;
$primary->stop;
done_testing();
