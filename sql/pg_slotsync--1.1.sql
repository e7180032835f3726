/* pg_slotsync--1.1.sql */

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
    OUT synced boolean,
    OUT sync_state text,
    OUT sync_reason text,
    OUT last_sync_time timestamptz)
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
       COALESCE(i.synced, false) AS synced,
       i.sync_state,
       i.sync_reason,
       i.last_sync_time
FROM pg_catalog.pg_replication_slots s
LEFT JOIN pg_slotsync.slot_info() i
       ON i.slot_name OPERATOR(pg_catalog.=) s.slot_name;

COMMENT ON VIEW pg_slotsync.replication_slots
IS 'pg_replication_slots with failover and sync state';

-- Standby side: what the sync worker knows of each failover slot.
CREATE FUNCTION pg_slotsync.sync_status_rows(
    OUT slot_name name,
    OUT database text,
    OUT incarnation bigint,
    OUT state text,
    OUT reason_code text,
    OUT reason text,
    OUT remote_restart_lsn pg_catalog.pg_lsn,
    OUT remote_confirmed_flush_lsn pg_catalog.pg_lsn,
    OUT remote_catalog_xmin xid,
    OUT last_sync_time timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_slotsync_sync_status_1_1'
LANGUAGE C STABLE STRICT
SET search_path = pg_catalog, pg_temp;

CREATE VIEW pg_slotsync.sync_status AS
SELECT * FROM pg_slotsync.sync_status_rows();

COMMENT ON VIEW pg_slotsync.sync_status
IS 'per failover slot of the primary: whether this standby''s copy is ready, and why not';

-- Standby side: synchronize by hand.
CREATE FUNCTION pg_slotsync.sync_replication_slots(timeout interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_slotsync_sync_replication_slots'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.sync_replication_slots(interval)
IS 'synchronize failover slots from the primary now, waiting until they are sync-ready';

-- Primary side: what a standby's sync worker asks.  Superuser or
-- REPLICATION is checked inside, as for core's slot functions.
CREATE FUNCTION pg_slotsync.failover_slots(
    OUT slot_name name,
    OUT plugin name,
    OUT database text,
    OUT two_phase boolean,
    OUT two_phase_at pg_catalog.pg_lsn,
    OUT restart_lsn pg_catalog.pg_lsn,
    OUT confirmed_flush_lsn pg_catalog.pg_lsn,
    OUT catalog_xmin xid,
    OUT invalidated boolean,
    OUT incarnation bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_slotsync_failover_slots_1_1'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.failover_slots()
IS 'failover slots of this server, as a standby copies them';

CREATE FUNCTION pg_slotsync.wait_for_failover_slot_change(
    standby_slot_name name,
    last_token bigint,
    timeout_ms integer,
    OUT change_token bigint,
    OUT in_recovery boolean,
    OUT wal_level_logical boolean,
    OUT standby_slot_is_physical boolean,
    OUT standby_slot_restart_lsn pg_catalog.pg_lsn,
    OUT standby_slot_catalog_xmin xid)
RETURNS record
AS 'MODULE_PATHNAME', 'pg_slotsync_wait_for_failover_slot_change'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.wait_for_failover_slot_change(name, bigint, integer)
IS 'wait until a failover slot or the standby''s physical slot changes';

CREATE FUNCTION pg_slotsync.failover_slot_snapshot(
    slot_name name,
    OUT restart_lsn pg_catalog.pg_lsn,
    OUT snapshot bytea)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_slotsync_failover_slot_snapshot'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.failover_slot_snapshot(name)
IS 'the serialized snapshot at a slot''s restart_lsn, for a standby''s copy';

CREATE FUNCTION pg_slotsync.failover_slot_snapshots(
    slot_names name[],
    OUT slot_name name,
    OUT restart_lsn pg_catalog.pg_lsn,
    OUT snapshot bytea)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_slotsync_failover_slot_snapshots'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.failover_slot_snapshots(name[])
IS 'the serialized snapshots at the restart_lsn of many slots, for a standby''s copies';

-- Primary side: the gate of pg_slotsync.synchronized_standby_slots, for
-- monitoring.  Anyone may call it (slot names and counts, no pids).
CREATE FUNCTION pg_slotsync.gate_status(
    OUT configured boolean,
    OUT mechanisms text[],
    OUT self_check text,
    OUT attached bigint,
    OUT refused bigint,
    OUT waiting_walsenders integer,
    OUT waiting_backends integer,
    OUT waiting_slots name[],
    OUT oldest_wait_start timestamptz,
    OUT failover_slot_moves bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'pg_slotsync_gate_status'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.gate_status()
IS 'the gate of synchronized_standby_slots: mechanisms ready, consumers attached, refused and waiting';

-- As in core: anyone may look at slots; acting on them is checked inside
-- the functions (superuser or REPLICATION).
GRANT USAGE ON SCHEMA pg_slotsync TO PUBLIC;
GRANT SELECT ON pg_slotsync.replication_slots TO PUBLIC;
GRANT SELECT ON pg_slotsync.sync_status TO PUBLIC;

-- Standby side: the syncing process itself.
CREATE FUNCTION pg_slotsync.sync_worker_status(
    OUT pid integer,
    OUT process text,
    OUT state text,
    OUT started_at timestamptz,
    OUT last_sync_time timestamptz,
    OUT cycles bigint,
    OUT errors bigint,
    OUT last_error text,
    OUT last_error_time timestamptz,
    OUT primary_system_identifier bigint,
    OUT last_cycle_slots integer)
RETURNS record
AS 'MODULE_PATHNAME', 'pg_slotsync_sync_worker_status'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE VIEW pg_slotsync.sync_worker AS
SELECT * FROM pg_slotsync.sync_worker_status();

COMMENT ON VIEW pg_slotsync.sync_worker
IS 'the slot sync worker (or a manual sync): running, syncing, or why not';

-- Standby side: the one question a failover tool asks.
CREATE FUNCTION pg_slotsync.failover_readiness(
    OUT slot_name name,
    OUT ready boolean,
    OUT state text,
    OUT reason_code text,
    OUT reason text,
    OUT lag_bytes numeric,
    OUT last_sync_time timestamptz,
    OUT wal_flushed boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_slotsync_failover_readiness'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.failover_readiness()
IS 'is this standby failover-safe: a summary row (slot_name NULL), then one row per failover slot';

CREATE FUNCTION pg_slotsync.wait_for_failover_ready(
    timeout interval,
    slots text[] DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'pg_slotsync_wait_for_failover_ready'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.wait_for_failover_ready(interval, text[])
IS 'wait until every (or every named) failover slot has a sync-ready copy caught up with the primary''s position at the call';

-- Standby side: logical slots sync did not create (pg_slotsync.stale_slots)
CREATE FUNCTION pg_slotsync.stale_slots(
    OUT slot_name name,
    OUT database text,
    OUT plugin name,
    OUT restart_lsn pg_catalog.pg_lsn,
    OUT confirmed_flush_lsn pg_catalog.pg_lsn,
    OUT catalog_xmin xid,
    OUT wal_held_bytes numeric,
    OUT failover_slot_on_primary boolean,
    OUT first_seen timestamptz,
    OUT drop_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_slotsync_stale_slot_rows'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE VIEW pg_slotsync.stale_slots AS
    SELECT * FROM pg_slotsync.stale_slots();

COMMENT ON VIEW pg_slotsync.stale_slots
IS 'logical slots on this standby that were not synchronized: leftovers from when it was a primary, what they hold back, and when they will be dropped';

GRANT SELECT ON pg_slotsync.stale_slots TO PUBLIC;

GRANT SELECT ON pg_slotsync.sync_worker TO PUBLIC;

-- Primary side: what a standby fetches to make a copy of an older slot
-- ready (WAL it never had, rewrite mapping files it deleted).  Superuser
-- or REPLICATION is checked inside.
CREATE FUNCTION pg_slotsync.wal_segment_part(
    file_name text,
    "offset" integer,
    length integer)
RETURNS bytea
AS 'MODULE_PATHNAME', 'pg_slotsync_wal_segment_part'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.wal_segment_part(text, integer, integer)
IS 'bytes of a WAL segment file in pg_wal, for a standby completing its history';

CREATE FUNCTION pg_slotsync.logical_mapping_files(
    from_lsn pg_catalog.pg_lsn,
    OUT file_name text,
    OUT lsn pg_catalog.pg_lsn,
    OUT size bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_slotsync_logical_mapping_files'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.logical_mapping_files(pg_catalog.pg_lsn)
IS 'logical rewrite mapping files at or above an LSN';

CREATE FUNCTION pg_slotsync.logical_mapping_file(file_name text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'pg_slotsync_logical_mapping_file'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.logical_mapping_file(text)
IS 'one logical rewrite mapping file, for a standby completing its history';

-- Primary side: the long-poll of version 1.1, and only what changed.
CREATE FUNCTION pg_slotsync.wait_for_failover_slot_changes(
    standby_slot_name name,
    last_token bigint,
    timeout_ms integer,
    OUT change_token bigint,
    OUT full_list boolean,
    OUT in_recovery boolean,
    OUT wal_level_logical boolean,
    OUT standby_slot_is_physical boolean,
    OUT standby_slot_catalog_xmin xid,
    OUT system_identifier bigint,
    OUT timeline integer)
RETURNS record
AS 'MODULE_PATHNAME', 'pg_slotsync_wait_for_failover_slot_changes'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.wait_for_failover_slot_changes(name, bigint, integer)
IS 'wait until a failover slot or the standby''s physical slot differs from what this session last reported';

CREATE FUNCTION pg_slotsync.failover_slot_changes(
    OUT slot_name name,
    OUT removed boolean,
    OUT plugin name,
    OUT database_oid oid,
    OUT database text,
    OUT two_phase boolean,
    OUT two_phase_at pg_catalog.pg_lsn,
    OUT restart_lsn pg_catalog.pg_lsn,
    OUT confirmed_flush_lsn pg_catalog.pg_lsn,
    OUT catalog_xmin xid,
    OUT invalidated boolean,
    OUT incarnation bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_slotsync_failover_slot_changes'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pg_slotsync.failover_slot_changes()
IS 'the failover slots changed or gone since what this session last reported';
