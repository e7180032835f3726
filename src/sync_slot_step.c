/*-------------------------------------------------------------------------
 *
 * sync_slot_step.c
 *		One failover slot's turn in a sync cycle: gather its inputs, ask
 *		slot_sync_decide() for a plan, carry the plan out, record where it
 *		ended up.
 *
 * The rules are slot_sync_decide()'s (sync_decide.c); this file only
 * gathers what it needs (the copy as it is now, the primary's snapshot if
 * fetched, the standby's flush and replay positions, the protection the
 * anchor and the primary give) and does what it says, through sync_apply.c
 * and sync_stale.c, deciding again after each structural step (create,
 * drop, demote, ...) until the plan is "nothing", an update, or "ask the
 * primary first" (a snapshot, history), which sync_slots.c batches.
 *
 * Each slot's plan runs in its own subtransaction, under its database's
 * lock taken for that slot only and released before the next one: an error
 * becomes the slot's state and reason, the cycle goes on with the others,
 * and no lock is held across a round trip to the primary (replaying DROP
 * DATABASE never waits for one).  A cancel or a shutdown is rethrown: it is
 * the caller's, not the slot's.
 *
 * Reasons are logged once per change of the kind of reason per slot, in
 * core's words, not once per cycle.
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
#include "slot_copy.h"
#include "snapshot_file.h"
#include "sync_cycle_int.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* ---------------------------------------------------------------------
 * Deciding
 * ---------------------------------------------------------------------
 */

/*
 * The slot's database here: the primary's OID (a physical standby has the
 * same), if the standby has that database; InvalidOid if not.
 */
Oid
slot_step_database(const RemoteSlot *remote)
{
	if (OidIsValid(remote->database_oid) &&
		SearchSysCacheExists1(DATABASEOID,
							  ObjectIdGetDatum(remote->database_oid)))
		return remote->database_oid;
	return InvalidOid;
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
 * Does the plan leave a copy that is ready, with nothing to wait for?
 * Only such a copy, once equal to the primary's slot, is settled: one not
 * ready waits for things (the primary's feedback for its catalog_xmin)
 * that arrive without the primary reporting the slot, and a ready copy
 * held back until the standby flushes the WAL its slot moved over is not
 * equal to the primary's slot yet; both are decided again next cycle.
 */
static bool
plan_leaves_copy_settled(const SyncPlan *plan)
{
	return plan->state == SYNC_STATE_READY &&
		plan->reason_code == SYNC_REASON_NONE &&
		XLogRecPtrIsInvalid(plan->needs_flush);
}

/*
 * Gather the inputs for one slot as things are now, and decide.
 */
void
slot_step_decide(CycleContext *cy, SlotWork *w)
{
	SyncInputs	in;
	const char *name = NameStr(w->remote->name);

	memset(&in, 0, sizeof(in));
	in.remote = w->remote;
	sync_read_local(name, &in.local, &w->mem->marker, &w->mem->slot_index);
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
	in.replace_stale = pg_slotsync_stale_slot_policy == STALE_SLOTS_REPLACE;

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
	w->copy = in.local;

	slot_sync_decide(&in, &w->plan);
	w->synced_now = w->plan.action == SYNC_ACTION_NONE &&
		plan_leaves_copy_settled(&w->plan);
}

/*
 * Does carrying out the plan cost more than moving the copy's
 * confirmed_flush in memory?  Writing the slot's state file (a new
 * restart_lsn or catalog_xmin, becoming ready), fetching a snapshot or the
 * standby's past, creating or dropping a copy do.
 */
bool
slot_step_is_costly(const SlotWork *w)
{
	if (w->plan.fetch_snapshot || w->plan.fetch_history)
		return true;
	if (w->plan.action == SYNC_ACTION_NONE)
		return false;
	if (w->plan.action != SYNC_ACTION_UPDATE || w->plan.becomes_ready)
		return true;
	return w->remote->restart_lsn != w->copy.restart_lsn ||
		w->remote->catalog_xmin != w->copy.catalog_xmin;
}

/*
 * The slot's costly step waits for a later cycle (sync_slots.c); a ready
 * copy takes the new confirmed_flush now all the same, keeping its
 * restart_lsn and catalog_xmin.  That is safe: the
 * primary's own slot passes through such states (confirmed_flush moves
 * first, restart_lsn and catalog_xmin follow once decoding has passed a
 * point it can restart from), and decoding from an older restart_lsn with
 * an older catalog_xmin keeps more, never less: it yields every change
 * after the new position.  Only where the decision already let the copy
 * move (the plan updates it, or would once the snapshot is there), the
 * copy stays ready, and the standby has the WAL up to the new position.
 */
void
slot_step_move_confirmed_first(CycleContext *cy, SlotWork *w)
{
	RemoteSlot *partial = &w->confirmed_only;

	if (w->plan.state != SYNC_STATE_READY || w->plan.becomes_ready ||
		!XLogRecPtrIsInvalid(w->plan.needs_flush) || !w->copy.ready ||
		w->remote->confirmed_flush <= w->copy.confirmed_flush ||
		!(w->plan.action == SYNC_ACTION_UPDATE || w->plan.fetch_snapshot))
		return;

	/*
	 * Not across a change of two-phase state: the primary's slot never
	 * had the old one with the new position.
	 */
	if (w->remote->two_phase != w->copy.two_phase ||
		w->remote->two_phase_at != w->copy.two_phase_at)
		return;

	*partial = *w->remote;
	partial->restart_lsn = w->copy.restart_lsn;
	partial->catalog_xmin = w->copy.catalog_xmin;
	w->remote = partial;
	w->plan.action = SYNC_ACTION_UPDATE;
	w->plan.fetch_snapshot = false;
	w->plan.fetch_history = false;
	w->snapshot = NULL;
	slot_step_run(cy, w);
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
		case SYNC_ACTION_REPLACE_STALE:
			sync_replace_stale(name);
			cy->free_slots++;
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
void
slot_step_run(CycleContext *cy, SlotWork *w)
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
			slot_step_decide(cy, w);
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
void
slot_step_record(CycleContext *cy, SlotWork *w)
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
	session_slot_settle(cy->session, w->mem,
						w->synced_now && plan_leaves_copy_settled(&w->plan));
	cy->result->nexamined++;
	log_reason_change(w->mem, name, w->plan.reason_code, w->plan.reason);
	if (!slot_sync_status_set(w->remote, w->plan.state, w->plan.reason_code,
							  w->plan.reason, w->synced_now,
							  &w->mem->status_index))
		cy->result->pending = true;
}
