# pg_slotsync.synchronized_standby_slots: values are checked for syntax and
# slot name rules when set and at reload (a bad value in the file keeps the
# old one), and listed slots that cannot confirm -- missing, logical,
# invalidated -- make waiting consumers warn with core's messages and hints.
# Consumers of other slots never wait.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 'logical');
$node->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'pg_slotsync'
max_slot_wal_keep_size = 1MB
));
$node->start;
$node->safe_psql('postgres', qq(
CREATE EXTENSION pg_slotsync;
CREATE TABLE tab (id int);
SELECT pg_create_physical_replication_slot('gone', true);
));

# invalidate the physical slot "gone": generate more WAL than
# max_slot_wal_keep_size
for (my $i = 0; $i < 3; $i++)
{
	$node->safe_psql('postgres',
		'INSERT INTO tab SELECT generate_series(1, 100); SELECT pg_switch_wal(); CHECKPOINT'
	);
}
is( $node->safe_psql(
		'postgres',
		"SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'gone'"),
	'lost',
	'the physical slot "gone" was invalidated');
$node->safe_psql('postgres', "ALTER SYSTEM SET max_slot_wal_keep_size = -1");
$node->reload;
$node->safe_psql('postgres', qq(
SELECT pg_slotsync.create_logical_replication_slot('fo', 'test_decoding', failover => true);
SELECT pg_slotsync.create_logical_replication_slot('plain', 'test_decoding');
));

my $guc = 'pg_slotsync.synchronized_standby_slots';

# accepted values
foreach my $value ('sb1', 'sb1, sb2', 'ANY 1 (sb1, sb2)',
	'first 2 ("sb1", SB2, sb3)', 'any', 'first, any', '')
{
	my ($ret, $out, $err) =
	  $node->psql('postgres', "ALTER SYSTEM SET $guc = '$value'");
	is($ret, 0, "accepted: '$value'") or diag($err);
}

# refused values, with the reason
my @refused = (
	[ 'sb1,,sb2', qr/List element 2 is empty/ ],
	[ 'sb1,', qr/List element 2 is empty/ ],
	[ 'Sb-1', qr/Replication slot name "sb-1" contains invalid character "-"/ ],
	[ '"SB1"', qr/Replication slot name "SB1" contains invalid character "S"/ ],
	[ 'x' x 64, qr/is too long/ ],
	[ 'sb1, sb1', qr/Replication slot "sb1" is listed more than once/ ],
	[ 'ANY 0 (sb1)', qr/must be at least 1/ ],
	[ 'ANY 3 (sb1, sb2)', qr/"ANY 3" asks for more standbys than the 2 listed/ ],
	[ 'FIRST 1 sb1', qr/Expected "\(" after "FIRST 1"/ ],
	[ 'FIRST 1 (sb1', qr/missing its closing "\)"/ ],
	[ 'ANY 1 (sb1 sb2)', qr/Expected "," or "\)" after replication slot name "sb1"/ ],
	[ 'ANY 1 (sb1) sb2', qr/Unexpected text after the closing "\)": "sb2"/ ],
	[ '2 (sb1, sb2)', qr/HINT:  Write a quorum as FIRST n \(slot, ...\) or ANY n \(slot, ...\)/ ],
	[ '"sb1', qr/unterminated quoted name/ ]);
foreach my $case (@refused)
{
	my ($value, $reason) = @$case;
	my ($ret, $out, $err) =
	  $node->psql('postgres', "ALTER SYSTEM SET $guc = '$value'");
	like(
		$err,
		qr/invalid value for parameter "$guc"/,
		"refused: '$value'");
	like($err, $reason, "with the reason for '$value'");
}

# a bad value at reload keeps the old one
$node->safe_psql('postgres', "ALTER SYSTEM RESET $guc");
$node->append_conf('postgresql.conf', "$guc = 'ANY 1 (sb1, sb2)'");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT current_setting('$guc') = 'ANY 1 (sb1, sb2)'")
  or die 'value did not apply';
$node->append_conf('postgresql.conf', "$guc = 'ANY 1 (sb1 sb2)'");
my $offset = -s $node->logfile;
$node->reload;
ok( $node->wait_for_log(
		qr/invalid value for parameter "$guc": "ANY 1 \(sb1 sb2\)"/, $offset),
	'a bad value at reload is reported');
is($node->safe_psql('postgres', "SHOW $guc"),
	'ANY 1 (sb1, sb2)', 'and the previous value stays in force');
$node->append_conf('postgresql.conf', "$guc = ''");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('$guc') = ''")
  or die 'could not clear the setting';

sub set_list
{
	my ($value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET $guc = '$value'");
	$node->reload;
	$node->poll_query_until('postgres',
		"SELECT current_setting('$guc') = '$value'")
	  or die "setting $value did not apply";
}

# Try to decode from a slot for one second; returns (rows or 'waits',
# stderr).
sub decode
{
	my ($slot) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SET statement_timeout = '1s'; SELECT count(*) FROM pg_logical_slot_get_changes('$slot', NULL, NULL)"
	);
	return ('waits', $err)
	  if $err =~ /canceling statement due to statement timeout/;
	die "unexpected error: $err" if $ret != 0;
	return ($out, $err);
}

my @problems = (
	[
		'nosuch',
		qr/WARNING:  replication slot "nosuch" specified in parameter "$guc" does not exist\nDETAIL:  Logical replication is waiting on the standby associated with replication slot "nosuch".\nHINT:  Create the replication slot "nosuch" or amend parameter "$guc"./
	],
	[
		'plain',
		qr/WARNING:  cannot specify logical replication slot "plain" in parameter "$guc"\nDETAIL:  Logical replication is waiting for correction on replication slot "plain".\nHINT:  Remove the logical replication slot "plain" from parameter "$guc"./
	],
	[
		'gone',
		qr/WARNING:  physical replication slot "gone" specified in parameter "$guc" has been invalidated\nDETAIL:  Logical replication is waiting on the standby associated with replication slot "gone".\nHINT:  Drop and recreate the replication slot "gone", or amend parameter "$guc"./
	]);
foreach my $case (@problems)
{
	my ($slot, $message) = @$case;
	set_list($slot);
	$node->safe_psql('postgres', 'INSERT INTO tab VALUES (1)');
	my ($result, $err) = decode('fo');
	is($result, 'waits', "listed slot \"$slot\": the failover slot waits");
	like($err, $message, "listed slot \"$slot\": core's warning");
	($result, $err) = decode('plain');
	is($result, '3', "listed slot \"$slot\": an ordinary slot does not wait");
	unlike($err, qr/WARNING/, 'and does not warn');
}

# problem slots that are not needed for the quorum are not reported
set_list('ANY 1 (nosuch, plain, gone)');
my ($result, $err) = decode('fo');
like($err, qr/"nosuch".*"plain".*"gone"/s,
	'all problem slots are reported when the quorum cannot be met');

# with the list emptied, the failover slot gets its changes
set_list('');
($result, $err) = decode('fo');
is($result, '9', 'with an empty list the failover slot gets its changes');

$node->stop;

done_testing();
