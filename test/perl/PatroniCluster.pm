# A real Patroni cluster for TAP tests: one etcd and N Patroni members on
# loopback, each running a PostgreSQL of the installation under test (the
# bin directory of the pg_config on PATH, as for every other TAP test).
#
# It uses the packaged programs only: Debian's "patroni" (3.0.2 on
# Debian 12) and "etcd-server" (3.4), which scripts/setup.sh installs.  When
# they are missing the caller should skip (see PatroniCluster::missing()).
#
# Conventions:
#  - every member also has a PostgreSQL::Test::Cluster object (pg()) with
#    the member's port and socket directory, for safe_psql and
#    poll_query_until, and whose logfile() is the member's server log
#    (logging_collector writes it); Patroni's own log is patroni_log();
#  - the caller gives the "bootstrap.dcs" section (what is under test:
#    ttl, timeouts, ignore_slots, PostgreSQL parameters) as YAML text; this
#    module writes the per-member rest (addresses, directories, users,
#    pg_hba) around it;
#  - waits poll, give up after $WAIT_SECS seconds and then print the end of
#    the relevant logs, so that a broken step says why;
#  - every process started here (etcd, Patroni, the PostgreSQL servers
#    Patroni started, and background commands from start_bg()) is killed at
#    the end, also when the test dies: see cleanup() and the END block.
package PatroniCluster;

use strict;
use warnings;

use File::Basename qw(basename);
use File::Path qw(make_path);
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our $WAIT_SECS = 90;

# Every instance, for the END block.
my @instances;

=pod

=head1 PatroniCluster::missing()

Returns the name of the first program this module needs that is not
installed ('' when all are there).

=cut

sub missing
{
	for my $prog (qw(patroni patronictl etcd))
	{
		my $found = grep { -x "$_/$prog" } split(/:/, $ENV{PATH} // '');
		return $prog unless $found;
	}
	return '';
}

=pod

=head1 PatroniCluster->new(%opts)

  scope      the Patroni cluster name (default 'pgss')
  members    member names (default n1 n2 n3); also their physical slot
             names, as Patroni names a member's slot after the member
  dcs        YAML text of the bootstrap.dcs section, without indentation

Reserves every port at once, so that the caller can use them (for example
in a multi-host connection string) before anything starts.

=cut

sub new
{
	my ($class, %opts) = @_;
	my $self = bless {
		scope => $opts{scope} // 'pgss',
		members => $opts{members} // [qw(n1 n2 n3)],
		dcs => $opts{dcs} // '',
		procs => {},    # name => pid of everything we started
	}, $class;

	my $testname = basename($0);
	$testname =~ s/\.[^.]+$//;
	$self->{base} = "$PostgreSQL::Test::Utils::tmp_check/t_${testname}_patroni";
	make_path($self->{base});
	$self->{etcd_port} = PostgreSQL::Test::Cluster::get_free_port();
	$self->{etcd_peer_port} = PostgreSQL::Test::Cluster::get_free_port();
	$self->{bindir} = _bindir();

	for my $m (@{ $self->{members} })
	{
		my $pg = PostgreSQL::Test::Cluster->new($m);
		$self->{pg}{$m} = $pg;
		$self->{rest_port}{$m} = PostgreSQL::Test::Cluster::get_free_port();
	}
	push @instances, $self;
	return $self;
}

# The bin directory of the PostgreSQL the TAP framework uses (PGXS puts it
# first on PATH).
sub _bindir
{
	my $dir = `pg_config --bindir`;
	die "pg_config --bindir failed" if $? != 0;
	chomp $dir;
	return $dir;
}

sub members { return @{ $_[0]->{members} }; }

# Set the YAML text of the bootstrap.dcs section (before the first member
# starts).
sub set_dcs { my ($self, $yaml) = @_; $self->{dcs} = $yaml; return; }

# Extra YAML lines for member $m's local "postgresql" section (for example
# pre_promote), without indentation; written at its next start_member().
sub set_postgresql_extra
{
	my ($self, $m, $yaml) = @_;
	$self->{postgresql_extra}{$m} = $yaml;
	return;
}

=pod

=head1 $pc->try_sql($m, $sql)

Runs SQL on member $m (database postgres); its output, or undef when the
member cannot be reached or the statement fails (members come and go).

=cut

sub try_sql
{
	my ($self, $m, $sql) = @_;
	my ($ret, $out, $err) = $self->{pg}{$m}->psql('postgres', $sql);
	return $ret == 0 ? $out : undef;
}

sub pg { my ($self, $m) = @_; return $self->{pg}{$m}; }
sub port { my ($self, $m) = @_; return $self->{pg}{$m}->port; }
sub rest_port { my ($self, $m) = @_; return $self->{rest_port}{$m}; }
sub bindir { return $_[0]->{bindir}; }
sub config_file { my ($self, $m) = @_; return "$self->{base}/$m.yml"; }

sub patroni_log
{
	my ($self, $m) = @_;
	return "$PostgreSQL::Test::Utils::log_path/"
	  . basename($self->{pg}{$m}->logfile, '.log')
	  . '_patroni.log';
}

=pod

=head1 $pc->conninfo(%params)

A libpq connection string naming every member, so that a client follows
the leader: with target_session_attrs=read-write (the default here) libpq
tries the hosts in turn and keeps the one that accepts writes.

=cut

sub conninfo
{
	my ($self, %params) = @_;
	my @m = $self->members;
	my %p = (
		host => join(',', ('127.0.0.1') x @m),
		port => join(',', map { $self->port($_) } @m),
		dbname => 'postgres',
		target_session_attrs => 'read-write',
		connect_timeout => 2,
		%params);
	return join(' ', map { "$_=$p{$_}" } sort keys %p);
}

# Indent every line of a YAML text block by n spaces.
sub _indent
{
	my ($text, $n) = @_;
	my $pad = ' ' x $n;
	return join('', map { "$pad$_\n" } split(/\n/, $text));
}

# The whole configuration file of a member.
sub _config_text
{
	my ($self, $m) = @_;
	my $pg = $self->{pg}{$m};
	my $port = $pg->port;
	my $rest = $self->{rest_port}{$m};
	my $user = getpwuid($<);
	my $logdir = $PostgreSQL::Test::Utils::log_path;
	my $logfile = basename($pg->logfile);
	my $dcs = _indent($self->{dcs}, 4);
	my $extra = _indent($self->{postgresql_extra}{$m} // '', 2);

	return <<"EOF";
scope: $self->{scope}
name: $m
restapi:
  listen: 127.0.0.1:$rest
  connect_address: 127.0.0.1:$rest
etcd3:
  hosts: 127.0.0.1:$self->{etcd_port}
bootstrap:
  dcs:
$dcs  initdb:
    - encoding: UTF8
    - no-sync
postgresql:
  listen: 127.0.0.1:$port
  connect_address: 127.0.0.1:$port
  data_dir: ${\ $pg->data_dir }
  bin_dir: $self->{bindir}
  pgpass: $self->{base}/$m.pgpass
  authentication:
    superuser:
      username: $user
    replication:
      username: replicator
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
  parameters:
    unix_socket_directories: '${\ $pg->host }'
    fsync: 'off'
    logging_collector: 'on'
    log_directory: '$logdir'
    log_filename: '$logfile'
    log_rotation_age: 0
    log_rotation_size: 0
    log_line_prefix: '%m [%p] %q%a '
$extra  basebackup:
    - checkpoint: fast
EOF
}

sub _write_config
{
	my ($self, $m) = @_;
	my $file = $self->config_file($m);
	open my $fh, '>', $file or die "could not write $file: $!";
	print $fh $self->_config_text($m);
	close $fh;
	return;
}

# Start a program in its own process group, stdout and stderr appended to
# $log.  Returns the pid.
sub _spawn
{
	my ($self, $key, $log, @cmd) = @_;
	my $pid = fork();
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		# the child must not run the END block (it would kill everything)
		setpgrp(0, 0);
		open STDIN, '<', '/dev/null';
		if (open(STDOUT, '>>', $log) && open(STDERR, '>&', \*STDOUT))
		{
			exec(@cmd) or print STDERR "could not run $cmd[0]: $!\n";
		}
		POSIX::_exit(127);
	}
	$self->{procs}{$key} = $pid;
	note "started $key (pid $pid): @cmd";
	return $pid;
}

# Signal a process group we started and wait for its leader to exit.
sub _stop_proc
{
	my ($self, $key, $signal) = @_;
	my $pid = delete $self->{procs}{$key};
	return unless $pid;
	kill $signal, -$pid;
	my $deadline = time() + 30;
	while (waitpid($pid, WNOHANG) == 0)
	{
		if (time() > $deadline)
		{
			kill 'KILL', -$pid;
			waitpid($pid, 0);
			last;
		}
		usleep(50_000);
	}
	return;
}

sub _http_get
{
	my ($port, $path) = @_;
	my $r = HTTP::Tiny->new(timeout => 2)->get("http://127.0.0.1:$port$path");
	return $r;
}

sub _log_tail
{
	my ($file, $lines) = @_;
	return '' unless -f $file;
	my @all = split /\n/, slurp_file($file);
	$lines //= 40;
	my $from = @all > $lines ? @all - $lines : 0;
	return join("\n", @all[ $from .. $#all ]);
}

sub _wait
{
	my ($code, $what, $secs, @logs) = @_;
	my $deadline = time() + ($secs // $WAIT_SECS);
	while (1)
	{
		return 1 if $code->();
		last if time() > $deadline;
		usleep(100_000);
	}
	diag("gave up waiting for $what");
	diag("--- end of $_:\n" . _log_tail($_)) for @logs;
	return 0;
}

=pod

=head1 $pc->start_etcd()

Starts a one-member etcd on loopback and waits until it answers.

=cut

sub start_etcd
{
	my ($self) = @_;
	my $log = "$PostgreSQL::Test::Utils::log_path/"
	  . basename($self->{base}) . '_etcd.log';
	my ($c, $p) = ($self->{etcd_port}, $self->{etcd_peer_port});
	$self->_spawn(
		'etcd', $log, 'etcd',
		'--name' => 'etcd1',
		'--data-dir' => "$self->{base}/etcd",
		'--listen-client-urls' => "http://127.0.0.1:$c",
		'--advertise-client-urls' => "http://127.0.0.1:$c",
		'--listen-peer-urls' => "http://127.0.0.1:$p",
		'--initial-advertise-peer-urls' => "http://127.0.0.1:$p",
		'--initial-cluster' => "etcd1=http://127.0.0.1:$p",
		'--initial-cluster-state' => 'new');
	_wait(
		sub {
			my $r = _http_get($c, '/health');
			return $r->{success} && $r->{content} =~ /"health":\s*"true"/;
		},
		'etcd to answer',
		30, $log)
	  or die 'etcd did not start';
	return;
}

=pod

=head1 $pc->start_member($m)

Writes the member's configuration and starts its Patroni (which
bootstraps the cluster, or clones the leader with pg_basebackup, or starts
the existing data directory).

=cut

sub start_member
{
	my ($self, $m) = @_;
	$self->_write_config($m);
	$self->_spawn("patroni_$m", $self->patroni_log($m),
		'patroni', $self->config_file($m));
	return;
}

=pod

=head1 $pc->stop_member($m)

Stops the member's Patroni the way a service manager does (SIGTERM), which
stops its PostgreSQL too.

=cut

sub stop_member
{
	my ($self, $m) = @_;
	$self->_stop_proc("patroni_$m", 'TERM');
	return;
}

=pod

=head1 $pc->cluster_state()

The members as Patroni's REST API (GET /cluster) reports them, asked of
the first member that answers: { name => { role, state, timeline, ... } },
or undef when no member answers.

=cut

sub cluster_state
{
	my ($self) = @_;
	for my $m ($self->members)
	{
		next unless $self->{procs}{"patroni_$m"};
		my $r = _http_get($self->{rest_port}{$m}, '/cluster');
		next unless $r->{success};
		my $data = eval { decode_json($r->{content}) } or next;
		return { map { $_->{name} => $_ } @{ $data->{members} // [] } };
	}
	return undef;
}

# The member Patroni calls leader, and whose PostgreSQL is a running
# primary; undef if none.
sub leader
{
	my ($self) = @_;
	my $state = $self->cluster_state or return undef;
	for my $m (sort keys %$state)
	{
		next unless $state->{$m}{role} eq 'leader';
		next unless $state->{$m}{state} eq 'running';
		my $rw = $self->try_sql($m, 'SELECT NOT pg_is_in_recovery()');
		return $m if defined $rw && $rw eq 't';
	}
	return undef;
}

=pod

=head1 $pc->wait_for_leader($m, $secs, $not)

Waits until Patroni reports $m (or, without $m, any member but $not) as
the running leader and its PostgreSQL accepts writes; returns the leader's
name, or undef (with the logs as diagnostics) on timeout.

=cut

sub wait_for_leader
{
	my ($self, $want, $secs, $not) = @_;
	my $leader;
	my @logs = map { $self->patroni_log($_) } $self->members;
	_wait(
		sub {
			$leader = eval { $self->leader };
			return 0 unless defined $leader;
			return $leader eq $want if defined $want;
			return !defined $not || $leader ne $not;
		},
		'leader ' . ($want // '(any)'),
		$secs, @logs)
	  or return undef;
	return $leader;
}

=pod

=head1 $pc->wait_for_streaming($m)

Waits until member $m runs as a replica that streams from the current
leader through its own physical slot: the leader has a walsender in state
"streaming" for application_name $m (Patroni sets it to the member name)
and the slot named after $m is active.

=cut

sub wait_for_streaming
{
	my ($self, $m, $secs) = @_;
	return _wait(
		sub {
			my $leader = eval { $self->leader } or return 0;
			return 0 if $leader eq $m;
			my $ok = $self->try_sql($leader,
				"SELECT EXISTS (SELECT FROM pg_stat_replication WHERE application_name = '$m' AND state = 'streaming')
				    AND EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = '$m' AND active)");
			return defined $ok && $ok eq 't';
		},
		"$m to stream from the leader",
		$secs,
		$self->patroni_log($m),
		$self->{pg}{$m}->logfile);
}

=pod

=head1 $pc->patronictl(@args)

Runs patronictl with the first member's configuration file; returns (exit
code, stdout, stderr); the exit code is -1 when it did not finish within
$WAIT_SECS seconds (it is then killed).

=cut

sub patronictl
{
	my ($self, @args) = @_;
	my ($stdout, $stderr);
	my $cfg = $self->config_file(($self->members)[0]);
	my $rc = eval {
		IPC::Run::run([ 'patronictl', '-c', $cfg, @args ],
			'<', \undef, '>', \$stdout, '2>', \$stderr,
			IPC::Run::timeout($WAIT_SECS));
		$? >> 8;
	} // -1;
	$stderr .= $@ if $@;
	note "patronictl @args: exit $rc\n$stdout$stderr";
	return ($rc, $stdout, $stderr);
}

=pod

=head1 $pc->postmaster_pid($m)

The pid in the member's postmaster.pid, or undef.

=cut

sub postmaster_pid
{
	my ($self, $m) = @_;
	my $file = $self->{pg}{$m}->data_dir . '/postmaster.pid';
	return undef unless -f $file;
	open my $fh, '<', $file or return undef;
	my $pid = <$fh>;
	close $fh;
	return undef unless defined $pid;
	chomp $pid;
	return $pid =~ /^\d+$/ ? $pid : undef;
}

=pod

=head1 $pc->log_offset($file) / $pc->log_since($file, $offset)

Size of a log file now; its text from that offset.

=cut

sub log_offset
{
	my ($self, $file) = @_;
	return -s $file // 0;
}

sub log_since
{
	my ($self, $file, $offset) = @_;
	return '' unless -f $file;
	my $text = slurp_file($file);
	return substr($text, $offset // 0);
}

=pod

=head1 $pc->wait_for_patroni_log($m, $regex, $offset, $count)

Waits until member $m's Patroni log, from $offset on, matches $regex
$count times (default 1).

=cut

sub wait_for_patroni_log
{
	my ($self, $m, $re, $offset, $count, $secs) = @_;
	$count //= 1;
	my $file = $self->patroni_log($m);
	return _wait(
		sub {
			my $text = $self->log_since($file, $offset);
			my $n = () = $text =~ /$re/g;
			return $n >= $count;
		},
		"$count x /$re/ in $m\'s Patroni log",
		$secs, $file);
}

=pod

=head1 $pc->start_bg($name, $log, @cmd) / $pc->stop_bg($name, $signal)

A background command in its own process group (a load generator, a
consumer), killed by cleanup() at the latest.

=cut

sub start_bg
{
	my ($self, $name, $log, @cmd) = @_;
	return $self->_spawn("bg_$name", $log, @cmd);
}

sub stop_bg
{
	my ($self, $name, $signal) = @_;
	$self->_stop_proc("bg_$name", $signal // 'TERM');
	return;
}

=pod

=head1 $pc->cleanup()

Kills everything this cluster started: background commands, every
Patroni (SIGKILL, so that none restarts its PostgreSQL), every PostgreSQL
left running (pg_ctl stop -m immediate), and etcd.  Safe to call twice.

=cut

sub cleanup
{
	my ($self) = @_;
	for my $key (grep { /^bg_/ } keys %{ $self->{procs} })
	{
		$self->_stop_proc($key, 'KILL');
	}
	for my $key (grep { /^patroni_/ } keys %{ $self->{procs} })
	{
		$self->_stop_proc($key, 'KILL');
	}
	for my $m ($self->members)
	{
		my $pg = $self->{pg}{$m};
		next unless -f $pg->data_dir . '/postmaster.pid';
		PostgreSQL::Test::Utils::system_log("$self->{bindir}/pg_ctl", '-D',
			$pg->data_dir, '-m', 'immediate', '-w', 'stop');
	}
	$self->_stop_proc('etcd', 'TERM');
	return;
}

# A test killed by a signal (a CI timeout, ^C) still runs the END block.
$SIG{$_} = sub { die "killed by SIG$_[0]\n" } for qw(INT TERM HUP);

END
{
	my $exit_code = $?;
	$_->cleanup for @instances;
	$? = $exit_code;
}

1;
