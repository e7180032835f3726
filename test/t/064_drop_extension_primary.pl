# DROP EXTENSION pg_slotsync on a syncing primary, as docs/production.md
# describes it: the standby's worker keeps retrying but says the extension
# is missing only once a minute, the primary logs at most one ERROR (the
# call in progress when the extension went away), not one per retry, and
# both sync again by themselves after CREATE EXTENSION.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) =
  setup_primary_standby(primary_conf => "log_connections = on\n");
create_failover_slot($primary, 'dx');
ok(wait_for_slot_ready_advancing($primary, $standby, 'dx'), 'dx is ready');

my $standby_offset = log_offset($standby);
my $primary_offset = log_offset($primary);
$primary->safe_psql('postgres', 'DROP EXTENSION pg_slotsync');

# The worker's connections to the primary (its backoff starts at a second
# and doubles): wait for three of them after the drop.
my $worker_connection =
  qr/connection authorized: .*application_name=standby_pg_slotsync worker/;
ok( wait_until(
		sub {
			my $log = slurp_file($primary->logfile, $primary_offset);
			my $n = () = $log =~ /$worker_connection/g;
			return $n >= 3;
		}),
	'the standby keeps trying');

my $standby_log = slurp_file($standby->logfile, $standby_offset);
my $said = () = $standby_log =~
  /pg_slotsync is not installed in database "postgres" on the primary server/g;
is($said, 1, 'the standby says once that the extension is missing');
my $primary_log = slurp_file($primary->logfile, $primary_offset);
my $errors = () = $primary_log =~ /ERROR:  /g;
cmp_ok($errors, '<=', 1, 'the primary logs no ERROR for each retry')
  or diag $primary_log;

$primary->safe_psql('postgres', 'CREATE EXTENSION pg_slotsync');
advance_slot($primary, 'dx');
ok(wait_for_slot_match($primary, $standby, 'dx'),
	'after CREATE EXTENSION the standby syncs again by itself');
ok(is_slot_ready($standby, 'dx'), 'and its copy is ready');

$primary->stop;
$standby->stop;
done_testing();
