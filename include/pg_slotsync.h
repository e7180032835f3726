/*-------------------------------------------------------------------------
 *
 * pg_slotsync.h
 *		Declarations shared by the pieces of pg_slotsync: its settings, its
 *		shared memory, and the entry points each source file offers.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_SLOTSYNC_H
#define PG_SLOTSYNC_H

#include "access/xact.h"
#include "port/atomics.h"
#include "replication/slot.h"
#include "utils/guc.h"

/* Prefix of every setting, and the name of the extension's schema. */
#define PG_SLOTSYNC_NAME "pg_slotsync"

/* Our LWLocks, in the tranche named PG_SLOTSYNC_NAME */
#define PG_SLOTSYNC_LWLOCK_STATUS	0	/* per-slot sync status (sync_status.c) */
#define PG_SLOTSYNC_LWLOCK_MARKER	1	/* marker updates (slot_marker.c) */
#define PG_SLOTSYNC_NUM_LWLOCKS		2

/* Settings (declared once, in pg_slotsync.c's _PG_init). */
extern char *pg_slotsync_failover_slot_patterns;
extern char *pg_slotsync_synchronized_standby_slots;

/*
 * Shared state of the whole extension: marker_generation moves whenever a
 * marker is written (a failover flag set or cleared, a copy made ready), so
 * that a process caching markers knows when to look again; marker_lock
 * serializes read-modify-write updates of markers (slot_marker.c).
 */
typedef struct SlotSyncShared
{
	pg_atomic_uint64 marker_generation;
	LWLock	   *marker_lock;
} SlotSyncShared;

extern SlotSyncShared *SlotSyncState;

/* slot_funcs.c */
extern void slot_funcs_subxact_callback(SubXactEvent event,
										SubTransactionId mySubid,
										SubTransactionId parentSubid,
										void *arg);

/* primary_funcs.c */
extern void check_caller_may_sync(void);

/* failover_patterns.c */
extern bool check_failover_slot_patterns(char **newval, void **extra,
										 GucSource source);
extern void assign_failover_slot_patterns(const char *newval, void *extra);
extern bool failover_patterns_match(const char *slot_name);
extern bool slot_like_match(const char *name, const char *pattern);
extern bool slot_counts_as_failover(const char *slot_name, bool is_logical,
									ReplicationSlotPersistency persistency,
									uint32 marker_flags, bool in_recovery);

#endif							/* PG_SLOTSYNC_H */
