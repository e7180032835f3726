# FakePrimary: a fake PostgreSQL server on loopback for the hostile-peer
# tests (test/t/040_* .. 049_*).  It speaks enough of the v3 wire protocol
# for libpq (and so the standby's sync worker) to take it for a primary,
# and answers each statement as its current "personality" says: passed
# through to a real primary, or answered with something a broken or hostile
# peer could send.
#
# How it works:
#  - new() picks a free port and starts the server as a separate process
#    (this file run as a script), so the test process never forks;
#  - every client connection is served by its own forked child, which opens
#    its own session on the real primary ("upstream", over its Unix socket,
#    with the client's startup parameters, options included), answers the
#    client's startup itself (SSLRequest and GSSENCRequest get 'N';
#    AuthenticationOk; the upstream's ParameterStatus messages, or made-up
#    ones without an upstream; BackendKeyData; ReadyForQuery);
#  - a simple Query is split into its statements; each statement is
#    classified by its text (setup, identity, wait, slots, snapshot, other)
#    and answered by the action the personality gives that kind, then one
#    ReadyForQuery ends the whole Query, as a server does.  An ErrorResponse
#    ends the Query early, as a server does;
#  - the personality is a JSON file the test rewrites (set()); children read
#    it at every Query, so a change applies to live connections at once;
#  - every statement answered is appended as one line "kind action" to an
#    events file, which count() reads: how many long-polls were answered,
#    for instance.
#
# Actions (the value of a kind in the personality):
#   { do => 'pass' }                     send to the real primary, relay
#   { do => 'pass', rewrite => [RE, TO] } same, statement text rewritten
#   { do => 'pass', cache_ms => N }      the real answer, given again without
#                                        asking for N ms
#   { do => 'mutate', ops => [...] }     run it on the real primary, change
#                                        the rows (see apply_op), send them
#   { do => 'rows', columns => [[name, type oid], ...], rows => [[...]] }
#   { do => 'error', sqlstate => ..., message => ... }
#   { do => 'close', rows => N }         send the RowDescription and N rows
#                                        of the real answer, then hang up
# Messages of the extended protocol (Parse, Bind, Execute, ..., Sync) are
# passed through to the real primary as they are.
#
# A personality may have hold => { kind => KIND, until_file => PATH }:
# statements of that kind (also when they come by the extended protocol,
# classified by the text of their Parse) wait until PATH exists before they
# are answered; the events file says "KIND hold", then "KIND released".  A
# primary that hangs in the middle of a cycle, for as long as a test likes.
#
# Any action may carry notices => N, notice => TEXT: that many
# NoticeResponses are sent before the answer.  A personality may also have
# startup_error => TEXT: every connection gets a FATAL ErrorResponse with
# that text instead of a session.
package FakePrimary;

use strict;
use warnings;

use Fcntl qw(O_WRONLY O_APPEND O_CREAT);
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use JSON::PP;
use POSIX ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(usleep time);

# ---------------------------------------------------------------------
# Test side
# ---------------------------------------------------------------------

my @running;

sub new
{
	my ($class, %opts) = @_;
	require PostgreSQL::Test::Cluster;
	require PostgreSQL::Test::Utils;

	my $self = bless {}, $class;
	$self->{upstream} = $opts{upstream};
	$self->{dir} = PostgreSQL::Test::Utils::tempdir('fake_primary');
	$self->{port} = PostgreSQL::Test::Cluster::get_free_port();
	$self->set(%{ $opts{personality} // {} });

	my @args = ('--port', $self->{port}, '--dir', $self->{dir});
	if (defined $self->{upstream})
	{
		push @args, '--upstream-host', $self->{upstream}->host,
		  '--upstream-port', $self->{upstream}->port;
	}
	my $pid = fork();
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		exec($^X, $INC{'FakePrimary.pm'}, @args)
		  or POSIX::_exit(1);
	}
	$self->{pid} = $pid;
	push @running, $self;

	my $deadline = time() + 30;
	until (-e "$self->{dir}/ready")
	{
		die "fake primary did not start" if time() > $deadline;
		usleep(20_000);
	}
	return $self;
}

sub port { return $_[0]->{port}; }

# A connection string for the fake; the user is libpq's default, which the
# fake passes on to the real primary.
sub connstr
{
	my ($self, $dbname) = @_;
	$dbname //= 'postgres';
	return "host=127.0.0.1 port=$self->{port} dbname=$dbname";
}

# Replace the personality: kind => action, see the header.
sub set
{
	my ($self, %personality) = @_;
	my $file = "$self->{dir}/personality.json";
	open(my $fh, '>', "$file.tmp") or die "could not write $file.tmp: $!";
	print $fh JSON::PP->new->canonical->encode(\%personality);
	close($fh) or die "could not close $file.tmp: $!";
	rename("$file.tmp", $file) or die "could not rename $file.tmp: $!";
	return;
}

# How many statements of the kind (all if undef) were answered so far.
sub count
{
	my ($self, $kind) = @_;
	open(my $fh, '<', "$self->{dir}/events") or return 0;
	my $n = 0;
	while (my $line = <$fh>)
	{
		$n++ if !defined $kind || $line =~ /^\Q$kind\E /;
	}
	close($fh);
	return $n;
}

sub stop
{
	my ($self) = @_;
	return unless $self->{pid};
	kill 'TERM', $self->{pid};
	waitpid($self->{pid}, 0);
	$self->{pid} = undef;
	return;
}

END
{
	$_->stop foreach @running;
}

# ---------------------------------------------------------------------
# Personalities the tests share
# ---------------------------------------------------------------------

# The worker's long-poll, answered at once: the statement is passed through
# with its timeout rewritten to 0, and for 200 ms the same answers (long-poll
# and slots) are given again without asking the primary, so that the fake
# answers as fast as it can.
sub immediate_long_poll
{
	return (
		wait => {
			do => 'pass',
			rewrite => [ ',\s*\d+\s*\)\s*$', ', 0)' ],
			cache_ms => 200
		},
		slots => { do => 'pass', cache_ms => 200 });
}

# Change column values of every row of the real failover_slots() answer
# (or of the rows of one slot).
sub slots_set
{
	my (%values) = @_;
	my $slot = delete $values{_slot};
	return (
		slots => {
			do => 'mutate',
			ops => [
				map { { op => 'set', column => $_, value => $values{$_}, slot => $slot } }
				  sort keys %values
			]
		});
}

# ---------------------------------------------------------------------
# Server side (this file run as a script)
# ---------------------------------------------------------------------

my %opt;
my $events_fh;
my $server_pid;

sub serve
{
	my (@argv) = @_;
	while (@argv)
	{
		my $k = shift @argv;
		$k =~ s/^--//;
		$opt{$k} = shift @argv;
	}
	my $listener = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => $opt{port},
		Listen => 64,
		ReuseAddr => 1,
		Proto => 'tcp') or die "could not listen on port $opt{port}: $!";
	my $parent = getppid();
	$server_pid = $$;
	my %kids;
	$SIG{TERM} = sub { kill 'TERM', keys %kids; POSIX::_exit(0); };
	$SIG{CHLD} = sub {
		while ((my $k = waitpid(-1, POSIX::WNOHANG())) > 0) { delete $kids{$k}; }
	};
	open(my $ready, '>', "$opt{dir}/ready") or die "could not write ready: $!";
	print $ready "$$\n";
	close($ready);

	my $sel = IO::Select->new($listener);
	while (1)
	{
		# the test process is gone: so are we
		if (getppid() != $parent)
		{
			kill 'TERM', keys %kids;
			POSIX::_exit(0);
		}
		next unless $sel->can_read(0.5);
		my $client = $listener->accept or next;
		my $pid = fork();
		if (!defined $pid)
		{
			close($client);
			next;
		}
		if ($pid == 0)
		{
			$SIG{TERM} = 'DEFAULT';
			$SIG{CHLD} = 'DEFAULT';
			close($listener);
			# answers go out in several writes: no Nagle delay between them
			setsockopt($client, IPPROTO_TCP, TCP_NODELAY, 1);
			eval { serve_client($client); };
			POSIX::_exit(0);
		}
		$kids{$pid} = 1;
		close($client);
	}
}

sub event
{
	my ($line) = @_;
	if (!$events_fh)
	{
		sysopen($events_fh, "$opt{dir}/events", O_WRONLY | O_APPEND | O_CREAT)
		  or die "could not open events: $!";
	}
	syswrite($events_fh, sprintf("%s %d %.3f\n", $line, $$, time()));
	return;
}

sub personality
{
	my $file = "$opt{dir}/personality.json";
	open(my $fh, '<', $file) or return {};
	local $/;
	my $json = <$fh>;
	close($fh);
	return JSON::PP->new->decode($json);
}

# --- reading and writing messages ---

# Read exactly $n bytes; undef on end of file.  Gives up when the server
# process is gone.
sub read_exact
{
	my ($sock, $n) = @_;
	my $buf = '';
	my $sel = IO::Select->new($sock);
	while (length($buf) < $n)
	{
		if (!$sel->can_read(1))
		{
			POSIX::_exit(0) if getppid() != $server_pid;
			next;
		}
		my $got = sysread($sock, $buf, $n - length($buf), length($buf));
		return undef if !$got;
	}
	return $buf;
}

sub write_all
{
	my ($sock, $data) = @_;
	while (length($data) > 0)
	{
		my $n = syswrite($sock, $data);
		die "write failed: $!" unless defined $n;
		substr($data, 0, $n) = '';
	}
	return;
}

# One typed message: (type, body) or () at end of file.
sub read_message
{
	my ($sock) = @_;
	my $head = read_exact($sock, 5);
	return () unless defined $head;
	my ($type, $len) = unpack('a N', $head);
	die "bad message length $len" if $len < 4 || $len > 0x3fffffff;
	my $body = $len > 4 ? read_exact($sock, $len - 4) : '';
	return () unless defined $body;
	return ($type, $body);
}

sub msg
{
	my ($type, $body) = @_;
	return $type . pack('N', length($body) + 4) . $body;
}

sub row_description
{
	my (@columns) = @_;
	my $body = pack('n', scalar @columns);
	foreach my $c (@columns)
	{
		$body .= pack('Z* N n N n N n', $c->[0], 0, 0, $c->[1], 65535, 0xffffffff, 0);
	}
	return msg('T', $body);
}

sub data_row
{
	my (@values) = @_;
	my $body = pack('n', scalar @values);
	foreach my $v (@values)
	{
		if (defined $v)
		{
			my $bytes = $v;
			utf8::encode($bytes) if utf8::is_utf8($bytes);
			$body .= pack('N', length($bytes)) . $bytes;
		}
		else
		{
			$body .= pack('N', 0xffffffff);
		}
	}
	return msg('D', $body);
}

sub error_message
{
	my ($type, $severity, $sqlstate, $text) = @_;
	utf8::encode($text) if utf8::is_utf8($text);
	return msg($type,
		pack('a Z* a Z* a Z* a Z* x',
			'S', $severity, 'V', $severity, 'C', $sqlstate, 'M', $text));
}

sub parse_row_description
{
	my ($body) = @_;
	my $n = unpack('n', $body);
	my $pos = 2;
	my @columns;
	for (1 .. $n)
	{
		my $end = index($body, "\0", $pos);
		my $name = substr($body, $pos, $end - $pos);
		my (undef, undef, $type) = unpack('N n N', substr($body, $end + 1, 10));
		push @columns, [ $name, $type ];
		$pos = $end + 1 + 18;
	}
	return \@columns;
}

sub parse_data_row
{
	my ($body) = @_;
	my $n = unpack('n', $body);
	my $pos = 2;
	my @values;
	for (1 .. $n)
	{
		my $len = unpack('N', substr($body, $pos, 4));
		$pos += 4;
		if ($len == 0xffffffff)
		{
			push @values, undef;
			next;
		}
		push @values, substr($body, $pos, $len);
		$pos += $len;
	}
	return \@values;
}

# --- the session ---

sub startup_packet
{
	my ($params) = @_;
	my $body = pack('N', 196608);
	$body .= pack('Z* Z*', $_, $params->{$_}) foreach sort keys %$params;
	$body .= "\0";
	return pack('N', length($body) + 4) . $body;
}

# Open our own session on the real primary; returns the socket and its
# ParameterStatus messages, or dies with the ErrorResponse to relay.
sub open_upstream
{
	my ($params) = @_;
	my $sock;
	if ($opt{'upstream-host'} =~ m{^/})
	{
		$sock = IO::Socket::UNIX->new(
			Type => SOCK_STREAM(),
			Peer => "$opt{'upstream-host'}/.s.PGSQL.$opt{'upstream-port'}");
	}
	else
	{
		$sock = IO::Socket::INET->new(
			PeerAddr => $opt{'upstream-host'},
			PeerPort => $opt{'upstream-port'},
			Proto => 'tcp');
	}
	die { message => error_message('E', 'FATAL', '08006', "fake primary: upstream unreachable: $!") }
	  unless $sock;
	write_all($sock, startup_packet($params));
	my @status;
	while (1)
	{
		my ($type, $body) = read_message($sock);
		die { message => error_message('E', 'FATAL', '08006', 'fake primary: upstream hung up') }
		  unless defined $type;
		die { message => msg($type, $body) } if $type eq 'E';
		push @status, msg($type, $body) if $type eq 'S';
		last if $type eq 'Z';
		die { message => error_message('E', 'FATAL', '28000', 'fake primary: upstream wants a password') }
		  if $type eq 'R' && unpack('N', $body) != 0;
	}
	return ($sock, \@status);
}

sub serve_client
{
	my ($client) = @_;
	my %params;

	# SSLRequest / GSSENCRequest, then the StartupMessage
	while (1)
	{
		my $head = read_exact($client, 4);
		return unless defined $head;
		my $len = unpack('N', $head);
		return if $len < 8 || $len > 10000;
		my $body = read_exact($client, $len - 4);
		return unless defined $body;
		my $code = unpack('N', $body);
		if ($code == 80877103 || $code == 80877104)
		{
			write_all($client, 'N');
			next;
		}
		return unless $code == 196608;
		my @kv = split(/\0/, substr($body, 4));
		while (@kv >= 2)
		{
			my $k = shift @kv;
			last if $k eq '';
			$params{$k} = shift @kv;
		}
		last;
	}

	my $p = personality();
	if (defined $p->{startup_error})
	{
		event('startup error');
		write_all($client, error_message('E', 'FATAL', '28000', $p->{startup_error}));
		return;
	}

	my ($upstream, $status) = (undef, []);
	if (defined $opt{'upstream-host'})
	{
		eval { ($upstream, $status) = open_upstream(\%params); };
		if (ref $@)
		{
			write_all($client, $@->{message});
			return;
		}
		die $@ if $@;
	}
	else
	{
		$status = [
			map { msg('S', pack('Z* Z*', @$_)) } (
				[ 'server_version', '15.20' ],
				[ 'server_encoding', 'UTF8' ],
				[ 'client_encoding', 'UTF8' ],
				[ 'standard_conforming_strings', 'on' ],
				[ 'integer_datetimes', 'on' ],
				[ 'DateStyle', 'ISO, MDY' ])
		];
	}
	event('connect pass');
	my $parsed = '';
	write_all($client,
		msg('R', pack('N', 0)) . join('', @$status)
		  . msg('K', pack('N N', $$, 12345)) . msg('Z', 'I'));

	while (1)
	{
		my ($type, $body) = read_message($client);
		last if !defined $type || $type eq 'X';
		if ($type eq 'Q')
		{
			$body =~ s/\0$//;
			last unless answer_query($client, $upstream, $body);
		}
		elsif ($upstream && $type =~ /^[PBDECHS]$/)
		{
			# the extended protocol: passed through as it is, answered at
			# each Sync
			$parsed = (split(/\0/, $body, 3))[1] // '' if $type eq 'P';
			if ($type eq 'S')
			{
				hold_if_asked(classify($parsed));
				$parsed = '';
			}
			write_all($upstream, msg($type, $body));
			relay_until_ready($client, $upstream) if $type eq 'S';
		}
		else
		{
			write_all($client,
				error_message('E', 'ERROR', '0A000', "fake primary: message type \"$type\" not supported")
				  . msg('Z', 'I'));
		}
	}
	write_all($upstream, msg('X', '')) if $upstream;
	return;
}

# Wait while the personality holds statements of this kind (see above).
sub hold_if_asked
{
	my ($kind) = @_;
	my $hold = personality()->{hold};
	return unless $hold && $hold->{kind} eq $kind;
	event("$kind hold");
	usleep(20_000) until -e $hold->{until_file} || getppid() == 1;
	event("$kind released");
	return;
}

# Relay the real primary's messages up to and including ReadyForQuery.
sub relay_until_ready
{
	my ($client, $upstream) = @_;
	event('extended pass');
	while (1)
	{
		my ($type, $body) = read_message($upstream);
		die "upstream hung up" unless defined $type;
		write_all($client, msg($type, $body));
		last if $type eq 'Z';
	}
	return;
}

# Statements of a simple Query, split at semicolons outside quotes.
sub split_statements
{
	my ($sql) = @_;
	my @out;
	my $cur = '';
	my $quote = '';
	foreach my $ch (split //, $sql)
	{
		if ($quote ne '')
		{
			$quote = '' if $ch eq $quote;
		}
		elsif ($ch eq "'" || $ch eq '"')
		{
			$quote = $ch;
		}
		elsif ($ch eq ';')
		{
			push @out, $cur;
			$cur = '';
			next;
		}
		$cur .= $ch;
	}
	push @out, $cur;
	return grep { /\S/ } @out;
}

sub classify
{
	my ($stmt) = @_;
	return 'setup' if $stmt =~ /set_config\s*\(\s*'search_path'/;
	return 'identity' if $stmt =~ /pg_control_system/;
	return 'wait' if $stmt =~ /wait_for_failover_slot_change/;
	return 'snapshot' if $stmt =~ /failover_slot_snapshot/;
	return 'slots' if $stmt =~ /failover_slot(?:s|_changes)\s*\(/;
	return 'other';
}

# Answer one Query; false once the connection is closed.
sub answer_query
{
	my ($client, $upstream, $sql) = @_;
	my $p = personality();
	my @stmts = split_statements($sql);
	if (!@stmts)
	{
		write_all($client, msg('I', '') . msg('Z', 'I'));
		return 1;
	}
	foreach my $stmt (@stmts)
	{
		my $kind = classify($stmt);
		my $action = $p->{$kind} // $p->{default} // { do => 'pass' };
		hold_if_asked($kind);
		event("$kind $action->{do}");
		if ($action->{notices})
		{
			my $notice = error_message('N', 'NOTICE', '00000', $action->{notice} // 'fake notice');
			write_all($client, $notice x $action->{notices});
		}
		my $outcome = perform($client, $upstream, $stmt, $action);
		return 0 if $outcome eq 'closed';
		last if $outcome eq 'error';
	}
	write_all($client, msg('Z', 'I'));
	return 1;
}

# Run a statement on the real primary: its messages up to ReadyForQuery.
sub upstream_run
{
	my ($upstream, $stmt) = @_;
	die "fake primary has no upstream" unless $upstream;
	write_all($upstream, msg('Q', "$stmt\0"));
	my @messages;
	while (1)
	{
		my ($type, $body) = read_message($upstream);
		die "upstream hung up" unless defined $type;
		last if $type eq 'Z';
		push @messages, [ $type, $body ];
	}
	return @messages;
}

# The real primary's answer; with cache_ms, the same answer again for that
# long (per connection and statement kind), without asking: a peer that
# answers as fast as it can.
my %answer_cache;

sub upstream_cached
{
	my ($upstream, $stmt, $action) = @_;
	my $kind = classify($stmt);
	my $cached = $answer_cache{$kind};
	return @{ $cached->{messages} }
	  if $action->{cache_ms}
	  && $cached
	  && (time() - $cached->{at}) * 1000 < $action->{cache_ms};
	my @messages = upstream_run($upstream, $stmt);
	$answer_cache{$kind} = { at => time(), messages => \@messages };
	return @messages;
}

sub perform
{
	my ($client, $upstream, $stmt, $action) = @_;
	my $do = $action->{do};

	if ($do eq 'error')
	{
		write_all($client,
			error_message('E', 'ERROR', $action->{sqlstate} // 'XX000', $action->{message}));
		return 'error';
	}
	if ($do eq 'rows')
	{
		send_rows($client, $action->{columns}, $action->{rows});
		return 'ok';
	}

	if ($do eq 'pass' && $action->{rewrite})
	{
		my ($re, $to) = @{ $action->{rewrite} };
		$stmt =~ s/$re/$to/;
	}
	my @messages = upstream_cached($upstream, $stmt, $action);
	my $failed = grep { $_->[0] eq 'E' } @messages;

	if ($do eq 'pass' || $failed)
	{
		write_all($client, join('', map { msg(@$_) } @messages));
		return $failed ? 'error' : 'ok';
	}

	my ($columns, @rows);
	foreach my $m (@messages)
	{
		$columns = parse_row_description($m->[1]) if $m->[0] eq 'T';
		push @rows, parse_data_row($m->[1]) if $m->[0] eq 'D';
	}
	$columns //= [];

	if ($do eq 'close')
	{
		my $n = $action->{rows} // 0;
		write_all($client,
			row_description(@$columns)
			  . join('', map { data_row(@$_) } @rows[ 0 .. $n - 1 ]));
		close($client);
		return 'closed';
	}
	if ($do eq 'mutate')
	{
		apply_op($_, $columns, \@rows) foreach @{ $action->{ops} };
		send_rows($client, $columns, \@rows);
		return 'ok';
	}
	die "unknown action $do";
}

sub send_rows
{
	my ($client, $columns, $rows) = @_;
	my $out = row_description(@$columns);
	$out .= data_row(@$_) foreach @$rows;
	$out .= msg('C', 'SELECT ' . scalar(@$rows) . "\0");
	write_all($client, $out);
	return;
}

sub column_index
{
	my ($columns, $name) = @_;
	for my $i (0 .. $#$columns)
	{
		return $i if $columns->[$i][0] eq $name;
	}
	die "no column $name";
}

# One change to a real answer:
#   { op => 'no_columns' }              rows of zero columns
#   { op => 'keep_columns', n => N }    only the first N columns
#   { op => 'set', column => C, value => V [, slot => S] }
#                                       V (undef: NULL) in column C of every
#                                       row, or of slot S's row
#   { op => 'retype', column => C, type => OID }
#   { op => 'all_null' }                every value NULL
#   { op => 'add_rows', count => N, name => FORMAT }
#                                       N copies of the first row, named
#                                       sprintf(FORMAT, i)
sub apply_op
{
	my ($op, $columns, $rows) = @_;
	my $kind = $op->{op};
	if ($kind eq 'no_columns')
	{
		@$columns = ();
		$_ = [] foreach @$rows;
	}
	elsif ($kind eq 'keep_columns')
	{
		splice(@$columns, $op->{n});
		splice(@$_, $op->{n}) foreach @$rows;
	}
	elsif ($kind eq 'set')
	{
		my $i = column_index($columns, $op->{column});
		foreach my $r (@$rows)
		{
			next if defined $op->{slot} && $r->[0] ne $op->{slot};
			$r->[$i] = $op->{value};
		}
	}
	elsif ($kind eq 'retype')
	{
		$columns->[ column_index($columns, $op->{column}) ][1] = $op->{type};
	}
	elsif ($kind eq 'all_null')
	{
		$_ = [ map { undef } @$_ ] foreach @$rows;
	}
	elsif ($kind eq 'add_rows')
	{
		die 'no row to copy' unless @$rows;
		my $first = $rows->[0];
		foreach my $i (1 .. $op->{count})
		{
			my @copy = @$first;
			$copy[0] = sprintf($op->{name}, $i);
			push @$rows, \@copy;
		}
	}
	else
	{
		die "unknown op $kind";
	}
	return;
}

serve(@ARGV) unless caller;

1;
