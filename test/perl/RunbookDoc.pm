# Runs the code blocks of a Markdown document (docs/production.md,
# docs/failover-runbook.md) as a DBA following it would, so that a change
# of the document that breaks the procedure breaks the test.
#
# The markup (described at the top of both documents): an HTML comment just
# before a fenced code block makes it a step,
#
#   <!-- run: NODE, KIND[, OPTION] -->
#
#   NODE    the role the block runs on, as the document names it (primary,
#           candidate, standby, subscriber, consumer, every); the test maps
#           roles to servers
#   KIND    sql          psql as superuser, database postgres, one statement
#                        after the other (as pasted into psql)
#           sql in DB    the same in database DB
#           shell        bash -e, as the operating system user, with the
#                        PostgreSQL binaries in PATH
#           conf, hba    appended to postgresql.conf / pg_hba.conf of the
#                        role's servers (every: all of them)
#           pgpass       written to the password file (PGPASSFILE)
#   OPTION  until no rows   repeat until the output is empty
#           until TEXT      repeat until the output is TEXT (or the value
#                           of a placeholder <name>)
#           prints <name>   its output becomes the value of <name>
#
# The block's first line must be a comment naming the same role ("-- on the
# candidate", "# on the primary's machine", "# on every node"), naming the
# database if not postgres, and saying "repeat until" when it is repeated:
# humans do not see the HTML comment, so it may not say something else.
#
# Placeholders <name> in a block are replaced by the values the test
# gives; one it does not know fails the step.
package RunbookDoc;

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

# Parse a document: its code blocks, in order, each
# { file, line, step (the number of its section heading, if any), marker
#   (the raw comment text or undef), lang, text, first (its first line),
#   role, kind, db, until, prints }.
sub parse
{
	my ($path) = @_;
	open my $fh, '<', $path or die "could not open $path: $!";
	my @lines = <$fh>;
	close $fh;
	chomp @lines;

	my (@blocks, $marker, $marker_line, $step);
	my $i = 0;
	while ($i < @lines)
	{
		my $line = $lines[$i];
		# numbered steps: "## 4. Build the standby", "### 9. The old ..."
		if ($line =~ /^#+\s+(\d+)\.\s/)
		{
			$step = $1;
		}
		elsif ($line =~ /^#+\s/)
		{
			undef $step;
		}
		if ($line =~ /^<!--\s*run:(.*?)-->\s*$/)
		{
			die "$path:" . ($i + 1) . ": two run markers in a row\n"
			  if defined $marker;
			$marker = $1;
			$marker_line = $i + 1;
			$i++;
			next;
		}
		if ($line =~ /^```(\S*)\s*$/)
		{
			my $lang = $1;
			my $start = $i + 1;
			my @text;
			$i++;
			while ($i < @lines && $lines[$i] !~ /^```\s*$/)
			{
				push @text, $lines[$i];
				$i++;
			}
			die "$path:$start: code block not closed\n" if $i >= @lines;
			my $block = {
				file => $path,
				line => $start,
				lang => $lang,
				text => join("\n", @text) . "\n",
				first => $text[0] // '',
				step => $step,
			};
			if (defined $marker)
			{
				parse_marker($block, $marker, "$path:$marker_line");
				undef $marker;
			}
			push @blocks, $block;
			$i++;
			next;
		}
		die "$path:$marker_line: a run marker must be followed by a code block\n"
		  if defined $marker && $line !~ /^\s*$/;
		$i++;
	}
	die "$path:$marker_line: a run marker at the end of the file\n"
	  if defined $marker;
	return \@blocks;
}

sub parse_marker
{
	my ($block, $text, $where) = @_;
	my @parts = map { s/^\s+|\s+$//gr } split /,/, $text;
	die "$where: run marker needs a role and a kind\n" if @parts < 2;
	my ($role, $kind, @options) = @parts;
	die "$where: bad role \"$role\"\n" unless $role =~ /^[a-z]+$/;
	$block->{marker} = $text;
	$block->{role} = $role;
	if ($kind =~ /^sql(?: in ([a-z_][a-z0-9_]*))?$/)
	{
		$block->{kind} = 'sql';
		$block->{db} = $1 // 'postgres';
	}
	elsif ($kind =~ /^(shell|conf|hba|pgpass)$/)
	{
		$block->{kind} = $kind;
	}
	else
	{
		die "$where: unknown kind \"$kind\"\n";
	}
	foreach my $opt (@options)
	{
		if ($opt =~ /^until (.+)$/)
		{
			$block->{until} = $1;
		}
		elsif ($opt =~ /^prints <([a-z][a-z0-9-]*)>$/)
		{
			$block->{prints} = $1;
		}
		else
		{
			die "$where: unknown option \"$opt\"\n";
		}
	}
	die "$where: only sql and shell blocks can repeat or print\n"
	  if (defined $block->{until} || defined $block->{prints})
	  && $block->{kind} ne 'sql'
	  && $block->{kind} ne 'shell';
	return;
}

# What a human sees must say what the marker says.  Returns a list of
# complaints.
sub check_block
{
	my ($block) = @_;
	my @bad;
	my $where = "$block->{file}:$block->{line}";
	my $first = $block->{first};
	my $comment = $block->{kind} eq 'sql' ? '--' : '#';
	my $role = $block->{role};
	push @bad,
	  "$where: the first line should be \"$comment on the $role...\", not \"$first\""
	  unless $first =~ /^\Q$comment\E on (?:the )?\Q$role\E\b/
	  || ($role eq 'every' && $first =~ /^\Q$comment\E on every node\b/);
	push @bad, "$where: the first line should name database $block->{db}"
	  if $block->{kind} eq 'sql'
	  && $block->{db} ne 'postgres'
	  && $first !~ /\bdatabase \Q$block->{db}\E\b/;
	push @bad, "$where: the first line should say \"repeat until\""
	  if defined $block->{until} && $first !~ /repeat until/;
	return @bad;
}

# Replace the placeholders of a text; dies on one the test does not know.
sub substitute
{
	my ($text, $values, $where) = @_;
	$text =~ s{<([a-z][a-z0-9-]*)>}{
		defined $values->{$1} ? $values->{$1}
		  : die "$where: no value for placeholder <$1>\n"
	}ge;
	return $text;
}

# Placeholders a text uses.
sub placeholders
{
	my ($text) = @_;
	my %seen;
	$seen{$1} = 1 while $text =~ /<([a-z][a-z0-9-]*)>/g;
	return sort keys %seen;
}

# The prose of a document (everything outside code blocks).
sub prose
{
	my ($path) = @_;
	my $text = PostgreSQL::Test::Utils::slurp_file($path);
	$text =~ s/^```.*?^```\s*$//gms;
	return $text;
}

# Run one step.  $ctx:
#   nodes     role => PostgreSQL::Test::Cluster (sql; conf and hba)
#   every     [ clusters ] for role "every"
#   values    placeholder => value (updated by "prints")
#   env       environment for shell steps (undef: unset)
#   after_shell  code ref called after every shell step
#   stderr    (set) the standard error of the last shell step
# Returns the step's output.  Dies when the step fails.
sub run_step
{
	my ($ctx, $block) = @_;
	my $where = "$block->{file}:$block->{line}";
	my $text = substitute($block->{text}, $ctx->{values}, $where);
	my $kind = $block->{kind};

	if ($kind eq 'conf' || $kind eq 'hba')
	{
		my $file = $kind eq 'conf' ? 'postgresql.conf' : 'pg_hba.conf';
		my @nodes = targets($ctx, $block);
		$_->append_conf($file, $text) foreach @nodes;
		return '';
	}
	if ($kind eq 'pgpass')
	{
		my $file = $ctx->{env}{PGPASSFILE} or die "$where: no PGPASSFILE\n";
		open my $fh, '>>', $file or die "could not open $file: $!";
		print $fh $text;
		close $fh;
		chmod 0600, $file;
		return '';
	}

	my $run = $kind eq 'sql'
	  ? sub { run_sql($ctx, $block, $text) }
	  : sub { run_shell($ctx, $block, $text) };
	my $out;
	if (defined $block->{until})
	{
		my $want =
		  $block->{until} eq 'no rows'
		  ? ''
		  : substitute($block->{until}, $ctx->{values}, $where);
		my ($got, $err) = ('', '');
		my $shown = '';
		my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
		while (1)
		{
			($got, $err) = eval { ($run->(), '') };
			($got, $err) = ('', $@) if $@;
			last if $err eq '' && $got eq $want;
			# what a DBA watching it would see, each time it changes
			note("meanwhile: " . ($err ne '' ? $err : $got))
			  if ($err ne '' ? $err : $got) ne $shown;
			$shown = $err ne '' ? $err : $got;
			die "$where: still not \"$want\" after "
			  . "$PostgreSQL::Test::Utils::timeout_default s: "
			  . ($err ne '' ? $err : "\"$got\"") . "\n"
			  if time() > $deadline;
			usleep(100_000);
		}
		$out = $got;
	}
	else
	{
		$out = $run->();
	}
	$ctx->{values}{ $block->{prints} } = $out if defined $block->{prints};
	return $out;
}

sub targets
{
	my ($ctx, $block) = @_;
	return grep { -d $_->data_dir } @{ $ctx->{every} }
	  if $block->{role} eq 'every';
	my $node = $ctx->{nodes}{ $block->{role} }
	  or die "$block->{file}:$block->{line}: no server for role $block->{role}\n";
	return ($node);
}

# psql as a DBA pastes into it: statement by statement, stop at an error.
# Returns the rows (unaligned, without headers), trimmed.
sub run_sql
{
	my ($ctx, $block, $sql) = @_;
	my ($node) = targets($ctx, $block);
	my ($out, $err) = ('', '');
	my @cmd = (
		$node->installed_command('psql'), '-X', '-A', '-t', '-q',
		'-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr($block->{db}), '-f', '-');
	my $ok = IPC::Run::run(\@cmd, '<', \$sql, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	die "psql failed on " . $node->name . ": $err\n" unless $ok;
	$out =~ s/^\s+|\s+$//g;
	return $out;
}

# bash -e with the step's text; output to files, so that a process the step
# leaves running in the background does not hold the test up.  Returns its
# standard output, trimmed.
sub run_shell
{
	my ($ctx, $block, $script) = @_;
	my $dir = $ctx->{workdir};
	my ($outfile, $errfile) = ("$dir/step.out", "$dir/step.err");
	my $ok = eval {
		local %ENV = (%ENV, %{ $ctx->{env} });
		delete $ENV{$_} foreach grep { !defined $ENV{$_} } keys %ENV;
		IPC::Run::run([ 'bash', '-e', '-o', 'pipefail', '-c', $script ],
			'<', \undef, '>', $outfile, '2>', $errfile,
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	};
	my $failure = $@;
	# also when it failed or timed out: a server it started must be known,
	# so that the test stops it
	$ctx->{after_shell}->() if $ctx->{after_shell};
	my $out = PostgreSQL::Test::Utils::slurp_file($outfile);
	my $err = PostgreSQL::Test::Utils::slurp_file($errfile);
	note("stderr: $err") if $err ne '';
	$ctx->{stderr} = $err;
	die "shell step failed: $failure$err\n" unless $ok;
	$out =~ s/^\s+|\s+$//g;
	return $out;
}

1;
