# pg_slotsync_ready, the command-line check for failover tools: exit 0
# ready, 1 not ready, 2 cannot tell, with the reason printed.  The default
# check wants a standby that is synchronizing now; --pre-promote wants a
# sync-ready copy of every failover slot (stale is fine: the primary is
# gone), refuses otherwise, and after --give-up-after seconds of refusing
# allows the promotion, naming the slots that will be lost.  --wait waits.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

# "late" exists before the standby starts and, with fetching off, its copy
# waits for its consumer: a slot that is not ready on the second standby
my ($primary, $standby) = setup_primary_standby(
	standby_conf => "pg_slotsync.max_wal_fetch = 0\n",
	before_backup => sub {
		my ($p) = @_;
		$p->safe_psql('postgres',
			"SELECT pg_slotsync.create_logical_replication_slot('late', 'test_decoding', failover => true)"
		);
	});
my $state_dir = PostgreSQL::Test::Utils::tempdir();

# Run the check against a node; returns (exit status, stdout, stderr).
sub ready
{
	my ($node, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			$node->installed_command('pg_slotsync_ready'),
			'-h', $node->host, '-p', $node->port, @args
		],
		'>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

my ($rc, $out, $err) = ready($standby);
is($rc, 1, 'a copy that is not ready: not ready');
like($out, qr/not ready: 1 of 1 failover slots have no sync-ready copy: late \(not_ready: /,
	'the slot and its reason are printed');

create_failover_slot($primary, 'soon');
ok(wait_for_slot_ready_advancing($primary, $standby, 'late'),
	'late becomes ready once its consumer moves');
($rc, $out) = ready($standby, '--wait', '60');
is($rc, 0, '--wait: ready once every copy is');
like($out, qr/^pg_slotsync_ready: ready: every failover slot has a sync-ready copy$/m,
	'and says so');

($rc, $out) = ready($standby, '--quiet');
is($rc . $out, '0', '--quiet prints nothing when ready');

($rc, $out) = ready($standby, '-p', '1');
is($rc, 2, 'no server to ask: cannot tell');
like($out, qr/cannot tell: .*connect/i, 'with the reason');
($rc, $out) = ready($primary);
is($rc, 2, 'a primary: cannot tell');
like($out, qr/cannot tell: this server is not a standby/, 'with the reason');

# A second standby that never synchronized
my $never = PostgreSQL::Test::Cluster->new('never');
$primary->backup('never_backup');
$never->init_from_backup($primary, 'never_backup', has_streaming => 1);
$never->append_conf('postgresql.conf',
	"pg_slotsync.sync_replication_slots = off\n");
$never->start;
($rc, $out) = ready($never, '--pre-promote', '--state-file',
	"$state_dir/never.state");
is($rc, 1, '--pre-promote: a standby that never synchronized is not ready');
like($out, qr/not ready: slot synchronization has not completed a cycle/,
	'and says why');
$never->stop;

# The primary fails: the default check says the standby is not current, the
# pre-promote check that nothing would be lost
create_failover_slot($primary, 'fresh');
ok(wait_for_slot_ready($standby, 'fresh'), 'fresh is ready');
$primary->stop('immediate');
ok( wait_until(
		sub {
			my ($r) = ready($standby);
			return $r == 1;
		}),
	'the primary gone: the default check says not ready');
($rc, $out) = ready($standby);
like($out, qr/not ready: slot synchronization is failing/, 'because sync fails');
($rc, $out) = ready($standby, '--pre-promote', '--state-file',
	"$state_dir/ok.state");
is($rc, 0, '--pre-promote: every slot has a sync-ready copy, promotion is fine');
like($out, qr/ready for promotion: every failover slot has a sync-ready copy/,
	'and says so');

# A copy that is not ready when the primary fails: refused, then allowed
# after --give-up-after, naming the slot lost.  The copy of "behind" cannot
# be ready: the standby has a slot of its own under that name, kept
# (pg_slotsync.stale_slots = keep).
$primary->start;
$standby->stop;
$primary->safe_psql('postgres',
	"SELECT pg_create_logical_replication_slot('behind', 'test_decoding')");
copy_slot_to_standby($primary, $standby, 'behind');
$standby->append_conf('postgresql.conf', "pg_slotsync.stale_slots = keep\n");
$standby->start;
$primary->safe_psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('behind', true)");
ok( $standby->poll_query_until(
		'postgres',
		"SELECT state FROM pg_slotsync.sync_status WHERE slot_name = 'behind'",
		'conflict'),
	'the copy of "behind" cannot be made');
ok(wait_for_slot_ready($standby, 'fresh'), 'while the others are ready');
$primary->stop('immediate');

my $state = "$state_dir/refuse.state";
($rc, $out) = ready($standby, '--pre-promote', '--give-up-after', '2',
	'--state-file', $state);
is($rc, 1, '--pre-promote: a slot without a ready copy refuses the promotion');
like($out, qr/not ready: 1 of \d+ failover slots have no sync-ready copy: behind \(conflict: /,
	'naming the slot');
like($out, qr/refusing promotion for up to \d+ more seconds/,
	'and for how long at most');
ok(-f $state, 'the first refusal is remembered');

my $allowed = wait_until(
	sub {
		($rc, $out, $err) = ready($standby, '--pre-promote', '--give-up-after',
			'2', '--state-file', $state);
		return $rc == 0;
	});
ok($allowed, 'after --give-up-after the promotion is allowed');
like($err, qr/WARNING: consumers of these slots lose their position and must be resynchronized: behind \(conflict: /,
	'and the slot that will be lost is named on stderr');
like($out, qr/promotion allowed after refusing for \d+ s/, 'it says why');
ok(!-f $state, 'the state file is gone, for the next failover');

# A refusal whose failover another standby resolved: the state file stays
# behind on this one.  When a primary has since sent it WAL, that refusal
# is from an earlier failover, and must not count towards the next one:
# the next failover is refused again for give-up-after seconds, during
# which a ready standby can be promoted instead.
($rc, $out) = ready($standby, '--pre-promote', '--give-up-after', '2',
	'--state-file', $state);
is($rc, 1, 'the next failover: refused');
my $refused_at = time();
$primary->start;
$primary->safe_psql('postgres', 'CREATE TABLE after_refusal ()');
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
ok(wait_until(sub { time() >= $refused_at + 3 }),
	'more than --give-up-after seconds later');
$primary->stop('immediate');
($rc, $out, $err) = ready($standby, '--pre-promote', '--give-up-after', '2',
	'--state-file', $state);
is($rc, 1,
	'a failover after the standby followed a primary again is refused anew');
like($out, qr/refusing promotion for up to 2 more seconds/,
	'counting from its own first refusal');
is($err, '', 'and nothing is said to be lost');

# A consumer that has confirmed changes this standby has not flushed: its
# copy is sync-ready, but promoting this standby would make the consumer
# skip what the new primary writes in their place.  Not ready, for both
# checks.  The walreceiver stops; the sync worker goes on through its own
# connection.  "behind" goes first, so that nothing else is wrong.
$primary->start;
$primary->safe_psql('postgres', "SELECT pg_drop_replication_slot('behind')");
$standby->safe_psql('postgres', "SELECT pg_drop_replication_slot('behind')");
ok( wait_until(
		sub {
			($rc, $out) = ready($standby);
			return $rc == 0;
		}),
	'with the primary back and "behind" gone, the standby is ready')
  or diag $out;
ok(stop_wal_streaming($primary, $standby), 'the walreceiver stopped');
$primary->safe_psql('postgres', 'CREATE TABLE unflushed (i int)');
$primary->safe_psql('postgres', 'INSERT INTO unflushed VALUES (1)');
get_changes($primary, 'fresh');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT wal_flushed FROM pg_slotsync.failover_readiness() WHERE slot_name = 'fresh'",
		'f'),
	"fresh's consumer is ahead of what the standby flushed");
($rc, $out) = ready($standby);
is($rc, 1, 'the check says not ready');
like($out,
	qr/fresh \(behind: its consumer has confirmed changes this standby has not flushed\)/,
	'naming the slot and why');
($rc, $out) = ready($standby, '--pre-promote', '--give-up-after', '60',
	'--state-file', "$state_dir/unflushed.state");
is($rc, 1, '--pre-promote refuses the promotion');
like($out, qr/fresh \(behind: /, 'for that slot');

$primary->stop;
$standby->stop;
done_testing();
