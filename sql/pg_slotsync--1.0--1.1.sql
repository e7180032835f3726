/* pg_slotsync--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_slotsync UPDATE TO '1.1'" to load this file. \quit

-- Objects added or changed in 1.1.  Every change here is mirrored in
-- pg_slotsync--1.1.sql; test/sql/upgrade.sql checks that an updated
-- installation has exactly the objects of a fresh one.

-- Every failover slot has an incarnation id: a slot dropped and created
-- again under the same name is another slot, and a standby's copy of the
-- old one must not pass for a copy of the new one.  The column comes last,
-- so that a standby still running the 1.0 library reads what it expects.
DROP FUNCTION pg_slotsync.failover_slots();
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

-- The standby fetches the snapshots of all slots that need one at once.
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

-- sync_status shows each slot's incarnation.
DROP VIEW pg_slotsync.sync_status;
DROP FUNCTION pg_slotsync.sync_status_rows();
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
