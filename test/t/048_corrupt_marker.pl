# One corrupt pg_slotsync marker (pg_replslot/<slot>/pg_slotsync.marker) on
# the primary must not block everything: listing failover slots skips that
# slot with a WARNING so that every other failover slot keeps syncing, the
# pg_slotsync.replication_slots view keeps working for everyone and reports
# the bad slot, and pg_slotsync.alter_replication_slot(), the remedy the
# error's hint names, rewrites the marker.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SlotSyncTest;

my ($primary, $standby) = setup_primary_standby();

create_failover_slot($primary, 'cm1');
create_failover_slot($primary, 'cm2');
ok(wait_for_slot_ready_advancing($primary, $standby, 'cm1'), 'cm1 is ready');
ok(wait_for_slot_ready_advancing($primary, $standby, 'cm2'), 'cm2 is ready');

# Corrupt cm1's marker on the primary: same size, garbage content.
my $marker = $primary->data_dir . '/pg_replslot/cm1/pg_slotsync.marker';
ok(-e $marker, 'cm1 has a marker on the primary');
my $size = -s $marker;
open(my $fh, '>', $marker) or die "could not open $marker: $!";
print $fh ('Z' x $size);
close($fh);
my $offset = log_offset($primary);

# failover_slots() still answers, with the other slot
my ($ret, $out, $err) = $primary->psql('postgres',
	'SELECT string_agg(slot_name, \',\' ORDER BY slot_name) FROM pg_slotsync.failover_slots()'
);
is($ret, 0, 'failover_slots() does not fail') or diag($err);
is($out, 'cm2', 'and lists the other failover slot');
like(slurp_file($primary->logfile, $offset),
	qr/WARNING:  .*replication slot "cm1"/,
	'the corrupt marker is reported with a WARNING');

# the other slot keeps syncing
advance_slot($primary, 'cm2');
ok(wait_for_slot_match($primary, $standby, 'cm2'),
	'the other failover slot keeps syncing');

# The standby's long-poll says so too: a new session (after the old one is
# terminated) reads the marker afresh and logs it once.
$offset = log_offset($primary);
$primary->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	 WHERE query LIKE '%wait_for_failover_slot_changes%' AND pid <> pg_backend_pid()"
);
ok( $primary->wait_for_log(
		qr/WARNING:  .*replication slot "cm1"/,
		$offset),
	"the standby's long-poll reports the corrupt marker with a WARNING");
advance_slot($primary, 'cm2');
ok(wait_for_slot_match($primary, $standby, 'cm2'),
	'the other failover slot still syncs after the reconnect');

# the view works, for an ordinary user too, and reports the bad slot
$primary->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
($ret, $out, $err) = $primary->psql('postgres',
	q{SELECT count(*) FROM pg_slotsync.replication_slots v
	   WHERE slot_name = 'cm1' AND row_to_json(v)::text ILIKE '%corrupt%'});
is($ret, 0, 'the view works') or diag($err);
is($out, '1', 'and reports the corrupt marker of cm1');
($ret, $out, $err) = $primary->psql('postgres',
	'SET ROLE plain; SELECT count(*) FROM pg_slotsync.replication_slots');
is($ret, 0, 'the view works for a user without privileges') or diag($err);

# alter_replication_slot() repairs it
($ret, $out, $err) = $primary->psql('postgres',
	"SELECT pg_slotsync.alter_replication_slot('cm1', true)");
is($ret, 0, 'alter_replication_slot() rewrites the corrupt marker')
  or diag($err);
($ret, $out, $err) = $primary->psql('postgres',
	q{SELECT failover, row_to_json(v)::text NOT ILIKE '%corrupt%'
	    FROM pg_slotsync.replication_slots v WHERE slot_name = 'cm1'});
is($out, 't|t', 'cm1 is a failover slot again, with nothing to report');
# the copy may have gone while the slot was not listed; a new copy is
# ready once the slot moves, as for any slot older than its copy
ok( wait_for_slot_ready_advancing($primary, $standby, 'cm1')
	  && wait_for_slot_match($primary, $standby, 'cm1'),
	'and it syncs again');

done_testing();
