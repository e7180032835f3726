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
 * slot, at most max_replication_slots of them (the standby could not hold
 * more copies anyway); entries of slots that left the primary's list are
 * removed at the end of each cycle.  A slot that cannot even be created on
 * the standby (its database missing, a same-name slot in the way) still has
 * an entry, so the DBA sees why.
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
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_slotsync_sync_status);

typedef struct SyncStatusEntry
{
	NameData	name;
	NameData	database;
	SyncState	state;
	SyncReason	reason_code;
	bool		seen;			/* listed in the current cycle */
	XLogRecPtr	remote_restart_lsn;
	XLogRecPtr	remote_confirmed_flush;
	TransactionId remote_catalog_xmin;
	TimestampTz last_sync;		/* last time the copy matched the primary */
	char		reason[256];
} SyncStatusEntry;

typedef struct SyncStatusShared
{
	slock_t		mutex;			/* protects claim_pid */
	pid_t		claim_pid;
	LWLock	   *lock;			/* protects the entries */
	int			nentries;
	SyncStatusEntry entries[FLEXIBLE_ARRAY_MEMBER];
} SyncStatusShared;

static SyncStatusShared *SyncStatus = NULL;

/* where the syncing process expects its next entry (see status_set) */
static int	next_hint = 0;

Size
slot_sync_status_shmem_size(void)
{
	return add_size(offsetof(SyncStatusShared, entries),
					mul_size(sizeof(SyncStatusEntry),
							 Max(max_replication_slots, 1)));
}

void
slot_sync_status_shmem_init(void *ptr, bool found)
{
	SyncStatus = (SyncStatusShared *) ptr;
	if (!found)
	{
		memset(SyncStatus, 0, slot_sync_status_shmem_size());
		SpinLockInit(&SyncStatus->mutex);
		SyncStatus->lock = &(GetNamedLWLockTranche(PG_SLOTSYNC_NAME))->lock;
	}
}

const char *
sync_state_name(SyncState state)
{
	switch (state)
	{
		case SYNC_STATE_NOT_READY:
			return "not_ready";
		case SYNC_STATE_READY:
			return "ready";
		case SYNC_STATE_CONFLICT:
			return "conflict";
		case SYNC_STATE_INVALIDATED:
			return "invalidated";
		case SYNC_STATE_ERROR:
			return "error";
	}
	return "unknown";
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

void
slot_sync_release(void)
{
	if (SyncStatus == NULL)
		return;
	SpinLockAcquire(&SyncStatus->mutex);
	if (SyncStatus->claim_pid == MyProcPid)
		SyncStatus->claim_pid = 0;
	SpinLockRelease(&SyncStatus->mutex);
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

void
slot_sync_status_set(const RemoteSlot *remote, SyncState state,
					 SyncReason code, const char *reason, bool synced_now)
{
	SyncStatusEntry *entry = NULL;

	LWLockAcquire(SyncStatus->lock, LW_EXCLUSIVE);

	/*
	 * The primary lists its slots in the same order every cycle, and
	 * entries are kept in the order they were made: look where the last
	 * entry set was followed first, and search only if that misses.
	 */
	if (next_hint < SyncStatus->nentries &&
		strcmp(NameStr(SyncStatus->entries[next_hint].name),
			   NameStr(remote->name)) == 0)
		entry = &SyncStatus->entries[next_hint];
	for (int i = 0; entry == NULL && i < SyncStatus->nentries; i++)
	{
		if (strcmp(NameStr(SyncStatus->entries[i].name),
				   NameStr(remote->name)) == 0)
			entry = &SyncStatus->entries[i];
	}
	if (entry == NULL && SyncStatus->nentries < Max(max_replication_slots, 1))
	{
		entry = &SyncStatus->entries[SyncStatus->nentries++];
		memset(entry, 0, sizeof(*entry));
		entry->name = remote->name;
	}
	if (entry != NULL)
	{
		entry->database = remote->database;
		entry->state = state;
		entry->reason_code = code;
		entry->seen = true;
		entry->remote_restart_lsn = remote->restart_lsn;
		entry->remote_confirmed_flush = remote->confirmed_flush;
		entry->remote_catalog_xmin = remote->catalog_xmin;
		if (synced_now)
			entry->last_sync = GetCurrentTimestamp();
		strlcpy(entry->reason, reason ? reason : "", sizeof(entry->reason));
		next_hint = (entry - SyncStatus->entries) + 1;
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
slot_sync_status_lookup(const char *name, SyncState *state, char *reason,
						Size reasonlen, TimestampTz *last_sync)
{
	bool		found = false;

	LWLockAcquire(SyncStatus->lock, LW_SHARED);
	for (int i = 0; i < SyncStatus->nentries; i++)
	{
		SyncStatusEntry *e = &SyncStatus->entries[i];

		if (strcmp(NameStr(e->name), name) != 0)
			continue;
		*state = e->state;
		strlcpy(reason, e->reason, reasonlen);
		*last_sync = e->last_sync;
		found = true;
		break;
	}
	LWLockRelease(SyncStatus->lock);
	return found;
}

/*
 * pg_slotsync.sync_status: one row per failover slot the syncing process
 * knows from the primary.
 */
Datum
pg_slotsync_sync_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SyncStatusEntry *copy;
	int			n;

	InitMaterializedSRF(fcinfo, 0);

	copy = palloc(sizeof(SyncStatusEntry) * Max(max_replication_slots, 1));
	LWLockAcquire(SyncStatus->lock, LW_SHARED);
	n = SyncStatus->nentries;
	memcpy(copy, SyncStatus->entries, sizeof(SyncStatusEntry) * n);
	LWLockRelease(SyncStatus->lock);

	for (int i = 0; i < n; i++)
	{
		SyncStatusEntry *e = &copy[i];
		Datum		values[9];
		bool		nulls[9] = {0};
		const char *code = sync_reason_name(e->reason_code);

		values[0] = NameGetDatum(&e->name);
		values[1] = CStringGetTextDatum(NameStr(e->database));
		values[2] = CStringGetTextDatum(sync_state_name(e->state));
		if (code != NULL)
			values[3] = CStringGetTextDatum(code);
		else
			nulls[3] = true;
		if (e->reason[0] != '\0')
			values[4] = CStringGetTextDatum(e->reason);
		else
			nulls[4] = true;
		if (XLogRecPtrIsInvalid(e->remote_restart_lsn))
			nulls[5] = true;
		else
			values[5] = LSNGetDatum(e->remote_restart_lsn);
		if (XLogRecPtrIsInvalid(e->remote_confirmed_flush))
			nulls[6] = true;
		else
			values[6] = LSNGetDatum(e->remote_confirmed_flush);
		if (TransactionIdIsValid(e->remote_catalog_xmin))
			values[7] = TransactionIdGetDatum(e->remote_catalog_xmin);
		else
			nulls[7] = true;
		if (e->last_sync != 0)
			values[8] = TimestampTzGetDatum(e->last_sync);
		else
			nulls[8] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 values, nulls);
	}
	return (Datum) 0;
}
