-- What a standby's sync worker asks the primary, and what the standby-only
-- functions say on a primary.
SELECT 'init' FROM pg_create_physical_replication_slot('standby_slot');
SELECT slot_name FROM pg_slotsync.create_logical_replication_slot('ps_fo', 'test_decoding', failover => true);
SELECT slot_name FROM pg_slotsync.create_logical_replication_slot('ps_plain', 'test_decoding');
SELECT slot_name FROM pg_slotsync.create_logical_replication_slot('ps_temp', 'test_decoding', temporary => true);

-- only the failover slot is listed, with what a standby copies
SELECT f.slot_name, f.plugin, f.database, f.two_phase, f.invalidated,
       f.restart_lsn = s.restart_lsn AS same_restart,
       f.confirmed_flush_lsn = s.confirmed_flush_lsn AS same_confirmed,
       f.catalog_xmin = s.catalog_xmin AS same_xmin
FROM pg_slotsync.failover_slots() f
JOIN pg_replication_slots s USING (slot_name);

-- every failover slot has an incarnation id, the same on every call
SELECT incarnation AS fo_incarnation FROM pg_slotsync.failover_slots()
WHERE slot_name = 'ps_fo' \gset
SELECT :fo_incarnation IS NOT NULL AND :fo_incarnation <> 0 AS has_incarnation,
       (SELECT incarnation FROM pg_slotsync.failover_slots()
        WHERE slot_name = 'ps_fo') = :fo_incarnation AS stable;
-- a slot dropped and created again under the same name is another slot
SELECT pg_drop_replication_slot('ps_fo');
SELECT slot_name FROM pg_slotsync.create_logical_replication_slot('ps_fo', 'test_decoding', failover => true);
SELECT incarnation <> :fo_incarnation AS new_incarnation
FROM pg_slotsync.failover_slots() WHERE slot_name = 'ps_fo';

-- the long-poll: without a token it answers at once; with the current
-- token it waits out its timeout; a change answers with a new token
SELECT change_token IS NOT NULL AS has_token, in_recovery, wal_level_logical,
       standby_slot_is_physical, standby_slot_catalog_xmin
FROM pg_slotsync.wait_for_failover_slot_change('standby_slot', NULL, 0);
SELECT change_token AS token0 FROM pg_slotsync.wait_for_failover_slot_change('standby_slot', NULL, 0) \gset
SELECT change_token = :token0 AS unchanged_after_timeout
FROM pg_slotsync.wait_for_failover_slot_change('standby_slot', :token0, 50);
SELECT pg_slotsync.alter_replication_slot('ps_plain', true);
SELECT change_token <> :token0 AS changed_by_new_failover_slot
FROM pg_slotsync.wait_for_failover_slot_change('standby_slot', :token0, 5000);
-- an unknown standby slot is reported as missing, not an error
SELECT standby_slot_is_physical IS NULL AS missing
FROM pg_slotsync.wait_for_failover_slot_change('no_such_slot', NULL, 0);
SELECT * FROM pg_slotsync.wait_for_failover_slot_change('standby_slot', NULL, -1);

-- a fresh slot has no serialized snapshot at its restart_lsn yet
SELECT restart_lsn = (SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'ps_fo') AS at_restart,
       snapshot IS NULL AS no_snapshot
FROM pg_slotsync.failover_slot_snapshot('ps_fo');
SELECT count(*) FROM pg_slotsync.failover_slot_snapshot('no_such_slot');
SELECT * FROM pg_slotsync.failover_slot_snapshot(NULL);
-- many at once: a row per existing slot, in the order asked
SELECT slot_name, restart_lsn = (SELECT restart_lsn FROM pg_replication_slots s
                                 WHERE s.slot_name = f.slot_name) AS at_restart,
       snapshot IS NULL AS no_snapshot
FROM pg_slotsync.failover_slot_snapshots(ARRAY['ps_plain', 'no_such_slot', 'ps_fo']) f;
SELECT count(*) FROM pg_slotsync.failover_slot_snapshots('{}');
SELECT * FROM pg_slotsync.failover_slot_snapshots(NULL);

-- standby-only: refused on a primary, in core's words
SELECT pg_slotsync.sync_replication_slots();
SELECT count(*) AS known_to_sync FROM pg_slotsync.sync_status;
-- a primary is never "ready for failover" as a standby
SELECT pid IS NULL AS no_worker, process, state, cycles, errors FROM pg_slotsync.sync_worker;
SELECT slot_name, ready, state, reason_code, reason FROM pg_slotsync.failover_readiness();

-- privileges: the worker's user needs REPLICATION
CREATE ROLE slotsync_plain LOGIN;
SET ROLE slotsync_plain;
SELECT count(*) FROM pg_slotsync.failover_slots();
SELECT count(*) FROM pg_slotsync.wait_for_failover_slot_change('standby_slot', NULL, 0);
SELECT count(*) FROM pg_slotsync.failover_slot_snapshot('ps_fo');
SELECT count(*) FROM pg_slotsync.failover_slot_snapshots(ARRAY['ps_fo']);
SELECT pg_slotsync.sync_replication_slots();
RESET ROLE;
DROP ROLE slotsync_plain;

SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots ORDER BY slot_name;
