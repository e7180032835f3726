# The production guide and the failover runbook, followed literally.
#
# docs/production.md builds a primary (node1), a standby made with
# pg_basebackup -R -C -S (node2), the roles with exactly the privileges it
# documents (non-superusers, password authentication over TCP, the pg_hba
# lines it gives), a subscriber with a subscription, and a pg_recvlogical
# consumer (test_decoding).  Then docs/failover-runbook.md runs twice: a
# switchover from node1 to node2, and the fail-back.  Every step is a code
# block of the documents, run in order (see test/perl/RunbookDoc.pm for the
# markup); the test only supplies what a document leaves to the reader: the
# application's tables, the values of the placeholders, and an application
# that inserts rows all the time through a connection string naming both
# servers.
#
# Afterwards every committed row is on the final primary, the subscriber has
# each row exactly once (its table has no unique key, so a row applied twice
# would show), and pg_recvlogical's output has every row exactly once: no
# gap, nothing delivered twice.  And no consumer ever waited for a listed
# slot that did not exist (the runbook's step 2).
#
# Last, the primary fails after writing what the standby never received,
# and the runbook's steps 2, 8 and 9 (as its section on failures says) make
# the standby the primary and the old primary its standby: pg_rewind, as the
# documented non-superuser, takes those writes back.
#
# Both "machines" are this one, so the test's pg_ctl gives each data
# directory its own port and log file when it starts a server, as two
# machines would have their own addresses (a server made by pg_basebackup
# otherwise has the primary's port).
use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use RunbookDoc;
use SlotSyncTest;

my $docs = abs_path(dirname(__FILE__) . '/../../docs');
my $production_md = "$docs/production.md";
my $runbook_md = "$docs/failover-runbook.md";

# ---------------------------------------------------------------------
# The documents: well-formed, every runbook block a step, every step's
# visible comment agreeing with its marker, every placeholder explained
# ---------------------------------------------------------------------
my $production = RunbookDoc::parse($production_md);
my $runbook = RunbookDoc::parse($runbook_md);
my @production_steps = grep { defined $_->{kind} } @$production;
my @runbook_steps = grep { defined $_->{kind} } @$runbook;

my @unmarked = map { "$_->{file}:$_->{line}" }
  grep { !defined $_->{kind} } @$production, @$runbook;
is("@unmarked", '', 'every code block of both documents is a step the test runs');
ok(@runbook_steps >= 10, 'the runbook has its steps');
foreach my $doc ([ $production_md, \@production_steps ],
	[ $runbook_md, \@runbook_steps ])
{
	my ($path, $steps) = @$doc;
	my @bad = map { RunbookDoc::check_block($_) } @$steps;
	is(join("\n", @bad), '', "$path: each step's first line says where it runs");

	my $prose = RunbookDoc::prose($path);
	my @undocumented = grep { index($prose, "<$_>") < 0 }
	  map { RunbookDoc::placeholders($_->{text}) } @$steps;
	is("@undocumented", '', "$path: every placeholder is explained");
}

# ---------------------------------------------------------------------
# The servers, and what the test supplies
# ---------------------------------------------------------------------
my $tmp = PostgreSQL::Test::Utils::tempdir('runbook');
my $node1 = PostgreSQL::Test::Cluster->new('node1');
my $node2 = PostgreSQL::Test::Cluster->new('node2');
my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
my @servers = ($node1, $node2);
my $cdc_file = "$tmp/cdc.txt";

# every server, and every client the documents start, reads this one
# password file (the documents' ~/.pgpass)
$ENV{PGPASSFILE} = "$tmp/pgpass";

# The test framework lowers some of PostgreSQL's defaults; restore those a
# DBA would have, so that the documents' settings are tested as complete.
# The rest only makes waiting shorter.
my $machine_conf = qq(
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
max_connections = 30
listen_addresses = '127.0.0.1'
wal_receiver_status_interval = 1s
);
$node1->init;
$node1->append_conf('postgresql.conf', $machine_conf);
$subscriber->init;
$subscriber->append_conf('postgresql.conf', $machine_conf);
$subscriber->start;
$subscriber->safe_psql('postgres', 'CREATE DATABASE app');
# no unique key: a row applied twice is there twice
$subscriber->safe_psql('app', 'CREATE TABLE orders (id bigint, node text)');

write_pg_ctl();

my $ctx = {
	every => \@servers,
	workdir => $tmp,
	env => {
		PATH => "$tmp/bin:$ENV{PATH}",
		PGPASSFILE => $ENV{PGPASSFILE},
		# what the test framework sets for itself; a DBA's shell has none
		PGHOST => undef,
		PGPORT => undef,
		PGDATABASE => undef,
		PGAPPNAME => undef,
	},
	# a shell step may have started or stopped a server
	after_shell => sub { $_->_update_pid(-1) foreach @servers },
};

# ---------------------------------------------------------------------
# production.md
# ---------------------------------------------------------------------
$ctx->{nodes} = {
	primary => $node1,
	standby => $node2,
	subscriber => $subscriber,
};
$ctx->{values} = {
	primary => 'node1',
	standby => 'node2',
	'primary-host' => '127.0.0.1',
	'primary-port' => $node1->port,
	'standby-data' => $node2->data_dir,
	'standby-network' => '127.0.0.1/32',
	'client-network' => '127.0.0.1/32',
	'replicator-password' => 'repl-' . int(rand(1e9)),
	'rewinder-password' => 'rew-' . int(rand(1e9)),
	'cdc-file' => $cdc_file,
};
my $node1_started = 0;
foreach my $step (@production_steps)
{
	# the settings of step 1 are in place: start the primary, with the
	# application's table
	if (!$node1_started && $step->{kind} !~ /^(conf|hba|pgpass)$/)
	{
		$node1->start;
		$node1->safe_psql('postgres', 'CREATE DATABASE app');
		$node1->safe_psql('app',
			'CREATE TABLE orders (id bigint PRIMARY KEY, node text)');
		$node1_started = 1;
	}
	run_doc_step($step);
}

# ---------------------------------------------------------------------
# the application: inserts all the time, through whichever server is the
# primary; logs each id whose commit succeeded
# ---------------------------------------------------------------------
my $app_conn = sprintf(
	'host=%s,%s port=%d,%d dbname=app target_session_attrs=read-write connect_timeout=5',
	$node1->host, $node2->host, $node1->port, $node2->port);
my $inserter = IPC::Run::start(
	[
		'bash', '-c', q{
i=0
while [ ! -e "$1/stop" ]; do
	i=$((i + 1))
	if psql -X -q -d "$2" -c "INSERT INTO orders VALUES ($i, current_setting('cluster_name'))" >/dev/null 2>>"$1/inserter.err"; then
		echo "$i" >> "$1/committed"
	else
		sleep 0.05	# a switchover is under way: do not spin
	fi
done
}, 'inserter', $tmp, $app_conn
	],
	'>', '/dev/null', '2>', "$tmp/inserter.out");

ok(wait_until(sub { -s "$tmp/committed" && count_lines("$tmp/committed") >= 20 }),
	'the application inserts rows');

# ---------------------------------------------------------------------
# failover-runbook.md: switchover to node2, then the fail-back to node1
# ---------------------------------------------------------------------
run_runbook($node1, $node2);
my $on_node2 = $node2->safe_psql('app', "SELECT count(*) FROM orders WHERE node = 'node2'");
ok(wait_until(sub {
	$node2->safe_psql('app', "SELECT count(*) FROM orders WHERE node = 'node2'") >= $on_node2 + 20 }),
	'the application inserts rows on node2');

run_runbook($node2, $node1);
my $on_node1 = $node1->safe_psql('app',
	"SELECT count(*) FROM orders WHERE node = 'node1' AND id > (SELECT max(id) FROM orders WHERE node = 'node2')");
ok(wait_until(sub {
	$node1->safe_psql('app',
		"SELECT count(*) FROM orders WHERE node = 'node1' AND id > (SELECT max(id) FROM orders WHERE node = 'node2')") >= $on_node1 + 20 }),
	'the application inserts rows on node1 again');

# ---------------------------------------------------------------------
# every row exactly once
# ---------------------------------------------------------------------
open my $stop, '>', "$tmp/stop" or die;
close $stop;
$inserter->finish;

my @committed = split /\n/, slurp_file("$tmp/committed");
my %on_primary = map { $_ => 1 } split /\n/,
  $node1->safe_psql('app', 'SELECT id FROM orders ORDER BY id');
my @lost = grep { !$on_primary{$_} } @committed;
is(scalar(@lost), 0, 'every committed row is on the final primary')
  or diag("lost: @lost[0 .. ($#lost < 9 ? $#lost : 9)]");
my $rows = scalar(keys %on_primary);
note("rows: $rows, of which on node2: "
	  . $node1->safe_psql('app', "SELECT count(*) FROM orders WHERE node = 'node2'"));

# everything up to now confirmed by both consumers
my $end = $node1->lsn('insert');
$node1->wait_for_catchup('orders_sub', 'replay', $end);
ok( $node1->poll_query_until('postgres',
		"SELECT confirmed_flush_lsn >= '$end' FROM pg_replication_slots WHERE slot_name = 'cdc'"),
	'pg_recvlogical confirmed everything');
stop_recvlogical();

is( $subscriber->safe_psql('app',
		"SELECT count(*), count(DISTINCT id), string_agg(id::text, ',' ORDER BY id) FROM orders"),
	$node1->safe_psql('app',
		"SELECT count(*), count(*), string_agg(id::text, ',' ORDER BY id) FROM orders"),
	'the subscriber has every row of the primary exactly once');

my %seen;
my $changes = 0;
foreach my $line (split /\n/, slurp_file($cdc_file))
{
	next unless $line =~ /^table public\.orders: INSERT: id\[bigint\]:(\d+) /;
	$seen{$1}++;
	$changes++;
}
my @gap = grep { !$seen{$_} } sort { $a <=> $b } keys %on_primary;
my @twice = grep { $seen{$_} > 1 } sort { $a <=> $b } keys %seen;
my @extra = grep { !$on_primary{$_} } keys %seen;
is(scalar(@gap), 0, "pg_recvlogical's output has no gap ($changes changes)")
  or diag("missing ids: @gap[0 .. ($#gap < 9 ? $#gap : 9)]");
is(scalar(@twice), 0, "pg_recvlogical's output has no row twice")
  or diag("twice: @twice[0 .. ($#twice < 9 ? $#twice : 9)]");
is(scalar(@extra), 0, "pg_recvlogical's output has no row the primary lacks");

foreach my $node (@servers)
{
	unlike(slurp_file($node->logfile),
		qr/specified in parameter "pg_slotsync.synchronized_standby_slots" does not exist/,
		$node->name . ': no consumer waited for a missing standby slot');
}

# ---------------------------------------------------------------------
# When the primary has failed after writing what the candidate never got,
# steps 2, 8 and 9 as the runbook says: pg_rewind, as rewinder with the
# grants of production.md, takes those writes back, after crash recovery
# ---------------------------------------------------------------------
$subscriber->safe_psql('app', 'ALTER SUBSCRIPTION orders_sub DISABLE');
runbook_roles($node1, $node2);
note('runbook: node1 fails, node2 takes over');
run_doc_step($_) foreach runbook_step(2), runbook_step(8);
# node1 is cut off from node2 now: what it commits, node2 never gets
$node1->safe_psql('app',
	"INSERT INTO orders SELECT g, 'diverged' FROM generate_series(1000000001, 1000000010) g");
$node1->stop('immediate');
$node2->safe_psql('app', "INSERT INTO orders VALUES (2000000001, 'after the failure')");
run_doc_step($_) foreach runbook_step(9);
like($ctx->{stderr}, qr/rewinding from last common checkpoint/,
	'pg_rewind took back what the failed primary wrote alone');
ok( $node1->poll_query_until('app',
		"SELECT count(*) FILTER (WHERE node = 'diverged') = 0 AND count(*) FILTER (WHERE id = 2000000001) = 1 FROM orders"),
	'the old primary follows the new one, without its own last writes');

$subscriber->stop;
$node2->stop;
$node1->stop;
done_testing();

# ---------------------------------------------------------------------

# The runbook once, from $primary to $candidate.
sub run_runbook
{
	my ($primary, $candidate) = @_;
	runbook_roles($primary, $candidate);
	note('runbook: from ' . $primary->name . ' to ' . $candidate->name);
	run_doc_step($_) foreach @runbook_steps;

	# the guarantee holds on the new primary: its consumers wait for the
	# old primary, which streams from the slot the runbook made for it
	is( $candidate->safe_psql('postgres',
			'SHOW pg_slotsync.synchronized_standby_slots'),
		$primary->name . '_slot',
		$candidate->name . "'s consumers wait for its standby");
	return;
}

# The blocks of the runbook's numbered step $n.
sub runbook_step
{
	my ($n) = @_;
	my @blocks = grep { defined $_->{step} && $_->{step} == $n } @runbook_steps;
	die "the runbook has no step $n\n" unless @blocks;
	return @blocks;
}

sub runbook_roles
{
	my ($primary, $candidate) = @_;
	$ctx->{nodes} = {
		primary => $primary,
		candidate => $candidate,
		subscriber => $subscriber,
	};
	$ctx->{values} = {
		primary => $primary->name,
		candidate => $candidate->name,
		'primary-host' => '127.0.0.1',
		'primary-port' => $primary->port,
		'primary-data' => $primary->data_dir,
		'candidate-host' => '127.0.0.1',
		'candidate-port' => $candidate->port,
		'candidate-data' => $candidate->data_dir,
		'cdc-file' => $cdc_file,
	};
	return;
}

sub run_doc_step
{
	my ($step) = @_;
	my $file = $step->{file} =~ s{.*/}{}r;
	my $name = "$file:$step->{line}: $step->{first}";
	my $out = eval { RunbookDoc::run_step($ctx, $step) };
	if (!defined $out)
	{
		fail($name);
		diag($@);
		die "a documented step failed\n";
	}
	pass($name);
	note($out) if $out ne '';
	return;
}

# The test's pg_ctl: on start, a data directory gets the port and log file
# of its server (see the header).  Everything else goes to pg_ctl as is.
sub write_pg_ctl
{
	my $real = `pg_config --bindir`;
	chomp $real;
	$real .= '/pg_ctl';
	my $cases = '';
	foreach my $node (@servers)
	{
		$cases .= sprintf(
			qq{\t'%s')\n\t\tport=%d; sockets='%s'; log='%s'; name=%s;;\n},
			$node->data_dir, $node->port, $node->host, $node->logfile,
			$node->name);
	}
	mkdir "$tmp/bin";
	open my $fh, '>', "$tmp/bin/pg_ctl" or die;
	print $fh <<"EOF";
#!/bin/bash
set -e
data=''
action=''
prev=''
for arg in "\$@"; do
	[ "\$prev" = -D ] && data=\$arg
	case "\$arg" in start|restart) action=start;; esac
	prev=\$arg
done
if [ "\$action" != start ]; then
	exec '$real' "\$@"
fi
case "\$data" in
$cases	*)
		echo "test pg_ctl: unknown data directory \$data" >&2
		exit 1;;
esac
# last, so that it wins also over a postgresql.conf copied from another
# server (by pg_basebackup, or by pg_rewind)
printf '\\n# this machine (runbook test)\\nport = %s\\nunix_socket_directories = %s\\nlisten_addresses = %s\\n' \\
	"\$port" "'\$sockets'" "'127.0.0.1'" >> "\$data/postgresql.conf"
exec '$real' "\$@" -l "\$log" -o "--cluster-name=\$name"
EOF
	close $fh;
	chmod 0755, "$tmp/bin/pg_ctl";
	return;
}

sub count_lines
{
	my ($file) = @_;
	my @l = split /\n/, slurp_file($file);
	return scalar(@l);
}

# SIGINT, as the runbook does, and wait for it to exit
sub stop_recvlogical
{
	return unless -e "$cdc_file.pid";
	my $pid = slurp_file("$cdc_file.pid");
	chomp $pid;
	return unless $pid =~ /^\d+$/ && kill(0, $pid);
	kill 'INT', $pid;
	wait_until(sub { !kill(0, $pid) }) or kill 'KILL', $pid;
	return;
}

END
{
	# a failed step must not leave the consumer or the application running
	stop_recvlogical() if defined $cdc_file;
	$inserter->kill_kill if defined $inserter && $inserter->pumpable;
}
