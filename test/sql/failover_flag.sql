-- The failover flag on logical slots: creation, alteration, the view, and
-- every bad input, each leaving nothing behind.
CREATE EXTENSION pg_slotsync;

-- The view has every column of pg_replication_slots, in order, plus ours.
SELECT (SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute
        WHERE attrelid = 'pg_catalog.pg_replication_slots'::regclass AND attnum > 0)
       || ARRAY['failover', 'synced', 'sync_state', 'sync_reason', 'last_sync_time']::name[]
     = (SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute
        WHERE attrelid = 'pg_slotsync.replication_slots'::regclass AND attnum > 0)
       AS view_has_core_columns_plus_ours;

-- A failover slot and a plain one.
SELECT slot_name, lsn = (SELECT confirmed_flush_lsn FROM pg_replication_slots
                         WHERE slot_name = 'fo_slot') AS lsn_is_confirmed_flush
FROM pg_slotsync.create_logical_replication_slot('fo_slot', 'test_decoding',
                                                 failover => true);
SELECT slot_name FROM pg_slotsync.create_logical_replication_slot('plain_slot', 'test_decoding');
SELECT slot_name FROM pg_slotsync.create_logical_replication_slot('tp_slot', 'test_decoding',
                                                                  twophase => true, failover => true);
SELECT slot_name, slot_type, plugin, temporary, two_phase, failover, synced
FROM pg_slotsync.replication_slots ORDER BY slot_name;

-- The slots are real: they decode.
CREATE TABLE t (id int);
INSERT INTO t VALUES (1);
SELECT count(*) > 0 AS decoded FROM pg_logical_slot_get_changes('fo_slot', NULL, NULL);

-- Temporary slots: allowed without failover, refused with it.  (Any error
-- drops the session's temporary slots in PostgreSQL 15, so the refusals come
-- inside a block that catches them.)
SELECT slot_name FROM pg_slotsync.create_logical_replication_slot('temp_slot', 'test_decoding', true);
SELECT pg_slotsync.alter_replication_slot('temp_slot', false);
DO $$
BEGIN
    PERFORM pg_slotsync.alter_replication_slot('temp_slot', true);
EXCEPTION WHEN invalid_parameter_value THEN
    RAISE NOTICE 'refused: %', SQLERRM;
END
$$;
SELECT slot_name, temporary, failover FROM pg_slotsync.replication_slots
WHERE slot_name LIKE 'temp%' ORDER BY 1;
SELECT pg_drop_replication_slot('temp_slot');
SELECT * FROM pg_slotsync.create_logical_replication_slot('temp_fo_slot', 'test_decoding', true, false, true);
-- A refused creation inside a subtransaction (here an exception block)
-- leaves no half-built slot, temporary or not.
DO $$
BEGIN
    PERFORM pg_slotsync.create_logical_replication_slot('sub_temp', 'no_such_plugin', true);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'unknown plugin refused';
END
$$;
SELECT count(*) AS left_after_subxact FROM pg_replication_slots WHERE slot_name = 'sub_temp';

-- Altering: on, off, idempotent; the slot itself is untouched.
SELECT pg_slotsync.alter_replication_slot('plain_slot', true);
SELECT pg_slotsync.alter_replication_slot('plain_slot', true);
SELECT slot_name, failover FROM pg_slotsync.replication_slots WHERE slot_name = 'plain_slot';
SELECT pg_slotsync.alter_replication_slot('plain_slot', false);
SELECT slot_name, failover FROM pg_slotsync.replication_slots WHERE slot_name = 'plain_slot';

-- Altering works while the slot is in use by another session... here, a
-- temporary slot this session holds cannot get the flag, but a persistent
-- slot acquired by a running decoding call can (covered in TAP); a slot
-- that is active in this very session's SQL call is not possible to show.

-- Bad input to create: each is refused and leaves no slot behind.
SELECT * FROM pg_slotsync.create_logical_replication_slot(NULL, 'test_decoding');
SELECT * FROM pg_slotsync.create_logical_replication_slot('bad_1', NULL);
SELECT * FROM pg_slotsync.create_logical_replication_slot('bad_2', 'test_decoding', NULL);
SELECT * FROM pg_slotsync.create_logical_replication_slot('bad_3', 'test_decoding', false, NULL);
SELECT * FROM pg_slotsync.create_logical_replication_slot('bad_4', 'test_decoding', false, false, NULL);
SELECT * FROM pg_slotsync.create_logical_replication_slot('', 'test_decoding');
SELECT * FROM pg_slotsync.create_logical_replication_slot('Bad-Name', 'test_decoding');
SELECT * FROM pg_slotsync.create_logical_replication_slot(repeat('x', 64), 'test_decoding');
SELECT * FROM pg_slotsync.create_logical_replication_slot('fo_slot', 'test_decoding', failover => true);
SELECT * FROM pg_slotsync.create_logical_replication_slot('bad_5', '');
SELECT * FROM pg_slotsync.create_logical_replication_slot('bad_6', repeat('p', 64));
-- An unknown output plugin; core's wording differs between minor releases,
-- so report only that it was refused.
DO $$
BEGIN
    PERFORM pg_slotsync.create_logical_replication_slot('bad_7', 'no_such_plugin', failover => true);
    RAISE NOTICE 'unknown plugin accepted';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'unknown plugin refused';
END
$$;
SELECT count(*) AS leftover_slots FROM pg_replication_slots
WHERE slot_name LIKE 'bad%' OR slot_name = '' OR slot_name LIKE 'xxx%';
-- a name of exactly 63 characters is fine
SELECT length(slot_name) FROM pg_slotsync.create_logical_replication_slot(repeat('y', 63), 'test_decoding');
SELECT pg_drop_replication_slot(repeat('y', 63));

-- Bad input to alter.
SELECT pg_slotsync.alter_replication_slot(NULL, true);
SELECT pg_slotsync.alter_replication_slot('fo_slot', NULL);
SELECT pg_slotsync.alter_replication_slot('no_such_slot', true);
SELECT pg_slotsync.alter_replication_slot('', true);
SELECT pg_slotsync.alter_replication_slot(repeat('z', 64), true);
SELECT 'init' FROM pg_create_physical_replication_slot('phys_slot');
SELECT pg_slotsync.alter_replication_slot('phys_slot', true);
SELECT slot_name, slot_type, failover FROM pg_slotsync.replication_slots
WHERE slot_name = 'phys_slot';

-- The flag dies with its slot: a new slot of the same name starts without.
SELECT pg_drop_replication_slot('fo_slot');
SELECT slot_name FROM pg_slotsync.create_logical_replication_slot('fo_slot', 'test_decoding');
SELECT slot_name, failover FROM pg_slotsync.replication_slots WHERE slot_name = 'fo_slot';

-- Clean up.
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots ORDER BY slot_name;
DROP TABLE t;
