# Helpers for the hostile-peer tests (test/t/040_* .. 045_*): a primary and
# a standby whose sync worker reaches the primary through a FakePrimary
# (test/perl/FakePrimary.pm), and the checks every round makes:
#  - no crash: the postmaster's pid and the checkpointer's pid are the ones
#    from before (a crashed child makes the postmaster reinitialize, which
#    starts a new checkpointer), and no "terminated by signal" in the log;
#  - the synced copies (name, state, positions) are exactly as before;
#  - the log says what went wrong, and never carries a line the peer forged.
package HostileTest;

use strict;
use warnings;

use Exporter 'import';
use FakePrimary;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SlotSyncTest;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(
  setup_with_fake
  server_marks
  synced_copies
  wait_for_log_or_crash
  check_no_crash
  forged_lines
  hostile_round
  log_since
);

# Primary and standby as setup_primary_standby() makes them, with the
# standby's pg_slotsync.primary_conninfo pointing at a fake primary that
# passes everything through to the real one.  Returns ($primary, $standby,
# $fake).
sub setup_with_fake
{
	my (%opts) = @_;
	my $fake;
	my $before = $opts{before_standby_start};
	my ($primary, $standby) = setup_primary_standby(
		%opts,
		before_standby_start => sub {
			my ($p, $s) = @_;
			$fake = FakePrimary->new(upstream => $p);
			$s->append_conf('postgresql.conf',
				"pg_slotsync.primary_conninfo = '" . $fake->connstr . "'\n");
			$before->($p, $s) if $before;
		});
	return ($primary, $standby, $fake);
}

# "postmaster pid|checkpointer pid"; the checkpointer part is empty when
# the server does not answer.
sub server_marks
{
	my ($node) = @_;
	open(my $fh, '<', $node->data_dir . '/postmaster.pid')
	  or return 'no postmaster.pid';
	my $postmaster = <$fh>;
	close($fh);
	chomp $postmaster;
	my $out = '';
	$node->psql(
		'postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'",
		stdout => \$out);
	return "$postmaster|$out";
}

# The standby's synced copies, one line each; an error text if the server
# does not answer.
sub synced_copies
{
	my ($node) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql(
		'postgres',
		"SELECT slot_name, sync_state, restart_lsn, confirmed_flush_lsn, catalog_xmin
		   FROM pg_slotsync.replication_slots
		  WHERE synced AND slot_name NOT LIKE 'bulk%'
		  ORDER BY slot_name",
		stdout => \$out,
		stderr => \$err);
	return $rc == 0 ? $out : "query failed: $err";
}

sub log_since
{
	my ($node, $offset) = @_;
	return slurp_file($node->logfile, $offset);
}

# Wait until the log (from $offset) matches $re; stop early when a process
# crashed.  True if $re matched.
sub wait_for_log_or_crash
{
	my ($node, $re, $offset, $secs) = @_;
	my $matched = 0;
	wait_until(
		sub {
			my $log = log_since($node, $offset);
			$matched = 1 if $log =~ $re;
			return $matched || $log =~ /terminated by signal/;
		},
		$secs);
	return $matched;
}

sub check_no_crash
{
	my ($node, $offset, $marks, $what) = @_;
	my $log = log_since($node, $offset);
	my @crashes = ($log =~ /(terminated by signal[^\n]*)/g);
	is(scalar(@crashes), 0, "$what: no process terminated by a signal")
	  or diag("crashes: @crashes[0 .. ($#crashes < 2 ? $#crashes : 2)]");
	is(server_marks($node), $marks,
		"$what: the postmaster never reinitialized");
	return;
}

# Lines of the log (from $offset) that start with $marker: lines a peer
# forged by putting a newline into a message.
sub forged_lines
{
	my ($node, $offset, $marker) = @_;
	my @lines = grep { /^\Q$marker\E/ } split(/\n/, log_since($node, $offset));
	return scalar @lines;
}

# One hostile round against the worker: give the fake a personality, make
# the worker retry at once, wait for the log to say $expect; then no crash,
# no forged line, and the copies as they were.
sub hostile_round
{
	my (%a) = @_;
	my ($fake, $standby, $name) = @a{qw(fake standby name)};
	my $before = synced_copies($standby);
	my $marks = server_marks($standby);
	my $offset = log_offset($standby);

	$fake->set(%{ $a{personality} });
	$standby->reload;
	ok(wait_for_log_or_crash($standby, $a{expect}, $offset),
		"$name: the standby's log says what is wrong");
	$a{then}->() if $a{then};
	check_no_crash($standby, $offset, $marks, $name);
	is(forged_lines($standby, $offset, 'FORGED'), 0,
		"$name: no log line forged by the peer");
	is(synced_copies($standby), $before,
		"$name: no synced slot dropped or changed");
	return $offset;
}

1;
