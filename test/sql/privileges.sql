-- Privileges follow core: superuser or REPLICATION to act on slots; anyone
-- may read the view.
CREATE ROLE slotsync_nobody LOGIN;
CREATE ROLE slotsync_repl LOGIN REPLICATION;

SELECT slot_name FROM pg_slotsync.create_logical_replication_slot('priv_slot', 'test_decoding');

SET ROLE slotsync_nobody;
SELECT * FROM pg_slotsync.create_logical_replication_slot('nobody_slot', 'test_decoding', failover => true);
SELECT pg_slotsync.alter_replication_slot('priv_slot', true);
SELECT slot_name, failover FROM pg_slotsync.replication_slots;
SELECT pg_slotsync.wait_for_failover_ready('0');
RESET ROLE;
SELECT count(*) AS nobody_slots FROM pg_replication_slots WHERE slot_name = 'nobody_slot';

SET ROLE slotsync_repl;
SELECT slot_name FROM pg_slotsync.create_logical_replication_slot('repl_slot', 'test_decoding', failover => true);
SELECT pg_slotsync.alter_replication_slot('priv_slot', true);
SELECT slot_name, failover FROM pg_slotsync.replication_slots ORDER BY 1;
-- allowed, but a primary is never ready for failover
SELECT pg_slotsync.wait_for_failover_ready('0');
RESET ROLE;

-- every function pins its search_path
SELECT p.proname, p.proconfig
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'pg_slotsync' ORDER BY 1;

-- a hostile search_path does not change what the view means
CREATE SCHEMA evil;
CREATE FUNCTION evil.texteq_hijack(name, name) RETURNS bool
    LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = name, PROCEDURE = evil.texteq_hijack);
SET search_path = evil, pg_catalog;
SELECT count(*) AS rows_seen FROM pg_slotsync.replication_slots;
RESET search_path;
DROP SCHEMA evil CASCADE;

SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots ORDER BY slot_name;
DROP ROLE slotsync_nobody;
DROP ROLE slotsync_repl;
