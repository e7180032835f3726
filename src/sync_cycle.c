/*-------------------------------------------------------------------------
 *
 * sync_cycle.c
 *		One synchronization pass over the failover slots of the primary,
 *		shared by the worker and pg_slotsync.sync_replication_slots().
 *
 * A cycle:
 *
 *	1. One round trip to the primary (fetch_changes): it may first wait for
 *	   a change (primary_watch.c), then returns its state and what changed
 *	   since this session's last answer: new and changed failover slots, the
 *	   names of those gone; after a reconnect, an error, or every
 *	   FULL_LIST_INTERVAL_MS the whole list.  The system identifier is
 *	   checked every time.
 *	2. In one transaction on the standby: take the changes into the
 *	   session's per-slot memory (sync_session.c), dropping our copies of
 *	   slots the primary no longer lists; keep the anchor where it must be
 *	   (sync_anchor.c); then each slot that needs it takes its turn
 *	   (sync_slot_step.c: decide, act, decide again).  A slot needs it when
 *	   it changed, or when its copy did not equal the primary's slot at the
 *	   last look ("not settled"); every slot does after a whole list, when
 *	   the primary's physical slot for us changed (our feedback: readiness,
 *	   protection), or when a local logical slot disappeared.  With a
 *	   thousand slots and one moving, one slot is decided, found on the
 *	   session's list of unsettled slots without walking the others.  A
 *	   cycle takes on a bounded amount of costly work (CYCLE_COSTLY_SLOTS,
 *	   CYCLE_COSTLY_MS: state files, snapshots); slots beyond it stay
 *	   unsettled for the next cycle, which asks the primary without
 *	   waiting, so that while thousands of slots move, a move of
 *	   confirmed_flush alone does not wait for hundreds of state files.
 *	3. Plans that need the primary first are batched: the standby's missing
 *	   history for older slots (sync_history.c), then, in one round trip,
 *	   the serialized snapshots of every slot whose copy becomes ready or
 *	   moves its restart_lsn; those slots are decided and acted on again.
 *	4. Each slot's state and reason are recorded for the views, and the
 *	   standby's leftover logical slots are reviewed (sync_stale.c).
 *
 * No libpq call happens while a slot is acquired or a database lock is
 * held: every side effect runs between round trips, each slot in its own
 * subtransaction, with its database lock taken for that slot only.
 * Whatever goes wrong with one slot (a same-name slot in the way, its
 * database missing, an error while copying) becomes that slot's state and
 * reason, and the cycle goes on with the others.  PostgreSQL 17 instead
 * aborts the whole cycle, so one bad slot stops every other.
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
#include "sync_cycle_int.h"
#include "snapshot_file.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* ---------------------------------------------------------------------
 * The cycle
 * ---------------------------------------------------------------------
 */

/* How often the worker asks the primary for the whole list anyway. */
#define FULL_LIST_INTERVAL_MS	300000

/*
 * How much costly work a cycle (other than after a whole list) takes on: a
 * move of confirmed_flush alone costs microseconds, a new restart_lsn a
 * write of the slot's state file and a snapshot from the primary.  When
 * thousands of slots move, a cycle that did every costly step at once
 * would keep every other slot's move waiting for it; so after this many
 * slots, or this long, the rest waits for the next cycle, which comes at
 * once.  The first costly slot of a cycle always goes ahead.
 */
#define CYCLE_COSTLY_SLOTS		8
#define CYCLE_COSTLY_MS			2

/* Drop our copy of a slot the primary no longer lists, and forget it. */
static void
forget_slot(SyncSession *session, SlotMemory *m)
{
	if (m->had_copy)
	{
		LocalSlot	copy;

		sync_read_local(NameStr(m->name), &copy, &m->marker);
		if (copy.exists && copy.synced)
		{
			sync_lock_database(copy.database, NULL);
			sync_drop_copy(NameStr(m->name), true);
			sync_unlock_database(copy.database);
		}
	}
	slot_sync_status_remove(NameStr(m->name));
	session_slot_forget(session, m);
	session->anchor_inputs_changed = true;
}

/*
 * Take in what the primary reported: the whole list, or the changes since
 * its last answer (new and changed slots, slots gone).  Copies of slots it
 * no longer lists (dropped there, or no longer failover slots) are dropped.
 * On the first cycle every local slot is looked at for copies; later only
 * those we know, since only sync creates copies.
 */
static void
take_changes(SyncSession *session, const RemoteSlot *rows, int nrows,
			 bool full, bool first_cycle)
{
	HASH_SEQ_STATUS seq;
	SlotMemory *m;

	session_slot_memory_init(session);
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
				session_slot_memory(session, NameStr(local[i].name))->had_copy = true;
		}
		pfree(local);
	}

	if (full)
	{
		hash_seq_init(&seq, session->memory);
		while ((m = hash_seq_search(&seq)) != NULL)
			m->listed = false;
		session->anchor_inputs_changed = true;
	}
	for (int i = 0; i < nrows; i++)
	{
		m = session_slot_memory(session, NameStr(rows[i].name));
		if (rows[i].removed)
		{
			forget_slot(session, m);
			continue;
		}
		if (!m->listed || m->remote.restart_lsn != rows[i].restart_lsn ||
			m->remote.invalidated != rows[i].invalidated)
			session->anchor_inputs_changed = true;
		m->remote = rows[i];
		m->reported_in = session->cycle;
		m->listed = true;
		session_slot_settle(session, m, false);
	}
	if (!full)
		return;

	/* removing the current element is allowed during a scan */
	hash_seq_init(&seq, session->memory);
	while ((m = hash_seq_search(&seq)) != NULL)
		if (!m->listed)
			forget_slot(session, m);
}

/*
 * Where the anchor may move: see sync_anchor_target(), over every slot the
 * primary lists.  The lowest listed restart_lsn above the anchor is kept
 * from one cycle to the next, and found again only when a listed
 * restart_lsn changed, a slot came or went, or the anchor moved.
 */
static XLogRecPtr
anchor_target(SyncSession *session, XLogRecPtr replay_before)
{
	HASH_SEQ_STATUS seq;
	SlotMemory *m;
	RemoteSlot *listed;
	int			n = 0;
	XLogRecPtr	floor = sync_protected_from();

	if (session->anchor_inputs_changed || floor != session->anchor_floor)
	{
		listed = palloc(sizeof(RemoteSlot) *
						Max(1, hash_get_num_entries(session->memory)));
		hash_seq_init(&seq, session->memory);
		while ((m = hash_seq_search(&seq)) != NULL)
			if (m->listed)
				listed[n++] = m->remote;
		session->anchor_lowest = sync_anchor_target(floor, PG_UINT64_MAX,
													listed, n);
		session->anchor_floor = floor;
		session->anchor_inputs_changed = false;
		pfree(listed);
	}
	return Min(replay_before, session->anchor_lowest);
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
			(XLogRecPtrIsInvalid(from) || work[i].copy.restart_lsn < from))
			from = work[i].copy.restart_lsn;
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
		slot_step_decide(cy, w);
		if (w->plan.action != SYNC_ACTION_NONE)
			slot_step_run(cy, w);
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
		slot_step_decide(cy, w);
		if (w->plan.action != SYNC_ACTION_NONE)
			slot_step_run(cy, w);
	}
	return REMOTE_OK;
}

/*
 * The listed slots to look at this cycle: every one ("all"), or those on
 * the unsettled list, in its order (a palloc'd array of *n).
 */
static SlotMemory **
slots_to_look_at(SyncSession *session, bool all, int *n)
{
	SlotMemory **mems;
	SlotMemory *m;

	*n = 0;
	mems = palloc(sizeof(SlotMemory *) *
				  Max(1, hash_get_num_entries(session->memory)));
	if (all)
	{
		HASH_SEQ_STATUS seq;

		hash_seq_init(&seq, session->memory);
		while ((m = hash_seq_search(&seq)) != NULL)
			if (m->listed)
				mems[(*n)++] = m;
	}
	else
	{
		dlist_iter	iter;

		dlist_foreach(iter, &session->unsettled)
		{
			m = dlist_container(SlotMemory, unsettled_node, iter.cur);
			if (m->listed)
				mems[(*n)++] = m;
		}
	}
	return mems;
}

/*
 * Decide and act on the listed slots that need it: all of them ("all"), or
 * those not settled (new, changed, or not equal to the primary's slot at
 * the last look); see the header comment, also for the budget of costly
 * work that a cycle other than after a whole list keeps to.
 */
static RemoteFailure
sync_slots(CycleContext *cy, bool all, StringInfo err)
{
	int			nmems;
	SlotMemory **mems = slots_to_look_at(cy->session, all, &nmems);
	SlotWork   *work = palloc(sizeof(SlotWork) * Max(1, nmems));
	int			nwork = 0;
	int			ncostly = 0;
	int64		costly_us = 0;
	RemoteFailure failure;

	for (int i = 0; i < nmems; i++)
	{
		SlotWork   *w = &work[nwork];
		bool		out_of_budget = !all && ncostly > 0 &&
			(ncostly >= CYCLE_COSTLY_SLOTS ||
			 costly_us >= CYCLE_COSTLY_MS * 1000);
		bool		costly;
		TimestampTz start;

		/* out of budget, a slot that waits already and did not change waits */
		if (out_of_budget && mems[i]->reported_in != cy->session->cycle)
		{
			cy->result->deferred = true;
			continue;
		}
		memset(w, 0, sizeof(*w));
		w->mem = mems[i];
		w->remote = &w->mem->remote;
		w->dboid = slot_step_database(w->remote);
		slot_step_decide(cy, w);

		costly = !all && slot_step_is_costly(w);
		if (costly && out_of_budget)
		{
			cy->result->deferred = true;
			slot_step_move_confirmed_first(cy, w);
			continue;
		}
		nwork++;
		start = GetCurrentTimestamp();
		if (w->plan.action != SYNC_ACTION_NONE && !w->plan.fetch_snapshot &&
			!w->plan.fetch_history)
			slot_step_run(cy, w);
		if (costly)
		{
			ncostly++;
			costly_us += GetCurrentTimestamp() - start;
		}
	}

	fetch_history_and_continue(cy, work, nwork);
	failure = fetch_snapshots_and_finish(cy, work, nwork, err);
	sync_compute_horizons();

	for (int i = 0; i < nwork; i++)
		slot_step_record(cy, &work[i]);
	return failure;
}

/*
 * Did something change on the standby that may change the decision for
 * slots the primary reported no change for?  The primary's physical slot
 * for us (our feedback: readiness, protection), a full list, or a local
 * logical slot gone (a copy dropped by hand, by DROP DATABASE replay) or
 * invalidated by this standby's own checkpoint.
 */
static bool
look_at_every_slot(SyncSession *session, const PrimaryInfo *info,
				   bool first_cycle)
{
	bool		all = first_cycle || info->full_list ||
		info->standby_slot_catalog_xmin != session->last_primary_xmin ||
		slot_count_live_logical() < session->logical_slots_seen;

	session->last_primary_xmin = info->standby_slot_catalog_xmin;
	return all;
}

/* One round trip, checked; false with a complaint if it failed. */
static SyncCycleStatus
fetch_changes(SyncSession *session, int wait_ms, PrimaryInfo *info,
			  RemoteSlot **rows, int *nrows, SyncComplaint *complaint)
{
	StringInfoData err;
	RemoteFailure failure;
	bool		want_full = !session->have_token ||
		TimestampDifferenceExceeds(session->last_full, GetCurrentTimestamp(),
								   FULL_LIST_INTERVAL_MS);

	initStringInfo(&err);
	failure = primary_fetch(session->conn, PrimarySlotName,
							session->have_token && !want_full, session->token,
							wait_ms, info, rows, nrows, session->interrupted,
							&err);
	if (failure == REMOTE_INTERRUPTED)
		return SYNC_CYCLE_INTERRUPTED;
	if (failure != REMOTE_OK)
	{
		slot_sync_complain_remote(complaint, failure,
								  "fetch failover slots from the primary server",
								  err.data);
		return SYNC_CYCLE_FAILED;
	}
	if (!slot_sync_validate_primary(info, complaint))
		return SYNC_CYCLE_FAILED;
	session->token = info->token;
	session->have_token = true;
	if (info->full_list)
		session->last_full = GetCurrentTimestamp();
	return SYNC_CYCLE_OK;
}

SyncCycleStatus
slot_sync_cycle(SyncSession *session, int wait_ms, SyncCycleResult *result,
				SyncComplaint *complaint)
{
	XLogRecPtr	replay_before;
	PrimaryInfo info;
	RemoteSlot *rows;
	int			nrows;
	StringInfoData err;
	MemoryContext oldcxt;
	bool		first_cycle = (session->memory == NULL);
	bool		own_xact;
	bool		all;
	RemoteFailure failure;
	SyncCycleStatus status;
	CycleContext cy;

	memset(result, 0, sizeof(*result));
	MemoryContextReset(session->cycle_cxt);
	oldcxt = MemoryContextSwitchTo(session->cycle_cxt);

	/* read before asking: slots created after this are above it */
	replay_before = GetXLogReplayRecPtr(NULL);
	status = fetch_changes(session, wait_ms, &info, &rows, &nrows, complaint);
	if (status != SYNC_CYCLE_OK)
	{
		MemoryContextSwitchTo(oldcxt);
		return status;
	}

	memset(&cy, 0, sizeof(cy));
	cy.session = session;
	cy.info = &info;
	cy.result = result;
	result->primary_sysid = info.system_identifier;
	cy.standby_replay = GetXLogReplayRecPtr(NULL);
	cy.standby_flush = Max(GetWalRcvFlushRecPtr(NULL, NULL), cy.standby_replay);

	/* the manual function calls us inside its own transaction */
	own_xact = !IsTransactionState();
	if (own_xact)
		StartTransactionCommand();
	if (info.full_list)
		slot_sync_status_begin_cycle();

	session->cycle++;
	take_changes(session, rows, nrows, info.full_list, first_cycle);
	all = look_at_every_slot(session, &info, first_cycle);
	sync_anchor_ensure(anchor_target(session, replay_before));
	cy.protected_from = sync_protected_from();
	cy.free_slots = max_replication_slots - slot_count_in_use();

	initStringInfo(&err);
	failure = sync_slots(&cy, all, &err);
	sync_stale_review(session, all);

	if (info.full_list)
		slot_sync_status_end_cycle();
	slot_sync_status_touch_settled();
	if (own_xact)
		CommitTransactionCommand();
	MemoryContextSwitchTo(oldcxt);
	session->logical_slots_seen = slot_count_live_logical();

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
