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

/* Settings (declared once, in pg_slotsync.c's _PG_init). */
extern char *pg_slotsync_failover_slot_patterns;
extern char *pg_slotsync_synchronized_standby_slots;

/*
 * Shared state of the whole extension.  Only a counter for now: it moves
 * whenever a failover flag is set or cleared, so that a process caching a
 * slot's failover status (the walsender gate) knows when to look again.
 */
typedef struct SlotSyncShared
{
	pg_atomic_uint64 marker_generation;
} SlotSyncShared;

extern SlotSyncShared *SlotSyncState;

/* slot_funcs.c */
extern void slot_funcs_subxact_callback(SubXactEvent event,
										SubTransactionId mySubid,
										SubTransactionId parentSubid,
										void *arg);

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
