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
 *	   (sync_anchor.c).  A slot needs deciding when it changed, or when its
 *	   copy did not equal the primary's slot at the last look ("not
 *	   settled"); every slot does after a whole list, or when a local
 *	   logical slot disappeared; when the primary's physical slot for us
 *	   moves (our feedback: protection), the copies it no longer covers do.
 *	   With a thousand slots and one moving, one slot is decided, found on
 *	   the session's list of unsettled slots without walking the others.
 *	3. The slots that need it are decided and acted on (sync_slots.c; each
 *	   in sync_slot_step.c: decide, act, decide again): cheap plans at
 *	   once, costly ones (state files, snapshots) within the cycle's budget,
 *	   the rest in the next cycle, which asks the primary without waiting.
 *	   Plans that need the primary first (the standby's past, snapshots)
 *	   share one round trip each.
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

/* Drop our copy of a slot the primary no longer lists, and forget it. */
static void
forget_slot(SyncSession *session, SlotMemory *m)
{
	if (m->had_copy)
	{
		LocalSlot	copy;

		sync_read_local(NameStr(m->name), &copy, &m->marker, &m->slot_index);
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
			sync_read_local(NameStr(local[i].name), &copy, NULL, NULL);
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
 * Did something change on the standby that may change the decision for
 * slots the primary reported no change for?  A full list, or a local
 * logical slot gone (a copy dropped by hand, by DROP DATABASE replay) or
 * invalidated by this standby's own checkpoint.
 */
static bool
look_at_every_slot(SyncSession *session, const PrimaryInfo *info,
				   bool first_cycle)
{
	return first_cycle || info->full_list ||
		slot_count_live_logical() < session->logical_slots_seen;
}

/*
 * The primary's physical slot for us (our feedback) says whether the
 * primary keeps the catalog rows a ready copy needs.  When its catalog_xmin
 * moves, the settled copies it no longer covers are decided again, to be
 * demoted: those whose catalog_xmin precedes it, or all of them when it has
 * none.  A settled copy equals the primary's slot as last reported, so its
 * catalog_xmin is known without looking at the copy.  Copies not settled
 * are decided anyway (a copy waiting for this feedback among them).  In a
 * healthy cluster the feedback covers every copy and this finds none; it
 * moves with every round of decoding, so deciding every copy each time
 * would make those cycles as long as after a whole list.
 */
static void
unsettle_unprotected(SyncSession *session, TransactionId primary_xmin)
{
	HASH_SEQ_STATUS seq;
	SlotMemory *m;

	if (primary_xmin == session->last_primary_xmin)
		return;
	session->last_primary_xmin = primary_xmin;
	hash_seq_init(&seq, session->memory);
	while ((m = hash_seq_search(&seq)) != NULL)
		if (m->settled &&
			(!TransactionIdIsValid(primary_xmin) ||
			 TransactionIdPrecedes(m->remote.catalog_xmin, primary_xmin)))
			session_slot_settle(session, m, false);
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
	unsettle_unprotected(session, info.standby_slot_catalog_xmin);
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
