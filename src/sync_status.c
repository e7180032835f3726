/*-------------------------------------------------------------------------
 *
 * sync_status.c
 *		Per-slot sync state in shared memory, for the views, and the claim
 *		that lets only one process synchronize at a time.
 *
 * The syncing process (the worker, or a backend running
 * pg_slotsync.sync_replication_slots()) records, for every failover slot
 * the primary listed in its last cycle, the state it reached and why it is
 * not ready; any backend reads it through pg_slotsync.sync_status and the
 * sync columns of pg_slotsync.replication_slots.  One entry per remote
 * slot; entries of slots that left the primary's list are removed at the
 * end of each cycle.  A slot that cannot even be created on the standby
 * (its database missing, a same-name slot in the way, no free slot) still
 * has an entry, so the DBA sees why.  There is room for twice as many
 * entries as the standby has replication slots, so that a primary with more
 * failover slots than the standby can hold still has each one reported
 * (as no_free_slot); should even that overflow, slot_sync_status_set() says
 * so to its caller, and the manual function reports the slots it could not
 * record instead of claiming success.
 *
 * The claim: PostgreSQL 17 refuses a manual sync while its worker (or
 * another manual call) is syncing; so do we.  The claim is a pid in shared
 * memory, released on exit too.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "replication/slot.h"
#include "slot_sync.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"



typedef struct SyncStatusShared
{
	slock_t		mutex;			/* protects the three below */
	pid_t		claim_pid;
	uint64		claim_releases; /* how often a claim was given up */
	Latch	   *launcher_latch; /* woken when a claim is given up */
	LWLock	   *lock;			/* protects the entries */
	int			nentries;
	SyncStatusEntry entries[FLEXIBLE_ARRAY_MEMBER];
} SyncStatusShared;

static SyncStatusShared *SyncStatus = NULL;

/* where the syncing process expects its next entry (see status_set) */
static int	next_hint = 0;

/* How many entries there is room for. */
static int
status_capacity(void)
{
	return 2 * max_replication_slots + 16;
}

Size
slot_sync_status_shmem_size(void)
{
	return add_size(offsetof(SyncStatusShared, entries),
					mul_size(sizeof(SyncStatusEntry), status_capacity()));
}

void
slot_sync_status_shmem_init(void *ptr, bool found)
{
	SyncStatus = (SyncStatusShared *) ptr;
	if (!found)
	{
		memset(SyncStatus, 0, slot_sync_status_shmem_size());
		SpinLockInit(&SyncStatus->mutex);
		SyncStatus->lock =
			&(GetNamedLWLockTranche(PG_SLOTSYNC_NAME))[PG_SLOTSYNC_LWLOCK_STATUS].lock;
	}
}

static void
release_claim_at_exit(int code, Datum arg)
{
	slot_sync_release();
}

/*
 * Become the one process that synchronizes; false if another one is.
 */
bool
slot_sync_claim(void)
{
	static bool exit_callback_registered = false;
	bool		claimed = false;

	SpinLockAcquire(&SyncStatus->mutex);
	if (SyncStatus->claim_pid == 0 || SyncStatus->claim_pid == MyProcPid)
	{
		SyncStatus->claim_pid = MyProcPid;
		claimed = true;
	}
	SpinLockRelease(&SyncStatus->mutex);

	if (claimed && !exit_callback_registered)
	{
		before_shmem_exit(release_claim_at_exit, (Datum) 0);
		exit_callback_registered = true;
	}
	return claimed;
}

/*
 * Give up the claim, and wake the launcher: whatever the syncing process
 * left behind (on an error or a FATAL exit) is the launcher's to clean up
 * once nobody syncs.
 */
void
slot_sync_release(void)
{
	Latch	   *latch = NULL;

	if (SyncStatus == NULL)
		return;
	SpinLockAcquire(&SyncStatus->mutex);
	if (SyncStatus->claim_pid == MyProcPid)
	{
		SyncStatus->claim_pid = 0;
		SyncStatus->claim_releases++;
		latch = SyncStatus->launcher_latch;
	}
	SpinLockRelease(&SyncStatus->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * The launcher registers its latch, and learns how often a claim was given
 * up (to know when to look for debris).
 */
void
slot_sync_set_launcher_latch(Latch *latch)
{
	SpinLockAcquire(&SyncStatus->mutex);
	SyncStatus->launcher_latch = latch;
	SpinLockRelease(&SyncStatus->mutex);
}

uint64
slot_sync_claim_releases(void)
{
	uint64		n;

	SpinLockAcquire(&SyncStatus->mutex);
	n = SyncStatus->claim_releases;
	SpinLockRelease(&SyncStatus->mutex);
	return n;
}

void
slot_sync_status_begin_cycle(void)
{
	next_hint = 0;
	LWLockAcquire(SyncStatus->lock, LW_EXCLUSIVE);
	for (int i = 0; i < SyncStatus->nentries; i++)
		SyncStatus->entries[i].seen = false;
	LWLockRelease(SyncStatus->lock);
}

/*
 * Record a slot's state as of this cycle.  Returns false if there was no
 * room for it.  *where is the caller's note of where the slot's entry is
 * (any value the first time), updated here.
 */
bool
slot_sync_status_set(const RemoteSlot *remote, SyncState state,
					 SyncReason code, const char *reason, bool synced_now,
					 int *where)
{
	SyncStatusEntry *entry = NULL;

	LWLockAcquire(SyncStatus->lock, LW_EXCLUSIVE);

	/*
	 * Look where the caller saw the slot's entry last, then (the primary
	 * lists its slots in the same order every full list, and entries are
	 * kept in the order they were made) where the last entry set was
	 * followed; search only if both miss.
	 */
	if (*where >= 0 && *where < SyncStatus->nentries &&
		strcmp(NameStr(SyncStatus->entries[*where].name),
			   NameStr(remote->name)) == 0)
		entry = &SyncStatus->entries[*where];
	else if (next_hint < SyncStatus->nentries &&
		strcmp(NameStr(SyncStatus->entries[next_hint].name),
			   NameStr(remote->name)) == 0)
		entry = &SyncStatus->entries[next_hint];
	for (int i = 0; entry == NULL && i < SyncStatus->nentries; i++)
	{
		if (strcmp(NameStr(SyncStatus->entries[i].name),
				   NameStr(remote->name)) == 0)
			entry = &SyncStatus->entries[i];
	}
	if (entry == NULL && SyncStatus->nentries < status_capacity())
	{
		entry = &SyncStatus->entries[SyncStatus->nentries++];
		memset(entry, 0, sizeof(*entry));
		entry->name = remote->name;
	}
	if (entry != NULL)
	{
		entry->database = remote->database;
		entry->incarnation = remote->incarnation;
		entry->state = state;
		entry->reason_code = code;
		entry->seen = true;
		entry->remote_restart_lsn = remote->restart_lsn;
		entry->remote_confirmed_flush = remote->confirmed_flush;
		entry->remote_catalog_xmin = remote->catalog_xmin;
		if (synced_now)
			entry->last_sync = GetCurrentTimestamp();
		entry->settled = synced_now;
		strlcpy(entry->reason, reason ? reason : "", sizeof(entry->reason));
		*where = entry - SyncStatus->entries;
		next_hint = *where + 1;
	}
	LWLockRelease(SyncStatus->lock);
	return entry != NULL;
}

/*
 * A slot gone from the primary's list (a change, not a whole list).
 */
void
slot_sync_status_remove(const char *name)
{
	LWLockAcquire(SyncStatus->lock, LW_EXCLUSIVE);
	for (int i = 0; i < SyncStatus->nentries; i++)
	{
		if (strcmp(NameStr(SyncStatus->entries[i].name), name) != 0)
			continue;
		SyncStatus->entries[i] = SyncStatus->entries[--SyncStatus->nentries];
		break;
	}
	LWLockRelease(SyncStatus->lock);
}

/*
 * A cycle confirmed that nothing changed for the slots it did not look at:
 * those that were equal to the primary's slot still are.  At most once a
 * second: it only keeps last_sync_time fresh.
 */
void
slot_sync_status_touch_settled(void)
{
	static TimestampTz last_touch = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (!TimestampDifferenceExceeds(last_touch, now, 1000))
		return;
	last_touch = now;
	LWLockAcquire(SyncStatus->lock, LW_EXCLUSIVE);
	for (int i = 0; i < SyncStatus->nentries; i++)
		if (SyncStatus->entries[i].settled)
			SyncStatus->entries[i].last_sync = now;
	LWLockRelease(SyncStatus->lock);
}

/*
 * Change the recorded state of a slot outside a cycle (a copy demoted when
 * the standby's settings changed); nothing if it has no entry.
 */
void
slot_sync_status_mark(const char *name, SyncState state, SyncReason code,
					  const char *reason)
{
	LWLockAcquire(SyncStatus->lock, LW_EXCLUSIVE);
	for (int i = 0; i < SyncStatus->nentries; i++)
	{
		SyncStatusEntry *e = &SyncStatus->entries[i];

		if (strcmp(NameStr(e->name), name) != 0)
			continue;
		e->state = state;
		e->reason_code = code;
		e->settled = false;
		strlcpy(e->reason, reason, sizeof(e->reason));
		break;
	}
	LWLockRelease(SyncStatus->lock);
}

void
slot_sync_status_end_cycle(void)
{
	int			kept = 0;

	LWLockAcquire(SyncStatus->lock, LW_EXCLUSIVE);
	for (int i = 0; i < SyncStatus->nentries; i++)
	{
		if (!SyncStatus->entries[i].seen)
			continue;
		if (kept != i)
			SyncStatus->entries[kept] = SyncStatus->entries[i];
		kept++;
	}
	SyncStatus->nentries = kept;
	LWLockRelease(SyncStatus->lock);
}

void
slot_sync_status_clear(void)
{
	LWLockAcquire(SyncStatus->lock, LW_EXCLUSIVE);
	SyncStatus->nentries = 0;
	LWLockRelease(SyncStatus->lock);
}

bool
slot_sync_status_lookup(const char *name, SyncState *state, SyncReason *code,
						char *reason, Size reasonlen, TimestampTz *last_sync)
{
	bool		found = false;

	LWLockAcquire(SyncStatus->lock, LW_SHARED);
	for (int i = 0; i < SyncStatus->nentries; i++)
	{
		SyncStatusEntry *e = &SyncStatus->entries[i];

		if (strcmp(NameStr(e->name), name) != 0)
			continue;
		*state = e->state;
		if (code != NULL)
			*code = e->reason_code;
		strlcpy(reason, e->reason, reasonlen);
		if (last_sync != NULL)
			*last_sync = e->last_sync;
		found = true;
		break;
	}
	LWLockRelease(SyncStatus->lock);
	return found;
}

/*
 * Is any process synchronizing (the worker, or a manual call)?
 */
bool
slot_sync_claimed_by_anyone(void)
{
	pid_t		pid;

	SpinLockAcquire(&SyncStatus->mutex);
	pid = SyncStatus->claim_pid;
	SpinLockRelease(&SyncStatus->mutex);
	return pid != 0;
}

/*
 * A copy of every entry (palloc'd), for the views.
 */
SyncStatusEntry *
slot_sync_status_copy(int *n)
{
	SyncStatusEntry *copy = palloc(sizeof(SyncStatusEntry) * status_capacity());

	LWLockAcquire(SyncStatus->lock, LW_SHARED);
	*n = SyncStatus->nentries;
	memcpy(copy, SyncStatus->entries, sizeof(SyncStatusEntry) * *n);
	LWLockRelease(SyncStatus->lock);
	return copy;
}
