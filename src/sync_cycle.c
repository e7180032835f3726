/*-------------------------------------------------------------------------
 *
 * sync_cycle.c
 *		One synchronization pass over every failover slot of the primary,
 *		shared by the worker and pg_slotsync.sync_replication_slots().
 *
 * A cycle:
 *
 *	1. One round trip to the primary (which may first wait for a change,
 *	   see primary_funcs.c): its state, and its failover slots.
 *	2. In one transaction on the standby: drop our copies of slots the
 *	   primary no longer lists, keep the anchor where it must be
 *	   (sync_anchor.c), then for each listed slot gather the inputs, ask
 *	   slot_sync_decide() for a plan, carry it out (sync_apply.c) and ask
 *	   again, until the plan is "nothing" or "an update that needs the
 *	   primary's snapshot".
 *	3. If some copies need the primary's serialized snapshot (to become
 *	   ready, or to move a ready copy's restart_lsn), one more round trip
 *	   fetches all of them, and those slots are decided and updated again.
 *	4. Each slot's state and reason are recorded for the views.
 *
 * No libpq call happens while a slot is acquired or a database lock is
 * held: every side effect runs in steps 2 and 3 between round trips, each
 * slot in its own subtransaction, with its database lock taken for that
 * slot only.  Whatever goes wrong with one slot (a same-name slot in the
 * way, its database missing, an error while copying) becomes that slot's
 * state and reason, and the cycle goes on with the others.  PostgreSQL 17
 * instead aborts the whole cycle, so one bad slot stops every other.
 *
 * The common case under load, a ready copy that only needs a new position
 * or nothing at all, goes through the same decision without a
 * subtransaction when nothing is to be done.
 *
 * Reasons are logged once per change of reason per slot, in core's words,
 * not once per cycle.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlogrecovery.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "replication/walreceiver.h"
#include "slot_copy.h"
#include "slot_sync.h"
#include "snapshot_file.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

/* What a syncing process remembers about each slot between cycles. */
typedef struct SlotMemory
{
	NameData	name;			/* hash key */
	bool		had_copy;		/* we made or kept a local copy */
	bool		listed;			/* listed by the primary this cycle */
	XLogRecPtr	fileless_lsn;	/* primary has no snapshot file here */
	SyncReason	last_reason;	/* last kind of reason logged */
	TimestampTz synced_at;		/* last time the copy equalled the slot */
	MarkerCacheEntry marker;	/* saves reading the marker every cycle */
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
	XLogRecPtr	copy_restart;	/* the local copy's restart_lsn */
	const RemoteSnapshot *snapshot; /* what the primary sent, if asked */
} SlotWork;

/* The databases named by the listed slots, looked up once per cycle. */
typedef struct DatabaseCache
{
	int			n;
	int			space;
	NameData   *names;
	Oid		   *oids;
} DatabaseCache;

/* What every slot's decision shares within one cycle. */
typedef struct CycleContext
{
	DatabaseCache databases;
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

static SlotMemory *
slot_memory(SyncSession *session, const char *name)
{
	SlotMemory *mem;
	bool		found;
	NameData	key;

	if (session->memory == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(NameData);
		ctl.entrysize = sizeof(SlotMemory);
		ctl.hcxt = session->session_cxt;
		session->memory = hash_create("pg_slotsync slot memory", 64, &ctl,
									  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	namestrcpy(&key, name);
	mem = hash_search(session->memory, &key, HASH_ENTER, &found);
	if (!found)
	{
		memset(mem, 0, sizeof(*mem));
		mem->name = key;
		/* a copy found behind is counted as behind from now on */
		mem->synced_at = GetCurrentTimestamp();
	}
	return mem;
}

/*
 * The names the primary listed in the last cycle (palloc'd).
 */
void
slot_sync_listed_names(SyncSession *session, NameData **names, int *nnames)
{
	HASH_SEQ_STATUS seq;
	SlotMemory *mem;
	int			n = 0;

	*names = palloc(sizeof(NameData) *
					Max(1, session->memory ? hash_get_num_entries(session->memory) : 1));
	if (session->memory != NULL)
	{
		hash_seq_init(&seq, session->memory);
		while ((mem = hash_seq_search(&seq)) != NULL)
			if (mem->listed)
				(*names)[n++] = mem->name;
	}
	*nnames = n;
}

/* Did the primary list this slot in the last cycle? */
bool
slot_sync_is_listed(SyncSession *session, const char *name)
{
	NameData	key;
	SlotMemory *mem;

	if (session->memory == NULL)
		return false;
	namestrcpy(&key, name);
	mem = hash_search(session->memory, &key, HASH_FIND, NULL);
	return mem != NULL && mem->listed;
}

/* ---------------------------------------------------------------------
 * Sessions
 * ---------------------------------------------------------------------
 */

/*
 * A session's memory lives under "parent": the worker's for as long as it
 * runs, the manual function's only for its query, so that nothing leaks
 * however the call ends.
 */
void
sync_session_init(SyncSession *session, MemoryContext parent,
				  const char *what, bool (*interrupted) (void))
{
	memset(session, 0, sizeof(*session));
	session->session_cxt = AllocSetContextCreate(parent, "pg_slotsync session",
												 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSetIdentifier(session->session_cxt, what);
	session->cycle_cxt = AllocSetContextCreate(session->session_cxt,
											   "pg_slotsync cycle",
											   ALLOCSET_DEFAULT_SIZES);
	session->interrupted = interrupted;
}

void
sync_session_disconnect(SyncSession *session)
{
	primary_disconnect(session->conn);
	session->conn = NULL;
	session->have_token = false;
}

/* Disconnect and free everything; the session must be initialized again. */
void
sync_session_destroy(SyncSession *session)
{
	sync_session_disconnect(session);
	if (session->session_cxt != NULL)
		MemoryContextDelete(session->session_cxt);
	session->session_cxt = NULL;
	session->cycle_cxt = NULL;
	session->memory = NULL;
}

/*
 * Connect to the primary and check the extension there; false, with a
 * complaint, if that did not work.
 */
bool
sync_session_connect(SyncSession *session, const char *appname,
					 SyncComplaint *complaint)
{
	StringInfoData err;
	RemoteFailure failure;
	MemoryContext oldcxt;

	initStringInfo(&err);
	session->have_token = false;
	oldcxt = MemoryContextSwitchTo(session->session_cxt);
	session->conn = primary_connect(slot_sync_conninfo(), appname,
									session->interrupted, &err);
	MemoryContextSwitchTo(oldcxt);
	if (session->conn == NULL)
	{
		slot_sync_complain_remote(complaint, REMOTE_ERROR,
								  "connect to the primary server", err.data);
		pfree(err.data);
		return false;
	}
	failure = primary_check_extension(session->conn, session->interrupted,
									  &err);
	if (failure != REMOTE_OK)
	{
		slot_sync_complain_remote(complaint, failure,
								  "check pg_slotsync on the primary server",
								  err.data);
		sync_session_disconnect(session);
		pfree(err.data);
		return false;
	}
	pfree(err.data);
	return true;
}

/* ---------------------------------------------------------------------
 * Deciding
 * ---------------------------------------------------------------------
 */

/* The OID of a database here, by name; InvalidOid if there is none. */
static Oid
database_oid(DatabaseCache *cache, const char *name)
{
	for (int i = 0; i < cache->n; i++)
		if (strcmp(NameStr(cache->names[i]), name) == 0)
			return cache->oids[i];
	if (cache->n == cache->space)
	{
		cache->space = Max(8, cache->space * 2);
		cache->names = cache->n ? repalloc(cache->names, sizeof(NameData) * cache->space) :
			palloc(sizeof(NameData) * cache->space);
		cache->oids = cache->n ? repalloc(cache->oids, sizeof(Oid) * cache->space) :
			palloc(sizeof(Oid) * cache->space);
	}
	namestrcpy(&cache->names[cache->n], name);
	cache->oids[cache->n] = get_database_oid(name, true);
	return cache->oids[cache->n++];
}

/*
 * What we know of the primary's snapshot at the remote restart_lsn, when it
 * matters: for a copy that is not ready, or whose restart_lsn would move.
 */
static SnapshotState
snapshot_state(const SlotWork *w, const LocalSlot *local)
{
	const RemoteSlot *r = w->remote;
	char		problem[128];

	if (local->exists && local->ready && local->restart_lsn == r->restart_lsn)
		return SNAPSHOT_NOT_LOOKED;
	if (snapshot_file_exists(r->restart_lsn))
		return SNAPSHOT_ON_STANDBY;
	if (w->mem->fileless_lsn == r->restart_lsn)
		return SNAPSHOT_NONE;
	if (w->snapshot == NULL)
		return SNAPSHOT_NOT_LOOKED;
	if (!w->snapshot->slot_found || w->snapshot->restart_lsn != r->restart_lsn)
		return SNAPSHOT_SLOT_MOVED;
	if (w->snapshot->data == NULL)
	{
		w->mem->fileless_lsn = r->restart_lsn;
		return SNAPSHOT_NONE;
	}
	if (!snapshot_data_check(w->snapshot->data, w->snapshot->len,
							 problem, sizeof(problem)))
		return SNAPSHOT_INVALID;
	return SNAPSHOT_RECEIVED;
}

/*
 * Gather the inputs for one slot as things are now, and decide.
 */
static void
decide_slot(CycleContext *cy, SlotWork *w)
{
	SyncInputs	in;
	const char *name = NameStr(w->remote->name);

	memset(&in, 0, sizeof(in));
	in.remote = w->remote;
	sync_read_local(name, &in.local, &w->mem->marker);
	if (w->mem->had_copy && !in.local.exists)
		ereport(LOG,
				(errmsg("replication slot \"%s\" was dropped on the standby; synchronizing it again",
						name)));
	w->mem->had_copy = in.local.exists && in.local.synced;

	in.database_oid = w->dboid;
	in.free_slot = cy->free_slots > 0;
	in.standby_flush = cy->standby_flush;
	in.standby_replay = cy->standby_replay;
	in.protected_from = cy->protected_from;
	in.primary_keeps_catalog =
		TransactionIdIsValid(cy->info->standby_slot_catalog_xmin);
	in.primary_catalog_xmin = cy->info->standby_slot_catalog_xmin;
	in.snapshot = snapshot_state(w, &in.local);
	in.behind_ms = TimestampDifferenceMilliseconds(w->mem->synced_at,
												   GetCurrentTimestamp());
	in.stale_after_ms = pg_slotsync_stale_after;

	/* the standby's past matters only for slots older than the anchor */
	if (!cy->history.known &&
		(in.local.history_pending ||
		 XLogRecPtrIsInvalid(cy->protected_from) ||
		 w->remote->restart_lsn < cy->protected_from))
		sync_history_local(&cy->history);
	in.wal_from = cy->history.known ? cy->history.wal_from : InvalidXLogRecPtr;
	in.removed_upto = cy->history.removed_upto;
	in.max_fetch_bytes = (int64) pg_slotsync_max_wal_fetch * 1024 * 1024;
	in.history_fetched_from = cy->history_fetched_from;
	in.history_failure = cy->history_failure;
	w->copy_restart = in.local.restart_lsn;

	slot_sync_decide(&in, &w->plan);
	w->synced_now = w->plan.action == SYNC_ACTION_NONE &&
		w->plan.state == SYNC_STATE_READY &&
		w->plan.reason_code == SYNC_REASON_NONE;
}

/* ---------------------------------------------------------------------
 * Acting
 * ---------------------------------------------------------------------
 */

/*
 * Log why a slot is not ready, once per change of the kind of reason: the
 * words carry LSNs that move with every cycle, the kind does not.
 */
static void
log_reason_change(SlotMemory *mem, const char *name, SyncReason code,
				  const char *reason)
{
	if (mem->last_reason == code)
		return;
	mem->last_reason = code;
	if (code == SYNC_REASON_NONE || code == SYNC_REASON_CREATING)
		return;

	if (code == SYNC_REASON_SAME_NAME_SLOT)
		ereport(LOG,
				(errmsg("skipping synchronization of replication slot \"%s\"",
						name),
				 errdetail("A replication slot of the same name that was not synchronized from the primary exists on the standby."),
				 errhint("Drop or rename the standby's slot, or clear the failover flag of the primary's slot.")));
	else if (code == SYNC_REASON_ERROR)
		ereport(LOG,
				(errmsg("could not synchronize replication slot \"%s\": %s",
						name, reason)));
	else if (sync_reason_is_data_loss(code))
		ereport(LOG,
				(errmsg("could not synchronize replication slot \"%s\"", name),
				 errdetail("Synchronization could lead to data loss, because %s.",
						   reason)));
	else
		ereport(LOG,
				(errmsg("could not synchronize replication slot \"%s\"", name),
				 errdetail("The reason is that %s.", reason)));
}

/*
 * Carry out one step of the plan.  Called in the slot's subtransaction.
 */
static void
apply_step(CycleContext *cy, SlotWork *w)
{
	const RemoteSlot *r = w->remote;
	const char *name = NameStr(r->name);
	SlotCopy	local;
	Oid			lockdb;

	/* copies are changed only under their database's lock (sync_apply.c) */
	if (w->plan.action == SYNC_ACTION_CREATE)
	{
		lockdb = w->dboid;
		sync_lock_database(lockdb, NameStr(r->database));
	}
	else if (slot_copy_named(name, &local))
	{
		lockdb = local.database;
		sync_lock_database(lockdb, NULL);
	}
	else
		elog(ERROR, "replication slot \"%s\" vanished", name);

	switch (w->plan.action)
	{
		case SYNC_ACTION_DROP:
			log_reason_change(w->mem, name, w->plan.reason_code,
							  w->plan.reason);
			sync_drop_copy(name, true);
			cy->free_slots++;
			break;
		case SYNC_ACTION_CREATE:
			sync_create_copy(r, w->dboid, w->plan.create_at,
							 w->plan.history_pending);
			w->mem->had_copy = true;
			cy->free_slots--;
			break;
		case SYNC_ACTION_INVALIDATE:
			sync_invalidate_copy(name);
			break;
		case SYNC_ACTION_HISTORY_DONE:
			sync_history_done(name);
			break;
		case SYNC_ACTION_DEMOTE:
			log_reason_change(w->mem, name, w->plan.reason_code,
							  w->plan.reason);
			sync_demote_copy(name);
			ereport(LOG,
					(errmsg("replication slot \"%s\" is no longer sync-ready", name),
					 errdetail("The reason is that %s.", w->plan.reason)));
			break;
		case SYNC_ACTION_UPDATE:
			{
				const char *data = NULL;
				Size		len = 0;

				if (w->snapshot != NULL && w->snapshot->data != NULL &&
					w->snapshot->restart_lsn == r->restart_lsn)
				{
					data = w->snapshot->data;
					len = w->snapshot->len;
				}
				if (sync_update_copy(r, w->plan.becomes_ready, data, len))
					w->changed = true;
				w->synced_now = true;
				if (w->plan.becomes_ready)
					ereport(LOG,
							(errmsg("newly created replication slot \"%s\" is sync-ready now",
									name)));
				break;
			}
		case SYNC_ACTION_NONE:
			break;
	}
	if (w->plan.action != SYNC_ACTION_UPDATE)
		w->changed = true;

	sync_unlock_database(lockdb);
}

/*
 * Carry out the plan, deciding again after each structural step (drop,
 * create, invalidate), until nothing is left to do now.  Runs in the slot's
 * own subtransaction; an error becomes the slot's state.
 */
static void
run_plan(CycleContext *cy, SlotWork *w)
{
	MemoryContext slotcxt = CurrentMemoryContext;
	ResourceOwner slotowner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(slotcxt);
	PG_TRY();
	{
		for (int steps = 0;
			 w->plan.action != SYNC_ACTION_NONE && !w->plan.fetch_snapshot &&
			 !w->plan.fetch_history;
			 steps++)
		{
			SyncAction	done = w->plan.action;

			if (steps >= 5)
				elog(ERROR, "no settled plan for replication slot \"%s\"",
					 NameStr(w->remote->name));
			apply_step(cy, w);
			if (done == SYNC_ACTION_UPDATE)
				break;
			decide_slot(cy, w);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(slotcxt);
		CurrentResourceOwner = slotowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(slotcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(slotcxt);
		CurrentResourceOwner = slotowner;
		/* an ephemeral slot half-created is dropped by releasing it */
		if (MyReplicationSlot != NULL)
			ReplicationSlotRelease();

		/* a cancel is for the caller, not a slot's trouble */
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);

		memset(&w->plan, 0, sizeof(w->plan));
		w->plan.state = SYNC_STATE_ERROR;
		w->plan.reason_code = SYNC_REASON_ERROR;
		strlcpy(w->plan.reason, edata->message, sizeof(w->plan.reason));
		w->synced_now = false;
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/*
 * Record where a slot ended up this cycle, for the views and the caller.
 */
static void
record_slot(CycleContext *cy, SlotWork *w)
{
	const char *name = NameStr(w->remote->name);

	if (w->changed)
		cy->result->nchanged++;
	if (!XLogRecPtrIsInvalid(w->plan.needs_flush))
		cy->result->flush_needed = Max(cy->result->flush_needed,
									   w->plan.needs_flush);
	if (w->plan.state == SYNC_STATE_NOT_READY ||
		w->plan.state == SYNC_STATE_ERROR || w->plan.fetch_snapshot ||
		w->plan.fetch_history)
		cy->result->pending = true;

	if (w->synced_now)
		w->mem->synced_at = GetCurrentTimestamp();
	log_reason_change(w->mem, name, w->plan.reason_code, w->plan.reason);
	if (!slot_sync_status_set(w->remote, w->plan.state, w->plan.reason_code,
							  w->plan.reason, w->synced_now))
		cy->result->pending = true;
}

/* ---------------------------------------------------------------------
 * The cycle
 * ---------------------------------------------------------------------
 */

/*
 * Drop copies of slots the primary does not list any more (dropped there,
 * or no longer a failover slot).  On the first cycle every local slot is
 * looked at; later only those we have seen, since only sync creates
 * copies.
 */
static void
drop_unlisted_copies(SyncSession *session, const RemoteSlot *remote,
					 int nremote, bool first_cycle)
{
	HASH_SEQ_STATUS seq;
	SlotMemory *m;

	if (first_cycle)
	{
		int			nlocal;
		SlotCopy   *local = slot_copy_all_palloc(&nlocal);

		for (int i = 0; i < nlocal; i++)
		{
			LocalSlot	copy;

			if (!local[i].is_logical)
				continue;
			sync_read_local(NameStr(local[i].name), &copy, NULL);
			if (copy.synced)
				slot_memory(session, NameStr(local[i].name))->had_copy = true;
		}
		pfree(local);
	}

	if (session->memory != NULL)
	{
		hash_seq_init(&seq, session->memory);
		while ((m = hash_seq_search(&seq)) != NULL)
			m->listed = false;
	}
	for (int i = 0; i < nremote; i++)
		slot_memory(session, NameStr(remote[i].name))->listed = true;
	if (session->memory == NULL)
		return;

	hash_seq_init(&seq, session->memory);
	while ((m = hash_seq_search(&seq)) != NULL)
	{
		LocalSlot	copy;

		if (m->listed)
			continue;
		if (m->had_copy)
		{
			sync_read_local(NameStr(m->name), &copy, &m->marker);
			if (copy.exists && copy.synced)
			{
				sync_lock_database(copy.database, NULL);
				sync_drop_copy(NameStr(m->name), true);
				sync_unlock_database(copy.database);
			}
		}
		/* removing the current element is allowed during a scan */
		hash_search(session->memory, &m->name, HASH_REMOVE, NULL);
	}
}

/*
 * Complete the standby's past for the copies that asked (from the lowest
 * restart_lsn among them, once), then decide and act on them again.  A
 * failure is theirs (they say why), not the cycle's.
 */
static void
fetch_history_and_continue(CycleContext *cy, SlotWork *work, int nwork)
{
	XLogRecPtr	from = InvalidXLogRecPtr;
	StringInfoData err;

	for (int i = 0; i < nwork; i++)
		if (work[i].plan.fetch_history &&
			(XLogRecPtrIsInvalid(from) || work[i].copy_restart < from))
			from = work[i].copy_restart;
	if (XLogRecPtrIsInvalid(from))
		return;

	initStringInfo(&err);
	if (sync_history_fetch(cy->session->conn, from, &cy->history,
						   cy->session->interrupted, &err) == REMOTE_OK)
		cy->history_fetched_from = from;
	else
		cy->history_failure = err.data;

	for (int i = 0; i < nwork; i++)
	{
		SlotWork   *w = &work[i];

		if (!w->plan.fetch_history)
			continue;
		decide_slot(cy, w);
		if (w->plan.action != SYNC_ACTION_NONE)
			run_plan(cy, w);
	}
}

/*
 * Ask the primary for the snapshots the plans asked for, then decide and
 * act on those slots again.  False if the round trip failed.
 */
static RemoteFailure
fetch_snapshots_and_finish(CycleContext *cy, SlotWork *work, int nwork,
						   StringInfo err)
{
	const RemoteSlot **asked = palloc(sizeof(RemoteSlot *) * Max(nwork, 1));
	int		   *index = palloc(sizeof(int) * Max(nwork, 1));
	RemoteSnapshot *answers;
	RemoteFailure failure;
	int			nasked = 0;

	for (int i = 0; i < nwork; i++)
	{
		if (!work[i].plan.fetch_snapshot)
			continue;
		index[nasked] = i;
		asked[nasked++] = work[i].remote;
	}
	if (nasked == 0)
		return REMOTE_OK;

	answers = palloc(sizeof(RemoteSnapshot) * nasked);
	failure = primary_fetch_snapshots(cy->session->conn, asked, nasked,
									  answers, cy->session->interrupted, err);
	if (failure != REMOTE_OK)
		return failure;

	for (int k = 0; k < nasked; k++)
	{
		SlotWork   *w = &work[index[k]];

		w->snapshot = &answers[k];
		decide_slot(cy, w);
		if (w->plan.action != SYNC_ACTION_NONE)
			run_plan(cy, w);
	}
	return REMOTE_OK;
}

/*
 * Decide and act on every listed slot; see the header comment.
 */
static RemoteFailure
sync_listed_slots(CycleContext *cy, const RemoteSlot *slots, int nslots,
				  StringInfo err)
{
	SlotWork   *work = palloc0(sizeof(SlotWork) * Max(nslots, 1));
	RemoteFailure failure;

	for (int i = 0; i < nslots; i++)
	{
		SlotWork   *w = &work[i];

		w->remote = &slots[i];
		w->mem = slot_memory(cy->session, NameStr(slots[i].name));
		w->dboid = database_oid(&cy->databases, NameStr(slots[i].database));

		decide_slot(cy, w);
		if (w->plan.action != SYNC_ACTION_NONE && !w->plan.fetch_snapshot)
			run_plan(cy, w);
	}

	fetch_history_and_continue(cy, work, nslots);
	failure = fetch_snapshots_and_finish(cy, work, nslots, err);

	for (int i = 0; i < nslots; i++)
		record_slot(cy, &work[i]);
	return failure;
}

SyncCycleStatus
slot_sync_cycle(SyncSession *session, int wait_ms, SyncCycleResult *result,
				SyncComplaint *complaint)
{
	XLogRecPtr	replay_before;
	PrimaryInfo info;
	RemoteSlot *slots;
	int			nslots;
	StringInfoData err;
	MemoryContext oldcxt;
	bool		first_cycle = (session->memory == NULL);
	bool		own_xact;
	RemoteFailure failure;
	CycleContext cy;

	memset(result, 0, sizeof(*result));
	MemoryContextReset(session->cycle_cxt);
	oldcxt = MemoryContextSwitchTo(session->cycle_cxt);

	/* read before asking: slots created after this are above it */
	replay_before = GetXLogReplayRecPtr(NULL);

	initStringInfo(&err);
	failure = primary_fetch(session->conn, PrimarySlotName,
							session->have_token, session->token, wait_ms,
							&info, &slots, &nslots, session->interrupted,
							&err);
	if (failure != REMOTE_OK)
	{
		MemoryContextSwitchTo(oldcxt);
		if (failure == REMOTE_INTERRUPTED)
			return SYNC_CYCLE_INTERRUPTED;
		slot_sync_complain_remote(complaint, failure,
								  "fetch failover slots from the primary server",
								  err.data);
		return SYNC_CYCLE_FAILED;
	}
	if (!slot_sync_validate_primary(&info, complaint))
	{
		MemoryContextSwitchTo(oldcxt);
		return SYNC_CYCLE_FAILED;
	}
	session->token = info.token;
	session->have_token = true;

	memset(&cy, 0, sizeof(cy));
	cy.session = session;
	cy.info = &info;
	cy.result = result;
	cy.standby_replay = GetXLogReplayRecPtr(NULL);
	cy.standby_flush = Max(GetWalRcvFlushRecPtr(NULL, NULL), cy.standby_replay);

	/* the manual function calls us inside its own transaction */
	own_xact = !IsTransactionState();
	if (own_xact)
		StartTransactionCommand();
	slot_sync_status_begin_cycle();

	drop_unlisted_copies(session, slots, nslots, first_cycle);
	sync_anchor_ensure(sync_anchor_target(sync_protected_from(),
										  replay_before, slots, nslots));
	cy.protected_from = sync_protected_from();
	cy.free_slots = max_replication_slots - slot_count_in_use();

	resetStringInfo(&err);
	failure = sync_listed_slots(&cy, slots, nslots, &err);

	slot_sync_status_end_cycle();
	if (own_xact)
		CommitTransactionCommand();
	MemoryContextSwitchTo(oldcxt);

	if (failure == REMOTE_INTERRUPTED)
		return SYNC_CYCLE_INTERRUPTED;
	if (failure != REMOTE_OK)
	{
		slot_sync_complain_remote(complaint, failure,
								  "fetch serialized snapshots from the primary server",
								  err.data);
		return SYNC_CYCLE_FAILED;
	}
	return SYNC_CYCLE_OK;
}
