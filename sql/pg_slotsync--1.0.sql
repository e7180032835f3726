/* pg_slotsync--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pg_slotsync" to load this file. \quit

-- Everything lives in schema pg_slotsync, whatever schema CREATE EXTENSION
-- was given.  The "pg_" prefix is reserved for system schemas, so the
-- control file cannot name it; we create it here, as a member of the
-- extension, with the reservation lifted for this script only.
SET LOCAL allow_system_table_mods = on;
CREATE SCHEMA pg_slotsync;
RESET allow_system_table_mods;

-- Slot and plugin names are text, not name: name would silently truncate an
-- over-long value and create a slot called something else.
CREATE FUNCTION pg_slotsync.create_logical_replication_slot(
    slot_name text,
    plugin text,
    temporary boolean DEFAULT false,
    twophase boolean DEFAULT false,
    failover boolean DEFAULT false,
    OUT slot_name name,
    OUT lsn pg_catalog.pg_lsn)
RETURNS record
AS 'MODULE_PATHNAME', 'pg_slotsync_create_logical_replication_slot'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.create_logical_replication_slot(text, text, boolean, boolean, boolean)
IS 'create a logical replication slot, optionally a failover slot';

CREATE FUNCTION pg_slotsync.alter_replication_slot(
    slot_name text,
    failover boolean)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_slotsync_alter_replication_slot'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.alter_replication_slot(text, boolean)
IS 'set or clear the failover flag of an existing logical replication slot';

CREATE FUNCTION pg_slotsync.slot_info(
    OUT slot_name name,
    OUT failover boolean,
    OUT synced boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_slotsync_slot_info'
LANGUAGE C STABLE STRICT
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.slot_info()
IS 'pg_slotsync state of every replication slot';

CREATE VIEW pg_slotsync.replication_slots AS
SELECT s.slot_name,
       s.plugin,
       s.slot_type,
       s.datoid,
       s.database,
       s.temporary,
       s.active,
       s.active_pid,
       s.xmin,
       s.catalog_xmin,
       s.restart_lsn,
       s.confirmed_flush_lsn,
       s.wal_status,
       s.safe_wal_size,
       s.two_phase,
       COALESCE(i.failover, false) AS failover,
       COALESCE(i.synced, false) AS synced
FROM pg_catalog.pg_replication_slots s
LEFT JOIN pg_slotsync.slot_info() i
       ON i.slot_name OPERATOR(pg_catalog.=) s.slot_name;

COMMENT ON VIEW pg_slotsync.replication_slots
IS 'pg_replication_slots with failover and sync state';

-- As in core: anyone may look at slots; acting on them is checked inside
-- the functions (superuser or REPLICATION).
GRANT USAGE ON SCHEMA pg_slotsync TO PUBLIC;
GRANT SELECT ON pg_slotsync.replication_slots TO PUBLIC;
