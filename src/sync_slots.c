/*-------------------------------------------------------------------------
 *
 * sync_slots.c
 *		Deciding and acting on the slots of one sync cycle, within the
 *		cycle's budget of costly work.
 *
 * sync_cycle.c hands over the slots to look at this cycle: every listed
 * slot ("all": after a whole list, the first cycle, or when a local
 * logical slot disappeared), or those on the session's unsettled list.
 * Each is decided (sync_slot_step.c).  Plans fall in two kinds:
 *
 *	- cheap: nothing to do, or a copy's confirmed_flush to move in memory
 *	  (microseconds);
 *	- costly (slot_step_is_costly()): a state file to write (a new
 *	  restart_lsn or catalog_xmin, a copy becoming ready), a snapshot or the
 *	  standby's past to fetch from the primary first, a copy to create, drop
 *	  or demote.  Writing a state file means several fsyncs: milliseconds,
 *	  and tens of them when the disk is busy.
 *
 * The cheap plans are carried out as they are decided.  The costly ones
 * are collected and carried out afterwards, and only as many as the
 * cycle's budget allows: about CYCLE_COSTLY_MS of work, at least one slot
 * and at most CYCLE_COSTLY_SLOTS.  How many fit is judged from how long
 * costly steps have been taking in this session (CostlyBudget), so that
 * snapshots are not fetched for slots the cycle will not reach.  The rest
 * waits for the next cycle, which the worker starts at once, asking the
 * primary without waiting; meanwhile a ready copy among them takes its new
 * confirmed_flush at once (slot_step_move_confirmed_first(), which says
 * why that is safe), before the admitted costly steps run.  So while
 * thousands of slots move, a move of confirmed_flush reaches its copy in
 * the cycle that learns of it, whatever state files are being written.
 *
 * A slot left waiting stays on the unsettled list, in its place, and is
 * not decided again until the budget reaches it, unless it changes; one
 * that had its costly step and is still not settled (a copy that cannot
 * become ready yet) goes to the end of the list, so that it cannot keep
 * the others from their turn.  A
 * cycle goes without a budget while no copy is settled (ready and equal to
 * the primary's slot): a session's first cycle, or a standby whose copies
 * are all still being made ready.  No ready copy then waits for a move to
 * be copied (this cycle's cheap moves come first anyway), and making every
 * copy ready at once is what makes pre-existing slots ready soonest.
 *
 * Plans that need the primary first are batched: the standby's missing
 * history for older slots (sync_history.c), then, in one round trip, the
 * serialized snapshots; those slots are decided and acted on again.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "sync_cycle_int.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

/* The budget of costly work of a cycle: see the header comment. */
#define CYCLE_COSTLY_SLOTS		8
#define CYCLE_COSTLY_MS			2

/*
 * How many costly slots this cycle takes on: as many as fit into
 * CYCLE_COSTLY_MS at the session's running estimate of one costly step
 * (none yet: the most), at least one.
 */
static int
costly_slots_admitted(const SyncSession *session, bool budgeted)
{
	int64		fit;

	if (!budgeted)
		return INT_MAX;
	if (session->costly_step_us <= 0)
		return CYCLE_COSTLY_SLOTS;
	fit = (int64) CYCLE_COSTLY_MS * 1000 / session->costly_step_us;
	return (int) Max(1, Min(fit, CYCLE_COSTLY_SLOTS));
}

/*
 * Carry out a costly step, and fold its duration into the session's
 * estimate (a running average that follows the disk's mood within a few
 * cycles).
 */
static void
run_costly(CycleContext *cy, SlotWork *w)
{
	SyncSession *session = cy->session;
	TimestampTz start = GetCurrentTimestamp();
	int64		took;

	slot_step_run(cy, w);
	took = Max(1, GetCurrentTimestamp() - start);
	session->costly_step_us = session->costly_step_us <= 0 ? took :
		(3 * session->costly_step_us + took) / 4;
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
		if (!work[i].deferred && work[i].plan.fetch_history &&
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

		if (w->deferred || !w->plan.fetch_history)
			continue;
		slot_step_decide(cy, w);
		if (w->plan.action != SYNC_ACTION_NONE)
			run_costly(cy, w);
	}
}

/*
 * Ask the primary for the snapshots the plans asked for, then decide and
 * act on those slots again.
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
		if (work[i].deferred || !work[i].plan.fetch_snapshot)
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
			run_costly(cy, w);
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
 * A costly slot beyond the budget waits for the next cycle, unsettled,
 * having taken its new confirmed_flush if it can.
 */
static void
defer_slot(CycleContext *cy, SlotWork *w)
{
	cy->result->deferred = true;
	session_slot_settle(cy->session, w->mem, false);
	slot_step_move_confirmed_first(cy, w);
	w->deferred = true;
}

/*
 * Decide and act on the listed slots that need it: all of them ("all"), or
 * those not settled; see the header comment for the two passes and the
 * budget.
 */
RemoteFailure
sync_slots(CycleContext *cy, bool all, StringInfo err)
{
	int			nmems;
	SlotMemory **mems = slots_to_look_at(cy->session, all, &nmems);
	SlotWork   *work = palloc(sizeof(SlotWork) * Max(1, nmems));
	int		   *costly = palloc(sizeof(int) * Max(1, nmems));
	int			admitted = costly_slots_admitted(cy->session,
												 cy->session->nsettled > 0);
	int			nwork = 0;
	int			ncostly = 0;
	RemoteFailure failure;

	/* first pass: decide; carry out the cheap plans, collect the costly */
	for (int i = 0; i < nmems; i++)
	{
		SlotWork   *w = &work[nwork];

		/* no room left: a slot that waits already and did not change waits */
		if (!all && ncostly >= admitted &&
			mems[i]->reported_in != cy->session->cycle)
		{
			cy->result->deferred = true;
			continue;
		}
		memset(w, 0, sizeof(*w));
		w->mem = mems[i];
		w->remote = &w->mem->remote;
		w->dboid = slot_step_database(w->remote);
		slot_step_decide(cy, w);
		if (slot_step_is_costly(w))
			costly[ncostly++] = nwork;
		else if (w->plan.action != SYNC_ACTION_NONE)
			slot_step_run(cy, w);
		nwork++;
	}

	/* second pass: those beyond the budget wait, the others go ahead */
	for (int k = admitted; k < ncostly; k++)
		defer_slot(cy, &work[costly[k]]);
	for (int k = 0; k < Min(ncostly, admitted); k++)
	{
		SlotWork   *w = &work[costly[k]];

		if (w->plan.action != SYNC_ACTION_NONE && !w->plan.fetch_snapshot &&
			!w->plan.fetch_history)
			run_costly(cy, w);
	}
	fetch_history_and_continue(cy, work, nwork);
	failure = fetch_snapshots_and_finish(cy, work, nwork, err);
	sync_compute_horizons();

	for (int i = 0; i < nwork; i++)
		if (!work[i].deferred)
			slot_step_record(cy, &work[i]);
	for (int k = 0; k < Min(ncostly, admitted); k++)
		session_slot_requeue(cy->session, work[costly[k]].mem);
	return failure;
}
