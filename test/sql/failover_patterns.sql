-- pg_slotsync.failover_slot_patterns: bad values are refused with a reason.
SHOW pg_slotsync.failover_slot_patterns;

-- reloadable only, like core's replication settings
SET pg_slotsync.failover_slot_patterns = 'a%';

ALTER SYSTEM SET pg_slotsync.failover_slot_patterns = 'Debezium%';
ALTER SYSTEM SET pg_slotsync.failover_slot_patterns = 'sub-1';
ALTER SYSTEM SET pg_slotsync.failover_slot_patterns = 'a%, ,b';
ALTER SYSTEM SET pg_slotsync.failover_slot_patterns = 'a%,';
ALTER SYSTEM SET pg_slotsync.failover_slot_patterns = ',a%';
ALTER SYSTEM SET pg_slotsync.failover_slot_patterns = 'ends_with_escape\';
ALTER SYSTEM SET pg_slotsync.failover_slot_patterns = 'escaped\-dash';
ALTER SYSTEM SET pg_slotsync.failover_slot_patterns = 'p23456789012345678901234567890123456789012345678901234567890123%';

-- good values are accepted
ALTER SYSTEM SET pg_slotsync.failover_slot_patterns = 'sub_%, debezium\_%,  cdc ';
ALTER SYSTEM SET pg_slotsync.failover_slot_patterns = '';
ALTER SYSTEM RESET pg_slotsync.failover_slot_patterns;

-- unknown settings in our prefix are refused once the library is loaded
SET pg_slotsync.no_such_setting = 'x';
