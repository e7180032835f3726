/* pg_slotsync--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_slotsync UPDATE TO '1.1'" to load this file. \quit

-- Objects added or changed in 1.1.  Every change here is mirrored in
-- pg_slotsync--1.1.sql; test/sql/upgrade.sql checks that an updated
-- installation has exactly the objects of a fresh one.

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
