/*-------------------------------------------------------------------------
 *
 * pg_slotsync.c
 *		Module entry point: settings, shared memory and hooks.
 *
 * pg_slotsync brings PostgreSQL 17's failover slots to PostgreSQL 15.
 *
 * The pieces, each in its own file:
 *
 *	- slot_marker.c: a failover (and later "synced") flag for a logical slot,
 *	  stored in a small file inside the slot's own directory so that it lives
 *	  and dies with the slot, whoever drops it and however.
 *	- failover_patterns.c: pg_slotsync.failover_slot_patterns, LIKE patterns
 *	  that make slots failover slots by name, for tools that create slots
 *	  through the replication protocol (which has no FAILOVER option in 15).
 *	- slot_funcs.c: the SQL functions that create and alter failover slots
 *	  and report per-slot state for the pg_slotsync.replication_slots view.
 *	- primary_funcs.c: what a standby asks the primary: its failover slots,
 *	  a long-poll for their changes, and serialized snapshots.
 *	- failover_slot_moves.c: a counter and condition variable that say when
 *	  a failover slot moved, for the standbys' long-poll on the primary.
 *	- standby_gate*.c, standby_slots_guc.c:
 *	  pg_slotsync.synchronized_standby_slots, which holds back consumers of
 *	  failover slots on the primary until the listed standbys have the WAL.
 *	- sync_worker.c (launcher, worker, manual sync), sync_cycle.c (one pass),
 *	  sync_slots.c (its slots, within a budget), sync_decide.c (what is
 *	  safe), sync_apply.c (doing it), sync_remote.c (libpq), sync_status.c
 *	  (per-slot state for the views): the standby.
 *
 * The library must be in shared_preload_libraries on every node, primary
 * and standbys: it reserves shared memory and its settings must exist in
 * every process, walsenders included.  The SQL objects come from
 * CREATE EXTENSION pg_slotsync, in schema pg_slotsync.
 *
 * Hooks are chained through saved prev_* pointers, as contrib modules do,
 * so other preloaded modules keep working.  Shared memory has one
 * shmem_request/shmem_startup pair for the whole library, here: it asks
 * each module for its size and has it create its part.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "failover_slot_moves.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "slot_sync.h"
#include "standby_gate.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* settings */
char	   *pg_slotsync_failover_slot_patterns = NULL;
bool		pg_slotsync_sync_enabled = false;
char	   *pg_slotsync_primary_conninfo = NULL;
char	   *pg_slotsync_primary_dbname = NULL;
int			pg_slotsync_stale_after = 30000;
int			pg_slotsync_max_wal_fetch = 1024;
int			pg_slotsync_stale_slot_policy = STALE_SLOTS_REPLACE;
int			pg_slotsync_stale_slot_grace = 600;
char	   *pg_slotsync_synchronized_standby_slots = NULL;

static const struct config_enum_entry stale_slots_options[] = {
	{"replace", STALE_SLOTS_REPLACE, false},
	{"keep", STALE_SLOTS_KEEP, false},
	{NULL, 0, false}
};

/* shared memory */
SlotSyncShared *SlotSyncState = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
slotsync_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(SlotSyncShared));

	size = add_size(size, MAXALIGN(slot_sync_status_shmem_size()));
	size = add_size(size, MAXALIGN(worker_status_shmem_size()));
	size = add_size(size, sync_stale_shmem_size());
	return size;
}

static void
slotsync_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(slotsync_shmem_size());
	RequestAddinShmemSpace(standby_gate_shmem_size());
	RequestAddinShmemSpace(failover_slot_moves_shmem_size());
	RequestNamedLWLockTranche(PG_SLOTSYNC_NAME, PG_SLOTSYNC_NUM_LWLOCKS);
}

static void
slotsync_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	SlotSyncState = ShmemInitStruct("pg_slotsync", slotsync_shmem_size(),
									&found);
	if (!found)
	{
		memset(SlotSyncState, 0, slotsync_shmem_size());
		pg_atomic_init_u64(&SlotSyncState->marker_generation, 0);
		SlotSyncState->marker_lock =
			&(GetNamedLWLockTranche(PG_SLOTSYNC_NAME))[PG_SLOTSYNC_LWLOCK_MARKER].lock;
	}
	slot_sync_status_shmem_init((char *) SlotSyncState +
								MAXALIGN(sizeof(SlotSyncShared)), found);
	worker_status_shmem_init((char *) SlotSyncState +
							 MAXALIGN(sizeof(SlotSyncShared)) +
							 MAXALIGN(slot_sync_status_shmem_size()), found);
	sync_stale_shmem_init((char *) SlotSyncState +
						  MAXALIGN(sizeof(SlotSyncShared)) +
						  MAXALIGN(slot_sync_status_shmem_size()) +
						  MAXALIGN(worker_status_shmem_size()), found);
	standby_gate_shmem_init();
	failover_slot_moves_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	/*
	 * Loaded any other way, we would have no shared memory and no worker,
	 * and the flags we hand out would not be honoured: refuse clearly.
	 */
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_slotsync must be loaded via \"shared_preload_libraries\""),
				 errhint("Add pg_slotsync to \"shared_preload_libraries\" on the primary and on every standby, and restart the server.")));

	DefineCustomStringVariable("pg_slotsync.failover_slot_patterns",
							   "Makes logical slots whose names match these LIKE patterns failover slots.",
							   "A comma-separated list of SQL LIKE patterns, for slots created through the replication protocol. Applies on a primary.",
							   &pg_slotsync_failover_slot_patterns,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_failover_slot_patterns,
							   assign_failover_slot_patterns,
							   NULL);

	DefineCustomBoolVariable("pg_slotsync.sync_replication_slots",
							 "Keeps failover slots of the primary synchronized on this standby.",
							 "Like PostgreSQL 17's sync_replication_slots. Needs hot_standby_feedback, primary_slot_name, and a dbname in primary_conninfo.",
							 &pg_slotsync_sync_enabled,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("pg_slotsync.primary_conninfo",
							   "Connection string the slot sync worker uses instead of primary_conninfo.",
							   "For HA tools that rewrite primary_conninfo without a dbname. Empty means primary_conninfo.",
							   &pg_slotsync_primary_conninfo,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("pg_slotsync.stale_after",
							"How long a ready copy may go without being confirmed equal to the primary's slot before it is reported stale.",
							"A stale copy is still kept at promotion; the views and pg_slotsync.failover_readiness() no longer call it ready.",
							&pg_slotsync_stale_after,
							30000, 1000, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_slotsync.max_wal_fetch",
							"How much WAL the standby may fetch from the primary to make a copy of an older slot ready.",
							"For a failover slot older than the standby's sync, the WAL from its restart_lsn that the standby lacks is fetched from the primary. 0 disables fetching: such copies wait for their consumer.",
							&pg_slotsync_max_wal_fetch,
							1024, 0, INT_MAX / 1024,
							PGC_SIGHUP,
							GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomStringVariable("pg_slotsync.primary_dbname",
							   "Database on the primary the slot sync worker connects to, with the standby's own primary_conninfo.",
							   "For HA tools (Patroni, repmgr) that write primary_conninfo without a dbname: the worker follows whatever primary the walreceiver follows. Ignored when pg_slotsync.primary_conninfo is set.",
							   &pg_slotsync_primary_dbname,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomEnumVariable("pg_slotsync.stale_slots",
							 "What becomes of logical slots on a syncing standby that were not synchronized: leftovers from when it was a primary.",
							 "replace: one with the name of a failover slot of the primary is dropped and the primary's slot synchronized in its place; the others are dropped after pg_slotsync.stale_slot_grace. keep: they stay, and are reported.",
							 &pg_slotsync_stale_slot_policy,
							 STALE_SLOTS_REPLACE,
							 stale_slots_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("pg_slotsync.stale_slot_grace",
							"How long a stale logical slot that is not a failover slot of the primary stays on a syncing standby before it is dropped.",
							"Applies when pg_slotsync.stale_slots is replace; counted from when the slot sync worker first saw the slot.",
							&pg_slotsync_stale_slot_grace,
							600, 0, INT_MAX / 1000,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("pg_slotsync.synchronized_standby_slots",
							   "Physical slots of the standbys that must confirm WAL before consumers of failover slots receive it.",
							   "Like PostgreSQL 17's synchronized_standby_slots: a list of slot names (all must confirm), or FIRST n (names) or ANY n (names). Applies on a primary.",
							   &pg_slotsync_synchronized_standby_slots,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   check_synchronized_standby_slots,
							   assign_synchronized_standby_slots,
							   NULL);

	RegisterSubXactCallback(slot_funcs_subxact_callback, NULL);

	slot_sync_register_launcher();

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = slotsync_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = slotsync_shmem_startup;

	standby_gate_install_hooks();
	failover_slot_moves_install();

	/* after every module defined its settings */
	MarkGUCPrefixReserved(PG_SLOTSYNC_NAME);
}
