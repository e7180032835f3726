/*-------------------------------------------------------------------------
 *
 * failover_slot_moves.c
 *		A counter of "failover slot moves" and a condition variable, in
 *		shared memory, for watchers of the failover slots on a primary.
 *
 * The standbys' long-poll on the primary waits until a failover slot
 * changes.  Scanning the slot array every few milliseconds costs CPU that
 * grows with the number of slots; instead the processes that move failover
 * slots say so here, and the long-poll sleeps on the condition variable,
 * with a slow safety poll behind it for the paths that do not say so.
 * include/failover_slot_moves.h lists exactly which paths broadcast and
 * which do not.
 *
 * The counter is a pg_atomic_uint64 that is incremented (with full memory
 * barrier) before the broadcast, so a watcher that reads it, then prepares
 * to sleep, then reads it again before sleeping cannot miss a move: either
 * the second read sees the new value or the broadcast comes after the
 * watcher is on the condition variable's list.
 *
 * Which slot moved.  With thousands of failover slots, looking at all of
 * them at every move costs more than anything else a watcher does, so a
 * move is attributed to its slot where the mover knows it: each entry of
 * the server's slot array has a counter of its own here, bumped (full
 * barrier) after the slot's new values are in place and before the shared
 * counter.  A watcher that reads the shared counter, then the per-slot
 * counters, looks only at the slots whose counter differs from what it
 * read last; a slot bumped after its per-slot counter was read is bumped
 * in the shared counter after it was read too, so the watcher looks again.
 * A move nobody can attribute (a slot created, copied or dropped, the
 * failover flag changed, more slots decoded in one transaction than it
 * notes) bumps the "unattributed" counter instead, and a watcher looks at
 * every slot then.
 *
 * Who calls failover_slot_moved():
 *
 *	- logical walsenders, when their failover slot's position changed: at
 *	  each page read and in each round of their waits
 *	  (standby_gate_walsender.c);
 *	- the SQL functions' decoding and advancing: the gate's reader notes the
 *	  failover slot a backend decodes and its position when decoding starts
 *	  (failover_slot_moves_note_decoding()); at the end of the transaction
 *	  our callback compares the slot's position with that note and
 *	  broadcasts if it moved or the slot is gone.  Nothing happens per page
 *	  or per change; the transaction callback costs one test of a flag in
 *	  every other transaction.  It takes ReplicationSlotControlLock shared
 *	  and reads the slots' spinlocks, which is allowed after commit; it
 *	  raises no error;
 *	- slot_funcs.c, when a failover flag is set or cleared;
 *	- core's SQL functions that create, copy or drop slots, when they
 *	  return (an fmgr hook), and walsenders that complete a
 *	  CREATE_REPLICATION_SLOT or DROP_REPLICATION_SLOT command
 *	  (standby_gate_walsender.c): a slot that is a failover slot by its name
 *	  came, or any failover slot went;
 *	- physical walsenders whose slot's catalog_xmin moved
 *	  (standby_gate_walsender.c).
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "failover_slot_moves.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "fmgr.h"

static needs_fmgr_hook_type prev_needs_fmgr_hook = NULL;
static fmgr_hook_type prev_fmgr_hook = NULL;

/* How many slots one transaction's note can tell apart. */
#define MAX_NOTED_SLOTS		4

typedef struct FailoverSlotMovesShared
{
	pg_atomic_uint64 moves;
	pg_atomic_uint64 unattributed;	/* moves of no known slot */
	ConditionVariable moved_cv;
	/* per entry of ReplicationSlotCtl->replication_slots */
	pg_atomic_uint32 slot_moves[FLEXIBLE_ARRAY_MEMBER];
} FailoverSlotMovesShared;

/* A failover slot decoded in this transaction, as it was then. */
typedef struct NotedSlot
{
	NameData	name;
	XLogRecPtr	confirmed_flush;
	XLogRecPtr	restart_lsn;
	TransactionId catalog_xmin;
} NotedSlot;

static FailoverSlotMovesShared *MovesState = NULL;

static NotedSlot noted[MAX_NOTED_SLOTS];
static int	nnoted = 0;
static bool noted_overflow = false;

Size
failover_slot_moves_shmem_size(void)
{
	return MAXALIGN(add_size(offsetof(FailoverSlotMovesShared, slot_moves),
							 mul_size(sizeof(pg_atomic_uint32),
									  Max(max_replication_slots, 1))));
}

/*
 * Called from pg_slotsync.c's shmem_startup hook, with AddinShmemInitLock
 * held.
 */
void
failover_slot_moves_shmem_init(void)
{
	bool		found;

	MovesState = ShmemInitStruct("pg_slotsync failover slot moves",
								 failover_slot_moves_shmem_size(), &found);
	if (!found)
	{
		pg_atomic_init_u64(&MovesState->moves, 0);
		pg_atomic_init_u64(&MovesState->unattributed, 0);
		ConditionVariableInit(&MovesState->moved_cv);
		for (int i = 0; i < max_replication_slots; i++)
			pg_atomic_init_u32(&MovesState->slot_moves[i], 0);
	}
}

uint64
failover_slot_moves_read(void)
{
	return pg_atomic_read_u64(&MovesState->moves);
}

uint64
failover_slot_moves_unattributed(void)
{
	return pg_atomic_read_u64(&MovesState->unattributed);
}

/* The move counter of entry "i" of the server's slot array. */
uint32
failover_slot_moves_of(int i)
{
	return pg_atomic_read_u32(&MovesState->slot_moves[i]);
}

ConditionVariable *
failover_slot_moved_cv(void)
{
	return &MovesState->moved_cv;
}

/*
 * A failover slot moved (or appeared, or changed its flag), and which one
 * is not known: tell watchers to look at every slot.
 */
void
failover_slot_moved(void)
{
	if (MovesState == NULL)
		return;
	pg_atomic_fetch_add_u64(&MovesState->unattributed, 1);
	pg_atomic_fetch_add_u64(&MovesState->moves, 1);
	ConditionVariableBroadcast(&MovesState->moved_cv);
}

/* A move of "slot", whose new values are in place: tell watchers. */
void
failover_slot_moved_slot(ReplicationSlot *slot)
{
	int			i = slot - ReplicationSlotCtl->replication_slots;

	if (MovesState == NULL)
		return;
	pg_atomic_fetch_add_u32(&MovesState->slot_moves[i], 1);
	pg_atomic_fetch_add_u64(&MovesState->moves, 1);
	ConditionVariableBroadcast(&MovesState->moved_cv);
}

/*
 * This backend is about to decode or advance "slot", a failover slot:
 * remember where it is, to compare at the end of the transaction.
 */
void
failover_slot_moves_note_decoding(ReplicationSlot *slot)
{
	NotedSlot  *entry;

	for (int i = 0; i < nnoted; i++)
		if (strcmp(NameStr(noted[i].name), NameStr(slot->data.name)) == 0)
			return;				/* the earliest position is the one to keep */

	if (nnoted == MAX_NOTED_SLOTS)
	{
		noted_overflow = true;
		return;
	}

	entry = &noted[nnoted++];
	namestrcpy(&entry->name, NameStr(slot->data.name));
	SpinLockAcquire(&slot->mutex);
	entry->confirmed_flush = slot->data.confirmed_flush;
	entry->restart_lsn = slot->data.restart_lsn;
	entry->catalog_xmin = slot->data.catalog_xmin;
	SpinLockRelease(&slot->mutex);
}

/*
 * Tell watchers of each noted slot that moved; one that vanished is an
 * unattributed move.
 */
static void
tell_noted_slots_moved(void)
{
	bool		vanished = false;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < nnoted; i++)
	{
		ReplicationSlot *slot;
		bool		moved;

		slot = SearchNamedReplicationSlot(NameStr(noted[i].name), false);
		if (slot == NULL)
		{
			vanished = true;
			continue;
		}
		SpinLockAcquire(&slot->mutex);
		moved = slot->data.confirmed_flush != noted[i].confirmed_flush ||
			slot->data.restart_lsn != noted[i].restart_lsn ||
			slot->data.catalog_xmin != noted[i].catalog_xmin;
		SpinLockRelease(&slot->mutex);
		if (moved)
			failover_slot_moved_slot(slot);
	}
	LWLockRelease(ReplicationSlotControlLock);
	if (vanished)
		failover_slot_moved();
}

static void
moves_xact_callback(XactEvent event, void *arg)
{
	if (nnoted == 0 && !noted_overflow)
		return;
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PREPARE)
		return;

	if (noted_overflow)
		failover_slot_moved();
	else
		tell_noted_slots_moved();
	nnoted = 0;
	noted_overflow = false;
}

/*
 * Core's SQL functions that create, copy or drop slots: a slot that is (or
 * was) a failover slot by its name may have come or gone.  They run through
 * fmgr, which asks us whether to hook them (once per call site) and then
 * calls us around each call.
 */
static bool
is_slot_function(Oid fn_oid)
{
	return fn_oid == F_PG_DROP_REPLICATION_SLOT ||
		fn_oid == F_PG_CREATE_LOGICAL_REPLICATION_SLOT ||
		fn_oid == F_PG_COPY_LOGICAL_REPLICATION_SLOT_NAME_NAME_BOOL_NAME ||
		fn_oid == F_PG_COPY_LOGICAL_REPLICATION_SLOT_NAME_NAME_BOOL ||
		fn_oid == F_PG_COPY_LOGICAL_REPLICATION_SLOT_NAME_NAME;
}

static bool
moves_needs_fmgr_hook(Oid fn_oid)
{
	if (prev_needs_fmgr_hook && prev_needs_fmgr_hook(fn_oid))
		return true;
	return is_slot_function(fn_oid);
}

static void
moves_fmgr_hook(FmgrHookEventType event, FmgrInfo *flinfo, Datum *private)
{
	if (prev_fmgr_hook)
		prev_fmgr_hook(event, flinfo, private);
	if (event == FHET_END && is_slot_function(flinfo->fn_oid))
		failover_slot_moved();
}

/*
 * From _PG_init.
 */
void
failover_slot_moves_install(void)
{
	RegisterXactCallback(moves_xact_callback, NULL);
	prev_needs_fmgr_hook = needs_fmgr_hook;
	needs_fmgr_hook = moves_needs_fmgr_hook;
	prev_fmgr_hook = fmgr_hook;
	fmgr_hook = moves_fmgr_hook;
}
