# The chaos harness (test/chaos/chaos.py, docs/reliability.md), short run:
# three cycles with a fixed seed that draws a planned switchover, a crash
# failover (immediate stop, promotion, pg_rewind) and a slot invalidated by
# max_slot_wal_keep_size, under the writer's load.  Every check must hold:
# every committed row exactly once at both subscriptions, pg_recvlogical
# complete, no crash, no leaked slot.  Then a self-test: the same checks
# must report a duplicated row, a lost row, a leaked slot and a crash that
# are planted on purpose, so that a green short run means something.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Basename qw(dirname);
use Cwd qw(abs_path);

my $harness = abs_path(dirname(__FILE__) . '/../chaos/chaos.py');

# run the harness; returns (exit code, output)
sub chaos
{
	my ($name, @args) = @_;
	my @ports = map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. 5;
	my $dir = "$PostgreSQL::Test::Utils::tmp_check/chaos_$name";
	my ($stdout, $stderr) = ('', '');
	IPC::Run::run(
		[
			'/usr/bin/python3', $harness,
			'--ports', join(',', @ports),
			'--workdir', $dir, @args
		],
		'>' => \$stdout,
		'2>' => \$stderr,
		IPC::Run::timeout(600));
	my $rc = $? >> 8;
	# keep the harness's output with the test's log
	note("=== chaos $name: exit $rc\n$stdout\n--- stderr\n$stderr");
	ok(!glob("$dir/*/postmaster.pid"), "$name: no server left running");
	return ($rc, $stdout);
}

my ($rc, $out) = chaos('short', '--mode', 'ours', '--cycles', '3', '--seed', '13');
is($rc, 0, 'short run: the harness exits with status 0');
is(scalar(() = $out =~ /^cycle +\d+\/3 .* ok \|/mg),
	3, 'short run: three cycles, each ok');
like($out, qr/fault=switchover .*resume [\d.]+s, .*ready [\d.]+s/,
	'short run: the planned switchover resumes the consumers');
like($out, qr/fault=crash_failover .*resume [\d.]+s, .*ready [\d.]+s/,
	'short run: the crash failover resumes the consumers');
like($out, qr/fault=invalidate_slot .*lost=\['victim'\]/,
	'short run: only the lagging slot is invalidated');
like($out, qr/^failovers: 2 /m, 'short run: two failovers');
like(
	$out,
	qr/^rows lost: 0  rows duplicated: 0  rows that should not be there: 0$/m,
	'short run: every row exactly once');
like(
	$out,
	qr/^pg_recvlogical: transactions lost 0, duplicated 0, /m,
	'short run: pg_recvlogical got every transaction');
like($out, qr/^crashes: 0  leaked slots: 0 /m,
	'short run: no crash, no leaked slot');
like($out, qr/^chaos: PASSED$/m, 'short run: passed');

# the checks themselves: plant one defect of each kind
($rc, $out) = chaos(
	'selftest', '--mode', 'ours', '--cycles', '1', '--seed', '7',
	'--inject', 'dup,loss,leak,crash');
isnt($rc, 0, 'self-test: the harness fails');
like($out, qr/rows: sub_stream\.t0: 1 rows duplicated/,
	'self-test: a duplicated row is reported');
like($out, qr/rows: sub_2pc\.t0: 1 rows missing/,
	'self-test: a missing row is reported');
like($out, qr/slots: n\d \(primary\): logical stray test_decoding holding WAL/,
	'self-test: a slot nothing uses is reported');
like($out, qr/crash: sub: .*terminated by signal 11/,
	'self-test: a crash in a log is reported');
like($out, qr/^chaos: FAILED$/m, 'self-test: failed');

done_testing();
