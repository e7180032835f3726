# pg_slotsync.sync_replication_slots(timeout): a timeout too long to count
# in microseconds is "no time limit worth mentioning", not a negative one.
# The arithmetic is overflow-checked and clamped; a negative interval is
# still refused, and one with a negative part but a positive sum is not.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby(sync => 0);

# No failover slot on the primary: the call returns at once when it works.
foreach my $timeout ('100000000 years', '170000000 years 2147483647 days',
	'2147483647 days 2562047788 hours', '1000 years', '1 day -1 hour')
{
	my ($ret, $out, $err) = $standby->psql('postgres',
		"SELECT pg_slotsync.sync_replication_slots(interval '$timeout')");
	is($ret, 0, "a timeout of $timeout is accepted") or diag($err);
	unlike($err, qr/must not be negative/, "$timeout is not called negative");
}

foreach my $timeout ('-1 second', '-100000000 years', '1 day -25 hours')
{
	my ($ret, $out, $err) = $standby->psql('postgres',
		"SELECT pg_slotsync.sync_replication_slots(interval '$timeout')");
	isnt($ret, 0, "a timeout of $timeout is refused");
	like($err, qr/timeout must not be negative/, "$timeout is negative");
}

done_testing();
