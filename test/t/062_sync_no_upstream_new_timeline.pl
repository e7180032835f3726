# A standby with no upstream keeps its ready copies (061) because nothing it
# replays can remove the catalog rows they need: WAL from an archive is the
# old primary's, which kept those rows while the standby's slot held them.
# Not so once replay moves to another timeline: that WAL comes from a newly
# promoted server (here through restore_command), which was never told to
# keep our rows.  Then the copies must be demoted.
#
# Standby A syncs the failover slot; standby B of the same primary archives
# once promoted; A restores from B's archive.  The primary goes, A loses
# primary_conninfo and primary_slot_name (as under Patroni with no leader),
# B is promoted and writes, and A replays B's timeline from the archive.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my $archive = PostgreSQL::Test::Utils::tempdir();
my ($primary, $standby) = setup_primary_standby(
	standby_conf => "restore_command = 'cp \"$archive/%f\" \"%p\"'\n"
	  . "recovery_target_timeline = 'latest'\n");

my $other = PostgreSQL::Test::Cluster->new('other');
$primary->safe_psql('postgres',
	"SELECT pg_create_physical_replication_slot('other_slot')");
$primary->backup('other_backup');
$other->init_from_backup($primary, 'other_backup', has_streaming => 1);
$other->append_conf(
	'postgresql.conf', qq(
primary_slot_name = 'other_slot'
archive_mode = on
archive_command = 'cp "%p" "$archive/%f"'
));
$other->start;

$primary->safe_psql('postgres', 'CREATE TABLE d (id int)');
create_failover_slot($primary, 'kept');
$primary->safe_psql('postgres', 'INSERT INTO d VALUES (1)');
get_changes($primary, 'kept');
ok(wait_for_slot_match($primary, $standby, 'kept'),
	'the copy is ready and current');
$primary->wait_for_catchup($other);

sub copy_state
{
	return $standby->safe_psql('postgres',
		"SELECT state || ':' || coalesce(reason_code, '') FROM pg_slotsync.sync_status WHERE slot_name = 'kept'"
	);
}

# no leader: nothing streams to the standby
my $offset = log_offset($standby);
$primary->stop;
$standby->append_conf('postgresql.conf',
	"primary_conninfo = ''\nprimary_slot_name = ''\n");
$standby->reload;
$standby->wait_for_log(
	qr/replication slot synchronization requires "primary_slot_name" to be set/,
	$offset);
like(copy_state(), qr/^(ready|stale):/,
	'with no upstream and the same timeline, the copy stays ready');

# the other standby is promoted and writes; its timeline reaches the
# standby through the archive
$other->promote;
$other->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
$other->safe_psql('postgres',
	'CREATE TABLE e (id int); INSERT INTO e VALUES (1); SELECT pg_switch_wal()');
ok( $standby->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_class WHERE relname = 'e'"),
	'the standby replays the new timeline from the archive');
ok( $standby->wait_for_log(
		qr/replication slot "kept" is no longer sync-ready\n.*DETAIL:  The primary is not known to keep the catalog rows it needs, because replay moved to another timeline while no primary was known to keep the copies' catalog rows/,
		$offset),
	'then the copy is demoted, saying why');
like(copy_state(), qr/^not_ready:unprotected$/, 'and the view says so');
is( $standby->safe_psql('postgres',
		"SELECT plugin FROM pg_replication_slots WHERE slot_name = 'kept'"),
	'pg_slotsync_not_ready', 'on disk it is no longer usable');

$other->stop;
$standby->stop;
done_testing();
