# The README's demo (make demo) runs to the end and shows what it promises:
# the same slot on primary and standby, every row exactly once after the
# failover, and a clean exit.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Basename qw(dirname);
use Cwd qw(abs_path);

my $demo = abs_path(dirname(__FILE__) . '/../../scripts/demo.sh');
my @ports = map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. 3;
my $tmp = PostgreSQL::Test::Utils::tempdir('demo');

my ($stdout, $stderr);
my $ok = IPC::Run::run(
	[ 'bash', $demo ],
	'>' => \$stdout,
	'2>' => \$stderr,
	init => sub {
		$ENV{DEMO_PRIMARY_PORT} = $ports[0];
		$ENV{DEMO_STANDBY_PORT} = $ports[1];
		$ENV{DEMO_SUBSCRIBER_PORT} = $ports[2];
		$ENV{TMPDIR} = $tmp;
	},
	IPC::Run::timeout(120));

ok($ok, 'the demo exits with status 0') or diag "$stdout\n$stderr";
like($stdout, qr/cdc_slot\s+\|\s+\d+\s+\|\s+[0-9A-F\/]+\s+\|\s+[0-9A-F\/]+\s+\|\s+t\s+\|\s+t/,
	'the standby shows the failover slot as failover and synced');
like($stdout, qr/\s15 \|\s+15 \|\s+1 \|\s+15\n/,
	'the subscriber has rows 1 to 15 exactly once after the failover');
like($stdout, qr/Done: every row exactly once/, 'the demo reaches its end');
unlike($stderr, qr/DEMO FAILED/, 'no step failed');
ok(!glob("$tmp/pg_slotsync_demo*"), 'the demo removed its directories');

done_testing();
