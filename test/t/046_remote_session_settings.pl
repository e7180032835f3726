# The sync worker's session on the primary is its own: settings a database
# owner or the connecting role put on it with ALTER DATABASE / ALTER ROLE
# ... SET (no superuser needed) must not break it.  A statement_timeout of
# 200 ms used to cancel every long-poll, so that slots were synchronized only
# at reconnects; an idle_session_timeout closed the session between cycles;
# client_min_messages = debug5 made the primary send its debug messages,
# which went raw into the standby's log.  The worker sets its own values for
# these when it connects.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby(
	sync => 0,
	before_backup => sub {
		my ($p) = @_;
		$p->safe_psql(
			'postgres', q{
			CREATE ROLE dbowner LOGIN;
			CREATE ROLE repl LOGIN REPLICATION;
			CREATE DATABASE syncdb OWNER dbowner;
		});
		$p->safe_psql('syncdb', 'CREATE EXTENSION pg_slotsync');
	});

# The owner of the database and the role itself, neither a superuser.
$primary->safe_psql('syncdb',
	q{SET ROLE dbowner; ALTER DATABASE syncdb SET statement_timeout = '200ms'});
$primary->safe_psql(
	'syncdb', q{
	SET ROLE repl;
	ALTER ROLE repl SET idle_session_timeout = '50ms';
	ALTER ROLE repl SET client_min_messages = 'debug5';
});
is( $primary->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase
		  WHERE d.datname = 'syncdb' OR s.setrole = 'repl'::regrole"),
	'2',
	'the database and the role carry their settings');

create_failover_slot($primary, 'st1');

my $offset = log_offset($standby);
$standby->append_conf(
	'postgresql.conf', qq(
pg_slotsync.primary_conninfo = '@{[ $primary->connstr ]} dbname=syncdb user=repl'
pg_slotsync.sync_replication_slots = on
));
$standby->reload;
ok($standby->wait_for_log(qr/slot sync worker started/, $offset),
	'the worker starts');
ok(wait_for_slot_ready_advancing($primary, $standby, 'st1'),
	'the slot becomes ready');

# A long-poll outlives the 200 ms statement_timeout of the database.
ok( $primary->poll_query_until(
		'postgres', q{
		SELECT count(*) > 0 FROM pg_stat_activity
		 WHERE usename = 'repl' AND datname = 'syncdb' AND state = 'active'
		   AND query LIKE '%wait_for_failover_slot_change%'
		   AND now() - query_start > interval '1 second'}),
	'the long-poll is not cut short by the database\'s statement_timeout');

advance_slot($primary, 'st1');
ok(wait_for_slot_match($primary, $standby, 'st1'),
	'a change reaches the standby');

my $log = slurp_file($standby->logfile, $offset);
unlike(
	$log,
	qr/canceling statement due to statement timeout/,
	'no long-poll was cancelled');
unlike(
	$log,
	qr/terminating connection due to idle-session timeout|server closed the connection unexpectedly/,
	'the session was never closed for being idle');
unlike(
	$log,
	qr/^(DEBUG|LOG|NOTICE|INFO):  /m,
	'no message of the primary\'s session copied raw into the standby\'s log');

done_testing();
