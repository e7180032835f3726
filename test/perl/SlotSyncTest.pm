# Shared setup and helpers for the slot sync TAP tests (test/t/010_*.pl ..
# 019_*.pl): a primary with pg_slotsync, a physical standby that synchronizes
# its failover slots, and small polling helpers.
#
# Conventions used by the tests:
#  - every SQL runs in database "postgres";
#  - a slot is "sync-ready" on a standby when pg_slotsync.replication_slots
#    says synced AND NOT temporary AND sync_state = 'ready';
#  - waits poll (never fixed sleeps) and give up after $WAIT_SECS seconds,
#    so that a broken feature fails in reasonable time.
package SlotSyncTest;

use strict;
use warnings;

use Exporter 'import';
use File::Path qw(rmtree);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::RecursiveCopy;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(
  setup_primary_standby
  create_failover_slot
  ready_sql
  is_slot_ready
  wait_for_slot_ready
  wait_for_slot_absent
  slot_positions
  synced_slot_positions
  wait_for_slot_match
  advance_slot
  wait_for_slot_ready_advancing
  get_changes
  sync_status
  worker_pid
  wait_for_worker
  wait_for_no_worker
  copy_slot_to_standby
  log_offset
  wait_until
  stop_wal_streaming
  wait_for_primary_slot_sync
  start_bg_sql
  bg_running
  finish_bg_sql
);

# How long a wait may take before the test gives up.
our $WAIT_SECS = 60;

# The framework's own waits (poll_query_until, wait_for_catchup,
# wait_for_log, background psql) default to 180 s each, so a broken feature
# makes a file run for many minutes; 90 s is plenty when things work.  An
# explicit PG_TEST_TIMEOUT_DEFAULT still wins.
$PostgreSQL::Test::Utils::timeout_default = 90
  if !defined $ENV{PG_TEST_TIMEOUT_DEFAULT}
  && $PostgreSQL::Test::Utils::timeout_default > 90;

# The physical slot the standby streams from.
our $STANDBY_SLOT = 'sb1_slot';

=pod

=head1 setup_primary_standby(%opts)

Creates, starts and returns ($primary, $standby).  Options:

  primary_name, standby_name  node names (default 'primary', 'standby')
  primary_conf     extra postgresql.conf text for the primary, appended
                   before the backup (so the standby inherits it)
  standby_conf     extra postgresql.conf text for the standby, appended last
  sync             pg_slotsync.sync_replication_slots on the standby
                   (default 1)
  before_backup    code ref called with ($primary) before the backup
  before_standby_start
                   code ref called with ($primary, $standby) after the
                   standby was initialized and before it starts
  start_standby    start the standby (default 1)
  wait_started     when sync is on and the standby is started, wait for
                   the worker to log that it started syncing (default 1;
                   0 for a configuration that keeps it from syncing)

=cut

sub setup_primary_standby
{
	my %opts = @_;
	my $primary_name = $opts{primary_name} // 'primary';
	my $standby_name = $opts{standby_name} // 'standby';
	my $sync = $opts{sync} // 1;
	my $start_standby = $opts{start_standby} // 1;

	my $primary = PostgreSQL::Test::Cluster->new($primary_name);
	$primary->init(allows_streaming => 'logical');
	$primary->append_conf(
		'postgresql.conf', qq(
shared_preload_libraries = 'pg_slotsync'
max_replication_slots = 20
max_wal_senders = 10
max_connections = 25
wal_receiver_status_interval = 1s
));
	$primary->append_conf('postgresql.conf', $opts{primary_conf})
	  if defined $opts{primary_conf};
	$primary->start;
	$primary->safe_psql('postgres', 'CREATE EXTENSION pg_slotsync');
	$primary->safe_psql('postgres',
		"SELECT pg_create_physical_replication_slot('$STANDBY_SLOT')");

	$opts{before_backup}->($primary) if defined $opts{before_backup};

	my $backup_name = "${primary_name}_backup";
	$primary->backup($backup_name);

	my $standby = PostgreSQL::Test::Cluster->new($standby_name);
	$standby->init_from_backup($primary, $backup_name, has_streaming => 1);
	my $conninfo =
	  $primary->connstr . " dbname=postgres application_name=$standby_name";
	my $sync_value = $sync ? 'on' : 'off';
	$standby->append_conf(
		'postgresql.conf', qq(
primary_slot_name = '$STANDBY_SLOT'
primary_conninfo = '$conninfo'
hot_standby_feedback = on
wal_receiver_status_interval = 1s
pg_slotsync.sync_replication_slots = $sync_value
));
	$standby->append_conf('postgresql.conf', $opts{standby_conf})
	  if defined $opts{standby_conf};

	$opts{before_standby_start}->($primary, $standby)
	  if defined $opts{before_standby_start};

	if ($start_standby)
	{
		$standby->start;
		$primary->wait_for_catchup($standby);
		if ($sync && ($opts{wait_started} // 1))
		{
			$standby->wait_for_log(qr/slot sync worker started/, 0);
		}
	}

	return ($primary, $standby);
}

# Create a failover slot on the primary; returns the lsn the function gives.
sub create_failover_slot
{
	my ($node, $name, %opts) = @_;
	my $plugin = $opts{plugin} // 'test_decoding';
	my $twophase = $opts{twophase} ? 'true' : 'false';
	return $node->safe_psql('postgres',
		"SELECT lsn FROM pg_slotsync.create_logical_replication_slot('$name', '$plugin', twophase => $twophase, failover => true)"
	);
}

# SQL that returns 't' when the slot is sync-ready on a standby.
sub ready_sql
{
	my ($name) = @_;
	return
	  "SELECT count(*) = 1 FROM pg_slotsync.replication_slots WHERE slot_name = '$name' AND synced AND NOT temporary AND sync_state = 'ready'";
}

sub is_slot_ready
{
	my ($standby, $name) = @_;
	return $standby->safe_psql('postgres', ready_sql($name)) eq 't';
}

# Poll with the given code until it returns true; false after $secs.
sub wait_until
{
	my ($code, $secs) = @_;
	$secs //= $WAIT_SECS;
	my $deadline = time() + $secs;
	while (1)
	{
		return 1 if $code->();
		return 0 if time() > $deadline;
		usleep(100_000);
	}
}

sub wait_for_slot_ready
{
	my ($standby, $name, $secs) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = ($secs // $WAIT_SECS);
	return $standby->poll_query_until('postgres', ready_sql($name));
}

sub wait_for_slot_absent
{
	my ($node, $name, $secs) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = ($secs // $WAIT_SECS);
	return $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name = '$name'"
	);
}

# "catalog_xmin|restart_lsn|confirmed_flush_lsn" of a slot, '' if missing.
sub slot_positions
{
	my ($node, $name) = @_;
	return $node->safe_psql('postgres',
		"SELECT catalog_xmin, restart_lsn, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$name'"
	);
}

# Same, of a sync-ready copy only ('' while the copy is missing or not
# ready).
sub synced_slot_positions
{
	my ($standby, $name) = @_;
	return $standby->safe_psql('postgres',
		"SELECT catalog_xmin, restart_lsn, confirmed_flush_lsn FROM pg_slotsync.replication_slots WHERE slot_name = '$name' AND synced AND NOT temporary AND sync_state = 'ready'"
	);
}

# Wait until the standby's copy is sync-ready with the very catalog_xmin,
# restart_lsn and confirmed_flush_lsn the primary's slot has (both read
# afresh each round, as the primary's slot may be moving).
sub wait_for_slot_match
{
	my ($primary, $standby, $name, $secs) = @_;
	my ($p, $s) = ('', '');
	my $ok = wait_until(
		sub {
			$p = slot_positions($primary, $name);
			$s = synced_slot_positions($standby, $name);
			return $p ne '' && $p eq $s;
		},
		$secs);
	diag("slot \"$name\" did not match: primary \"$p\", standby \"$s\"")
	  unless $ok;
	return $ok;
}

# Move a slot nobody consumes forward on the primary, past a fresh
# xl_running_xacts record (CHECKPOINT logs one): what a consumer does.  The
# slot's database defaults to postgres.
sub advance_slot
{
	my ($primary, $name, $dbname) = @_;
	$dbname //= 'postgres';
	$primary->safe_psql($dbname, 'CHECKPOINT');
	$primary->safe_psql($dbname,
		"SELECT pg_replication_slot_advance('$name', pg_current_wal_lsn())");
	return;
}

# Wait until a slot is sync-ready, moving the primary's slot forward while
# it is not.  For slots that existed on the primary before the standby
# started synchronizing, which (as in PostgreSQL 17) may only be ready once
# the primary's slot moves past what the standby could reserve.
sub wait_for_slot_ready_advancing
{
	my ($primary, $standby, $name, $secs) = @_;
	my $rounds = 0;
	return wait_until(
		sub {
			return 1 if is_slot_ready($standby, $name);
			advance_slot($primary, $name) if ($rounds++ % 5) == 4;
			return 0;
		},
		$secs);
}

# Changes decoded (and consumed) from a test_decoding slot.
sub get_changes
{
	my ($node, $name) = @_;
	return $node->safe_psql('postgres',
		"SELECT data FROM pg_logical_slot_get_changes('$name', NULL, NULL, 'include-xids', '0', 'skip-empty-xacts', '1')"
	);
}

# "state|reason" of a slot in pg_slotsync.sync_status ('' if no row).
sub sync_status
{
	my ($standby, $name) = @_;
	return $standby->safe_psql('postgres',
		"SELECT state, reason FROM pg_slotsync.sync_status WHERE slot_name = '$name'"
	);
}

my $worker_cond =
  "(backend_type = 'pg_slotsync worker' OR (backend_type LIKE '%slotsync%' AND backend_type NOT LIKE '%launcher%'))";

# pid of the sync worker, '' if none.
sub worker_pid
{
	my ($standby) = @_;
	return $standby->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE $worker_cond");
}

sub wait_for_worker
{
	my ($standby, $secs) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = ($secs // $WAIT_SECS);
	return $standby->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE $worker_cond");
}

sub wait_for_no_worker
{
	my ($standby, $secs) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = ($secs // $WAIT_SECS);
	return $standby->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE $worker_cond");
}

# Give a stopped (or not yet started) standby a plain logical slot of its
# own, copied from the primary's slot directory: PostgreSQL 15 cannot create
# logical slots during recovery, and pg_basebackup leaves pg_replslot out.
# pg_slotsync's marker is left behind, so the standby's slot is not synced.
sub copy_slot_to_standby
{
	my ($primary, $standby, $name) = @_;
	my $from = $primary->data_dir . "/pg_replslot/$name";
	my $to = $standby->data_dir . "/pg_replslot/$name";
	die "slot directory $from missing" unless -d $from;
	rmtree($to) if -d $to;
	PostgreSQL::Test::RecursiveCopy::copypath($from, $to);
	opendir(my $dh, $to) or die "could not open $to: $!";
	foreach my $f (readdir $dh)
	{
		next if $f eq '.' || $f eq '..' || $f eq 'state';
		unlink("$to/$f") or die "could not remove $to/$f: $!";
	}
	closedir $dh;
	chmod(0700, $to);
	chmod(0600, "$to/state");
	return;
}

# Stop the standby's walreceiver while its sync worker goes on through a
# connection of its own (pg_slotsync.primary_conninfo): WAL stops flowing,
# slot sync does not.  Returns whether the walreceiver stopped.
sub stop_wal_streaming
{
	my ($primary, $standby) = @_;
	$standby->safe_psql('postgres',
		"ALTER SYSTEM SET pg_slotsync.primary_conninfo = '"
		  . $primary->connstr
		  . " dbname=postgres'");
	$standby->safe_psql('postgres', "ALTER SYSTEM SET primary_conninfo = ''");
	$standby->reload;
	return $standby->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM pg_stat_wal_receiver');
}

sub log_offset
{
	my ($node) = @_;
	return -s $node->logfile;
}

# Wait until the primary's physical slot for the standby has caught up with
# the primary's current insert position (so a checkpoint cannot invalidate
# it with a small max_slot_wal_keep_size).
sub wait_for_primary_slot_sync
{
	my ($primary) = @_;
	my $lsn = $primary->lsn('insert');
	local $PostgreSQL::Test::Utils::timeout_default = $WAIT_SECS;
	return $primary->poll_query_until('postgres',
		"SELECT restart_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = '$STANDBY_SLOT'"
	);
}

# Run one SQL string through psql in the background.  Returns a handle for
# bg_running / finish_bg_sql.
sub start_bg_sql
{
	my ($node, $sql, %opts) = @_;
	my $h = { out => '', err => '' };
	my $dbname = $opts{dbname} // 'postgres';
	my @cmd = (
		$node->installed_command('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr($dbname), '-c', $sql);
	$h->{run} = IPC::Run::start(\@cmd, '>', \$h->{out}, '2>', \$h->{err});
	return $h;
}

sub bg_running
{
	my ($h) = @_;
	return 0 unless $h->{run}->pumpable;
	$h->{run}->pump_nb;
	return $h->{run}->pumpable;
}

# Wait for it to end; returns (exit code, stdout, stderr).
sub finish_bg_sql
{
	my ($h) = @_;
	$h->{run}->finish;
	my $rc = $h->{run}->result(0);
	return ($rc, $h->{out}, $h->{err});
}

1;
