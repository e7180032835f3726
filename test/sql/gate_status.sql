-- pg_slotsync.gate_status(): the self-check at startup passed, the setting
-- is empty here, nothing waits, and nothing was refused.
SELECT configured, mechanisms, self_check, refused, waiting_walsenders,
       waiting_backends, waiting_slots, oldest_wait_start
FROM pg_slotsync.gate_status();

-- the SQL decoding functions attach the gate to their reader
SELECT attached AS attached_before FROM pg_slotsync.gate_status() \gset
SELECT slot_name FROM pg_slotsync.create_logical_replication_slot('gs_fo', 'test_decoding', failover => true);
SELECT count(*) >= 0 AS decoded FROM pg_logical_slot_get_changes('gs_fo', NULL, NULL);
SELECT attached > :attached_before AS attached_to_decoding FROM pg_slotsync.gate_status();
SELECT pg_drop_replication_slot('gs_fo');

-- anyone may call it, as anyone may read pg_replication_slots
CREATE ROLE slotsync_gate_plain LOGIN;
SET ROLE slotsync_gate_plain;
SELECT configured FROM pg_slotsync.gate_status();
RESET ROLE;
DROP ROLE slotsync_gate_plain;
