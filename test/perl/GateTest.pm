# Helpers for the tests of pg_slotsync.synchronized_standby_slots (the
# gate, test/t/027_* .. 039_*): streaming a slot with pg_recvlogical,
# measuring a process's CPU use, placing a physical slot at a page start.
package GateTest;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(
  set_gate
  start_recvlogical
  stop_recvlogical
  wait_for_file_match
  cpu_ticks
  cpu_share
  cpu_shares
  pid_alive
  child_pids
  wait_for_pid_gone
  reserve_slot_at_page_start
);

# Set pg_slotsync.synchronized_standby_slots on a node and wait until its
# backends see the new value.
sub set_gate
{
	my ($node, $value) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET pg_slotsync.synchronized_standby_slots = '$value'");
	$node->reload;
	$node->poll_query_until('postgres',
		"SELECT current_setting('pg_slotsync.synchronized_standby_slots') = '$value'"
	) or die "setting \"$value\" did not apply";
	return;
}

# Stream a logical slot with pg_recvlogical (test_decoding options) into a
# file.  Returns a handle for stop_recvlogical; $h->{file} is the output.
sub start_recvlogical
{
	my ($node, $slot, %opts) = @_;
	my $file = $opts{file}
	  // PostgreSQL::Test::Utils::tempdir() . "/recvlogical_$slot.out";
	my $h = { file => $file, out => '', err => '' };
	my @cmd = (
		'pg_recvlogical', '-d', $node->connstr('postgres'),
		'-S', $slot, '--start', '-f', $file, '-F', '1', '-s', '1',
		'--no-loop', '-o', 'include-xids=0', '-o', 'skip-empty-xacts=1');
	push @cmd, @{ $opts{extra} } if $opts{extra};
	$h->{run} = IPC::Run::start(\@cmd, '>', \$h->{out}, '2>', \$h->{err});
	return $h;
}

# Stop it (SIGINT makes it flush and exit); returns its stderr.
sub stop_recvlogical
{
	my ($h) = @_;
	if ($h->{run}->pumpable)
	{
		$h->{run}->signal('INT');
	}
	$h->{run}->finish;
	return $h->{err};
}

# Wait until a file's contents match a pattern; returns true if they do.
sub wait_for_file_match
{
	my ($file, $re, $secs) = @_;
	my $deadline = time() + ($secs // $PostgreSQL::Test::Utils::timeout_default);
	while (time() < $deadline)
	{
		return 1 if -f $file && slurp_file($file) =~ $re;
		usleep(50_000);
	}
	return 0;
}

# CPU time (user + system, in clock ticks) a process has used; undef once
# it is gone.
sub cpu_ticks
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/stat") or return undef;
	my $line = <$fh>;
	close $fh;
	return undef unless defined $line;
	# the command name may hold spaces: the fields follow its ")"
	$line =~ s/^.*\)\s+//s;
	my @f = split /\s+/, $line;
	return $f[11] + $f[12];
}

# Share of one core a process used over about $secs seconds (0 .. 1); a
# process spinning uses about 1.  This is a measurement window, not a wait
# for something to happen.
sub cpu_share
{
	my ($pid, $secs) = @_;
	$secs //= 2;
	my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK());
	my $t0 = time();
	my $c0 = cpu_ticks($pid);
	die "process $pid is gone" unless defined $c0;
	usleep($secs * 1_000_000);
	my $c1 = cpu_ticks($pid);
	my $t1 = time();
	die "process $pid is gone" unless defined $c1;
	return ($c1 - $c0) / $hz / ($t1 - $t0);
}

# Same for several processes over one window; returns the shares in order.
sub cpu_shares
{
	my ($pids, $secs) = @_;
	$secs //= 2;
	my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK());
	my $t0 = time();
	my @c0 = map { cpu_ticks($_) // die "process $_ is gone" } @$pids;
	usleep($secs * 1_000_000);
	my @c1 = map { cpu_ticks($_) // die "process $_ is gone" } @$pids;
	my $t1 = time();
	return map { ($c1[$_] - $c0[$_]) / $hz / ($t1 - $t0) } 0 .. $#c0;
}

sub pid_alive
{
	my ($pid) = @_;
	return kill(0, $pid) ? 1 : 0;
}

# The processes whose parent is $ppid.
sub child_pids
{
	my ($ppid) = @_;
	my @pids;
	opendir(my $dh, '/proc') or die "could not open /proc: $!";
	foreach my $pid (grep { /^\d+$/ } readdir $dh)
	{
		open(my $fh, '<', "/proc/$pid/stat") or next;
		my $line = <$fh>;
		close $fh;
		next unless defined $line;
		$line =~ s/^.*\)\s+//s;
		my @f = split /\s+/, $line;
		push @pids, $pid if $f[1] == $ppid;
	}
	closedir $dh;
	return @pids;
}

# Wait until none of the given processes is alive; returns the ones still
# alive after the framework's timeout.
sub wait_for_pid_gone
{
	my @pids = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		@pids = grep { pid_alive($_) } @pids;
		return () unless @pids;
		usleep(50_000);
	}
	return grep { pid_alive($_) } @pids;
}

# The page offset of the current WAL insert position.
sub insert_offset
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT ((pg_current_wal_insert_lsn() - '0/0'::pg_lsn) % 8192)::int");
}

# Emit a non-transactional logical message (prefix $prefix) whose WAL
# record ends exactly at the end of the current page, so that the next
# record starts right after the next page's short header.  Returns false if
# the insert position did not end up there (other WAL got in between).
sub pad_to_page_end
{
	my ($node, $prefix) = @_;
	my $off = insert_offset($node);
	return 1 if $off == 24;

	my $room = 8192 - $off;
	if ($room < 64)
	{
		# too little room for a message: move on to the next page first
		$node->safe_psql('postgres',
			"SELECT pg_logical_emit_message(false, 'filler', repeat('f', 200))");
		$off = insert_offset($node);
		$room = 8192 - $off;
	}

	# A record is the 24-byte header, the data length (2 bytes for data up
	# to 255 bytes, 5 beyond), the message's 24-byte header, the prefix
	# with its terminator, and the content; records are 8-byte aligned and
	# $room is a multiple of 8.
	my $overhead = 24 + 24 + length($prefix) + 1;
	my $len = $room - $overhead - 2;
	$len = $room - $overhead - 5 if $len + 24 + length($prefix) + 1 > 255;
	$node->safe_psql('postgres',
		"SELECT pg_logical_emit_message(false, '$prefix', repeat('p', $len))");
	return insert_offset($node) == 24;
}

# Create a physical slot with immediately_reserve such that its restart_lsn
# is a page start plus the short page header (LSN % 8192 = 24): pad WAL to
# a page end, CHECKPOINT (its redo pointer is then right after the page
# header), create the slot.  Retries if other WAL got in between.  Returns
# the slot's restart_lsn and the prefix of the message that filled the page
# ("$prefix_N"); dies if it never worked.
sub reserve_slot_at_page_start
{
	my ($node, $slot, $prefix) = @_;
	for my $attempt (1 .. 20)
	{
		my $used = "${prefix}_$attempt";
		next unless pad_to_page_end($node, $used);
		$node->safe_psql('postgres', 'CHECKPOINT');
		$node->safe_psql('postgres',
			"SELECT pg_create_physical_replication_slot('$slot', true)");
		my ($lsn, $off) = split /\|/, $node->safe_psql('postgres',
			"SELECT restart_lsn, ((restart_lsn - '0/0'::pg_lsn) % 8192)::int FROM pg_replication_slots WHERE slot_name = '$slot'"
		);
		return ($lsn, $used) if $off == 24;
		note("attempt $attempt: slot $slot at $lsn, not at a page start + 24");
		$node->safe_psql('postgres',
			"SELECT pg_drop_replication_slot('$slot')");
	}
	die "could not place slot $slot at a page start";
}

1;
