/*-------------------------------------------------------------------------
 *
 * sync_cycle_int.h
 *		What the parts of a sync cycle share: the per-slot memory of a
 *		syncing session, one slot's way through a cycle, and what every
 *		slot's decision shares within a cycle.
 *
 * sync_cycle.c runs the cycle; sync_session.c keeps the session and its
 * per-slot memory; sync_slots.c takes the cycle's slots through it, within
 * its budget; sync_slot_step.c decides and acts for one slot.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_CYCLE_INT_H
#define SYNC_CYCLE_INT_H

#include "slot_sync.h"

/* What a syncing process remembers about each slot between cycles. */
typedef struct SlotMemory
{
	NameData	name;			/* hash key */
	RemoteSlot	remote;			/* the primary's slot, as last reported */
	bool		settled;		/* the copy equalled it at the last look */
	dlist_node	unsettled_node; /* in the session's list while not */
	bool		had_copy;		/* we made or kept a local copy */
	bool		listed;			/* listed by the primary */
	XLogRecPtr	fileless_lsn;	/* primary has no snapshot file here */
	SyncReason	last_reason;	/* last kind of reason logged */
	TimestampTz synced_at;		/* last time the copy equalled the slot */
	MarkerCacheEntry marker;	/* saves reading the marker every cycle */
	int			slot_index;		/* where its copy was last found, see
								 * slot_copy_named_hinted() */
	int			status_index;	/* where its status entry was last */
	uint64		reported_in;	/* the last cycle the primary reported it */
} SlotMemory;

/* One listed slot's way through a cycle. */
typedef struct SlotWork
{
	const RemoteSlot *remote;
	SlotMemory *mem;
	Oid			dboid;
	SyncPlan	plan;
	bool		changed;		/* a side effect happened this cycle */
	bool		synced_now;		/* the copy equals the primary's slot */
	bool		deferred;		/* its costly step waits for a later cycle */
	LocalSlot	copy;			/* the local copy, as decided on */
	RemoteSlot	confirmed_only; /* see slot_step_move_confirmed_first() */
	const RemoteSnapshot *snapshot; /* what the primary sent, if asked */
} SlotWork;

/* What every slot's decision shares within one cycle. */
typedef struct CycleContext
{
	SyncSession *session;
	const PrimaryInfo *info;
	XLogRecPtr	standby_flush;
	XLogRecPtr	standby_replay;
	XLogRecPtr	protected_from;
	int			free_slots;
	LocalHistory history;		/* the standby's past, looked at if needed */
	XLogRecPtr	history_fetched_from;	/* this cycle's fetch, if it worked */
	char	   *history_failure;	/* ... or why it did not */
	SyncCycleResult *result;
} CycleContext;

/* sync_session.c */
extern void session_slot_memory_init(SyncSession *session);
extern SlotMemory *session_slot_memory(SyncSession *session, const char *name);
extern void session_slot_settle(SyncSession *session, SlotMemory *mem,
								bool settled);
extern void session_slot_requeue(SyncSession *session, SlotMemory *mem);
extern void session_slot_forget(SyncSession *session, SlotMemory *mem);

/* sync_slots.c */
extern RemoteFailure sync_slots(CycleContext *cy, bool all, StringInfo err);

/* sync_slot_step.c */
extern Oid	slot_step_database(const RemoteSlot *remote);
extern void slot_step_decide(CycleContext *cy, SlotWork *w);
extern bool slot_step_is_costly(const SlotWork *w);
extern void slot_step_move_confirmed_first(CycleContext *cy, SlotWork *w);
extern void slot_step_run(CycleContext *cy, SlotWork *w);
extern void slot_step_record(CycleContext *cy, SlotWork *w);

#endif							/* SYNC_CYCLE_INT_H */
