# Monitoring cannot stay silent: the alert query docs/monitoring.md gives
# returns rows whenever the standby is not failover-safe, for any reason:
# a standby that never synced, no dbname, the extension missing on the
# primary, hot_standby_feedback off, a wrong primary_slot_name; and none
# once it is.
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my $top = abs_path(dirname(__FILE__) . '/../..');
open(my $fh, '<', "$top/docs/monitoring.md") or die "docs/monitoring.md: $!";
my $doc = do { local $/; <$fh> };
close $fh;
my ($alert_sql) = $doc =~ /<!-- alert query -->\s*```sql\n(.*?)```/s;
ok(defined $alert_sql, 'docs/monitoring.md gives the alert query');
$alert_sql =~ s/;\s*$//;
my $alert_text =
  "SELECT coalesce(string_agg(what || '|' || state || '|' || coalesce(reason_code, '') || '|' || coalesce(reason, ''), E'\\n'), '') FROM ($alert_sql) a";

# Starts with a dbname the primary does not have: it never syncs.
my ($primary, $standby) = setup_primary_standby(
	standby_conf =>
	  "pg_slotsync.primary_conninfo = 'dbname=nosuchdb'\npg_slotsync.stale_after = 2s\n",
	wait_started => 0);
create_failover_slot($primary, 'mon');

# Wait until the alert says what it should; returns what it said last.
sub alert_matches
{
	my ($re) = @_;
	my $got = '';
	my $ok = wait_until(
		sub {
			$got = $standby->safe_psql('postgres', $alert_text);
			return $got =~ $re;
		},
		30);
	diag "the alert query said:\n$got" unless $ok;
	return $ok;
}

ok(alert_matches(qr/^\(this standby\)\|disconnected\|never_synced\|.*nosuchdb/m),
	'a standby that never synced is not failover-safe');

# The worker's error can name the primary's host: a role that is not a
# member of pg_read_all_stats gets the reason without it.
$primary->safe_psql('postgres', 'CREATE ROLE viewer LOGIN');
$primary->wait_for_catchup($standby, 'replay');
my $viewer_reason = $standby->safe_psql(
	'postgres',
	'SELECT reason FROM pg_slotsync.failover_readiness() WHERE slot_name IS NULL',
	extra_params => [ '-U', 'viewer' ]);
like($viewer_reason, qr/error is shown to members of pg_read_all_stats/,
	'a role without pg_read_all_stats is told where the error is');
unlike($viewer_reason, qr/nosuchdb/, '... and does not see it');

my $conninfo = $primary->connstr . ' dbname=postgres';
$standby->append_conf('postgresql.conf',
	"pg_slotsync.primary_conninfo = '$conninfo'\n");
$standby->reload;
ok( wait_until(
		sub {
			advance_slot($primary, 'mon');
			return $standby->safe_psql('postgres', $alert_text) eq '';
		},
		30),
	'once synced and the slot moved, the alert query returns nothing');

my @broken = (
	[
		'no dbname',
		"pg_slotsync.primary_conninfo = '" . $primary->connstr . "'\n",
		qr/misconfigured\|.*"dbname" to be specified/
	],
	[
		'the extension missing on the primary',
		"pg_slotsync.primary_conninfo = '"
		  . $primary->connstr
		  . " dbname=template1'\n",
		qr/misconfigured\|.*pg_slotsync is not installed in database "template1"/
	],
	[
		'hot_standby_feedback off',
		"hot_standby_feedback = off\n",
		qr/misconfigured\|.*hot_standby_feedback/
	],
	[
		'a wrong primary_slot_name',
		"primary_slot_name = 'no_such_slot'\n",
		qr/misconfigured\|.*replication slot "no_such_slot" specified by "primary_slot_name" does not exist/
	]);

foreach my $case (@broken)
{
	my ($what, $conf, $re) = @$case;
	$standby->append_conf('postgresql.conf', $conf);
	$standby->reload;
	ok(alert_matches(qr/^\(this standby\)\|.*$re/m),
		"$what: the alert query says so at once");
	ok(alert_matches(qr/^mon\|(stale|not_ready)\|/m),
		"$what: and names the slot once it is no longer current");

	# put it right again
	$standby->append_conf('postgresql.conf',
		"pg_slotsync.primary_conninfo = '$conninfo'\nhot_standby_feedback = on\nprimary_slot_name = 'sb1_slot'\n");
	$standby->reload;
	advance_slot($primary, 'mon');
	ok( wait_until(
			sub {
				advance_slot($primary, 'mon');
				return $standby->safe_psql('postgres', $alert_text) eq '';
			},
			30),
		"$what fixed: the alert query is empty again");
}

$standby->stop;
$primary->stop;
done_testing();
