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
 *	- slot_funcs.c, when a failover flag is set or cleared.
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

/* How many slots one transaction's note can tell apart. */
#define MAX_NOTED_SLOTS		4

typedef struct FailoverSlotMovesShared
{
	pg_atomic_uint64 moves;
	ConditionVariable moved_cv;
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
	return MAXALIGN(sizeof(FailoverSlotMovesShared));
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
		ConditionVariableInit(&MovesState->moved_cv);
	}
}

uint64
failover_slot_moves_read(void)
{
	return pg_atomic_read_u64(&MovesState->moves);
}

ConditionVariable *
failover_slot_moved_cv(void)
{
	return &MovesState->moved_cv;
}

/*
 * A failover slot moved (or appeared, or changed its flag): tell watchers.
 */
void
failover_slot_moved(void)
{
	if (MovesState == NULL)
		return;
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
 * Did any noted slot move, or vanish?
 */
static bool
noted_slots_moved(void)
{
	bool		moved = false;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < nnoted && !moved; i++)
	{
		ReplicationSlot *slot;

		slot = SearchNamedReplicationSlot(NameStr(noted[i].name), false);
		if (slot == NULL)
		{
			moved = true;
			break;
		}
		SpinLockAcquire(&slot->mutex);
		moved = slot->data.confirmed_flush != noted[i].confirmed_flush ||
			slot->data.restart_lsn != noted[i].restart_lsn ||
			slot->data.catalog_xmin != noted[i].catalog_xmin;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return moved;
}

static void
moves_xact_callback(XactEvent event, void *arg)
{
	if (nnoted == 0 && !noted_overflow)
		return;
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PREPARE)
		return;

	if (noted_overflow || noted_slots_moved())
		failover_slot_moved();
	nnoted = 0;
	noted_overflow = false;
}

/*
 * From _PG_init.
 */
void
failover_slot_moves_install(void)
{
	RegisterXactCallback(moves_xact_callback, NULL);
}
