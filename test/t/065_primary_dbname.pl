# pg_slotsync.primary_dbname: the worker uses the standby's own
# primary_conninfo with this database, for HA tools that write
# primary_conninfo without a dbname (Patroni, repmgr).  It wins over a
# dbname in primary_conninfo, and pg_slotsync.primary_conninfo wins over it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby(wait_started => 0);
my $plain = $primary->connstr . ' application_name=standby';

# primary_conninfo without a dbname, the way Patroni writes it
$standby->append_conf('postgresql.conf',
	"primary_conninfo = '$plain'\npg_slotsync.primary_dbname = 'postgres'\n");
$standby->restart;
create_failover_slot($primary, 'pd');
ok(wait_for_slot_ready_advancing($primary, $standby, 'pd'),
	'without a dbname in primary_conninfo, primary_dbname names the database');

# a dbname in primary_conninfo where pg_slotsync is not installed: ours wins
my $restart_offset = log_offset($standby);
$standby->append_conf('postgresql.conf',
	"primary_conninfo = '$plain dbname=template1'\n");
$standby->reload;
ok( $standby->wait_for_log(
		qr/replication slot synchronization worker will restart because of a parameter change/,
		$restart_offset),
	'the worker reconnects with the new primary_conninfo');
advance_slot($primary, 'pd');
ok(wait_for_slot_match($primary, $standby, 'pd'),
	'primary_dbname wins over a dbname in primary_conninfo');

# pg_slotsync.primary_conninfo wins over both
my $offset = log_offset($standby);
$standby->append_conf('postgresql.conf',
	"pg_slotsync.primary_conninfo = '" . $primary->connstr . " dbname=template1'\n");
$standby->reload;
ok( $standby->wait_for_log(
		qr/pg_slotsync is not installed in database "template1" on the primary server/,
		$offset),
	'pg_slotsync.primary_conninfo is used as it is, primary_dbname ignored');

$standby->stop;
$primary->stop;
done_testing();
