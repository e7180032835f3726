/*-------------------------------------------------------------------------
 *
 * sync_decide.c
 *		What to do with one failover slot, given what the primary reports
 *		and what the standby has.  Decisions only: no side effects.  Every
 *		rule that keeps a synced slot safe is here, and nowhere else:
 *		sync_slot_step.c gathers the inputs and carries the plan out through
 *		sync_apply.c, and asks again after each step.
 *
 * A synced slot is "ready" when decoding from it after promotion yields
 * every change after its confirmed_flush_lsn, exactly as decoding from the
 * primary's slot would.  That needs three things on the standby:
 *
 *	1. WAL from the slot's restart_lsn.  The copy's restart_lsn is never
 *	   below the remote one and never above what the standby has flushed,
 *	   and the WAL is reserved by the copy itself.
 *
 *	2. The catalog rows its catalog_xmin needs.  The standby never protects
 *	   rows by itself: replaying the primary's pruning removes them whatever
 *	   the standby's slots say.  The primary protects them: until it is told
 *	   otherwise by its own slot (whose catalog_xmin only grows), and once
 *	   the standby's hot_standby_feedback has reached its physical slot, by
 *	   that slot.  So a copy with catalog_xmin X is safe when the primary's
 *	   physical slot for this standby has a catalog_xmin P <= X, read before
 *	   X was read: before P was read the primary's own slot held rows for X
 *	   (it was at most X, since it only grows); from then on P holds them.
 *
 *	3. A consistent snapshot at or before confirmed_flush when decoding
 *	   starts at restart_lsn.  The primary's slot guarantees this through a
 *	   serialized snapshot at restart_lsn (pg_logical/snapshots), or, for a
 *	   slot whose restart_lsn never moved since creation, by rebuilding the
 *	   snapshot the way it was built at creation (which never restores a
 *	   serialized one).  The copy gets the very same file (snapshot_file.c;
 *	   SNAPSHOT_RECEIVED or SNAPSHOT_ON_STANDBY) or, where the primary has
 *	   none (SNAPSHOT_NONE), repeats the same rebuild over the same WAL.
 *	   Decoding files the standby writes itself by replay (logical rewrite
 *	   mappings) must not have been removed since restart_lsn: the copy's
 *	   restart_lsn is never below "protected_from", the oldest restart_lsn
 *	   our slots (the anchor, the copies) have held continuously; see
 *	   sync_anchor.c.
 *
 * So a copy of a slot at or above protected_from is created at the remote
 * restart_lsn.  A slot older than that (created before the standby started
 * syncing, say) has a past the standby may lack: WAL from before a
 * pg_basebackup, mapping files deleted while the standby held no logical
 * slot.  Its copy is created at the remote restart_lsn all the same, marked
 * "history pending", and is not ready until sync_history.c has fetched what
 * the standby lacks from the primary (SYNC_REASON_FETCHING_HISTORY, then
 * SYNC_ACTION_HISTORY_DONE).  Where that cannot be done (WAL removed by
 * this standby since it started, which walsenders then refuse to read;
 * more than pg_slotsync.max_wal_fetch; fetching failed), the copy starts at
 * protected_from instead and cannot be ready until the remote slot moves
 * past it (SYNC_REASON_WAITING_FOR_REMOTE), as a core copy waits when the
 * standby lacks the WAL.
 *
 * A copy is the primary's slot only if it is the same slot: same database,
 * same output plugin, same incarnation (a random id the primary gives each
 * failover slot, see slot_marker.h), and two_phase never switched off.  A
 * copy of another incarnation, or a ready copy ahead of the primary's slot
 * (the primary's slot was dropped and created again, or someone moved the
 * copy), is dropped and created afresh, not ready until proven again.  A
 * not-ready copy never moves backwards either: it waits.
 *
 * A ready copy stays ready only while the primary keeps its catalog rows
 * (rule 2): once the primary's physical slot for this standby has no
 * catalog_xmin, or one above the copy's, replay may already have removed
 * rows the copy needs, and on PostgreSQL 15 nothing would invalidate the
 * copy on the standby (16 and later do, on conflict).  Such a copy is
 * demoted at once (SYNC_ACTION_DEMOTE: not ready on disk, dropped at
 * promotion) and proven again from the primary's current position like a
 * new one.  The standby's own settings can tell the same before the
 * primary does: hot_standby_feedback off, primary_slot_name unset or
 * changed while WAL streams (sync_local_protection_lost()); the syncing
 * process, or the launcher when nobody syncs, then demotes every ready
 * copy.
 *
 * A ready copy that is merely not current is still safe where it is: a
 * consumer resuming from it gets every change after its position, some of
 * them again.  It is kept at promotion (the primary may be gone; its copies
 * are the best there is), but after pg_slotsync.stale_after without being
 * confirmed equal to the primary's slot it is reported "stale": when it has
 * not followed the primary's slot for that long (SYNC_REASON_LAGGING,
 * decided here from how long it has been behind), or when no syncing
 * process has completed a cycle for that long (SYNC_REASON_NO_RECENT_SYNC,
 * sync_reported_state(), for the views).
 *
 * Moving a ready copy's restart_lsn, or making a copy ready, needs the
 * snapshot at the new restart_lsn (rule 3): the plan then asks for it
 * (fetch_snapshot), the cycle gets it from the primary for all slots at
 * once, and asks again with the answer.  A copy that is not ready follows
 * the primary's position without snapshots: it only needs one to become
 * ready.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "sync_decide.h"

static void
set_reason(SyncPlan *plan, SyncReason code, const char *fmt,...)
			pg_attribute_printf(3, 4);

static void
set_reason(SyncPlan *plan, SyncReason code, const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	vsnprintf(plan->reason, sizeof(plan->reason), fmt, args);
	va_end(args);
	plan->reason_code = code;
}

/* A ready copy stays ready while it waits for something transient. */
static void
clear_reason_if_ready(SyncPlan *plan)
{
	if (plan->state != SYNC_STATE_READY)
		return;
	plan->reason[0] = '\0';
	plan->reason_code = SYNC_REASON_NONE;
}

const char *
sync_reason_name(SyncReason reason)
{
	switch (reason)
	{
		case SYNC_REASON_NONE:
			return NULL;
		case SYNC_REASON_SAME_NAME_SLOT:
			return "same_name_slot";
		case SYNC_REASON_REMOTE_INVALIDATED:
			return "remote_invalidated";
		case SYNC_REASON_REMOTE_INCOMPLETE:
			return "remote_incomplete";
		case SYNC_REASON_DATABASE_MISSING:
			return "database_missing";
		case SYNC_REASON_IDENTITY_CHANGED:
			return "identity_changed";
		case SYNC_REASON_LOCAL_INVALIDATED:
			return "local_invalidated";
		case SYNC_REASON_UNPROTECTED:
			return "unprotected";
		case SYNC_REASON_WAL_NOT_FLUSHED:
			return "wal_not_flushed";
		case SYNC_REASON_NO_FREE_SLOT:
			return "no_free_slot";
		case SYNC_REASON_CREATING:
			return "creating";
		case SYNC_REASON_LOCAL_AHEAD:
			return "local_ahead";
		case SYNC_REASON_WAITING_FOR_REMOTE:
			return "waiting_for_remote";
		case SYNC_REASON_FEEDBACK_PENDING:
			return "feedback_pending";
		case SYNC_REASON_SLOT_MOVED:
			return "slot_moved";
		case SYNC_REASON_SNAPSHOT_INVALID:
			return "snapshot_invalid";
		case SYNC_REASON_FETCHING_HISTORY:
			return "fetching_history";
		case SYNC_REASON_HISTORY_UNAVAILABLE:
			return "history_unavailable";
		case SYNC_REASON_LAGGING:
			return "lagging";
		case SYNC_REASON_NO_RECENT_SYNC:
			return "no_recent_sync";
		case SYNC_REASON_ERROR:
			return "error";
	}
	return "unknown";
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
		case SYNC_STATE_STALE:
			return "stale";
		case SYNC_STATE_CONFLICT:
			return "conflict";
		case SYNC_STATE_INVALIDATED:
			return "invalidated";
		case SYNC_STATE_ERROR:
			return "error";
	}
	return "unknown";
}

/* Reasons core words as "Synchronization could lead to data loss" */
bool
sync_reason_is_data_loss(SyncReason reason)
{
	return reason == SYNC_REASON_WAL_NOT_FLUSHED ||
		reason == SYNC_REASON_WAITING_FOR_REMOTE ||
		reason == SYNC_REASON_FEEDBACK_PENDING;
}

static bool
remote_ahead_or_equal(const RemoteSlot *r, const LocalSlot *l)
{
	return r->restart_lsn >= l->restart_lsn &&
		r->confirmed_flush >= l->confirmed_flush &&
		!TransactionIdPrecedes(r->catalog_xmin, l->catalog_xmin);
}

static bool
remote_differs(const RemoteSlot *r, const LocalSlot *l)
{
	return r->restart_lsn != l->restart_lsn ||
		r->confirmed_flush != l->confirmed_flush ||
		r->catalog_xmin != l->catalog_xmin ||
		r->two_phase != l->two_phase ||
		r->two_phase_at != l->two_phase_at;
}

/*
 * Is the local copy a copy of another slot than the primary's?  Says which
 * way in the plan's reason.
 */
static bool
identity_differs(const SyncInputs *in, SyncPlan *plan)
{
	const RemoteSlot *r = in->remote;
	const LocalSlot *l = &in->local;

	if (l->incarnation != r->incarnation)
		set_reason(plan, SYNC_REASON_IDENTITY_CHANGED,
				   "the standby's copy is of incarnation " UINT64_FORMAT " of the slot, the primary's slot is incarnation " UINT64_FORMAT,
				   l->incarnation, r->incarnation);
	else if (l->database != in->database_oid)
		set_reason(plan, SYNC_REASON_IDENTITY_CHANGED,
				   "the standby's copy is of database OID %u, the primary's slot of database \"%s\" (OID %u)",
				   l->database, NameStr(r->database), in->database_oid);
	else if (l->ready && strcmp(NameStr(l->plugin), NameStr(r->plugin)) != 0)
		set_reason(plan, SYNC_REASON_IDENTITY_CHANGED,
				   "the standby's copy uses output plugin \"%s\", the primary's slot \"%s\"",
				   NameStr(l->plugin), NameStr(r->plugin));
	else if (l->two_phase && !r->two_phase)
		set_reason(plan, SYNC_REASON_IDENTITY_CHANGED,
				   "the standby's copy has two_phase enabled, the primary's slot has not");
	else
		return false;
	return true;
}

/* Below this, the standby's past may be incomplete (see the header). */
static XLogRecPtr
protected_floor(const SyncInputs *in)
{
	/* without any protecting slot, nothing before the replay position */
	if (XLogRecPtrIsInvalid(in->protected_from))
		return in->standby_replay;
	return in->protected_from;
}

/*
 * Can the standby's WAL and mapping files from "from" on be completed from
 * the primary?  Says why not in "why".
 */
static bool
history_fetchable(const SyncInputs *in, XLogRecPtr from, char *why,
				  Size whylen)
{
	int64		missing;

	if (in->max_fetch_bytes <= 0)
	{
		strlcpy(why, "fetching history is off (\"pg_slotsync.max_wal_fetch\" is 0)", whylen);
		return false;
	}
	if (XLogRecPtrIsInvalid(in->wal_from))
	{
		strlcpy(why, "the standby's WAL was not looked at", whylen);
		return false;
	}
	if (!XLogRecPtrIsInvalid(in->removed_upto) && from < in->removed_upto)
	{
		snprintf(why, whylen, "the standby removed WAL up to %X/%X since it started",
				 LSN_FORMAT_ARGS(in->removed_upto));
		return false;
	}
	missing = in->wal_from > from ? (int64) (in->wal_from - from) : 0;
	if (missing > in->max_fetch_bytes)
	{
		snprintf(why, whylen, "it would need " INT64_FORMAT " MB of WAL the standby lacks, more than \"pg_slotsync.max_wal_fetch\" allows",
				 missing / (1024 * 1024));
		return false;
	}
	if (in->history_failure != NULL)
	{
		snprintf(why, whylen, "fetching it failed: %s", in->history_failure);
		return false;
	}
	return true;
}

/* A copy that does not exist yet: create it where it is safe to start. */
static void
decide_create(const SyncInputs *in, SyncPlan *plan)
{
	const RemoteSlot *r = in->remote;
	XLogRecPtr	floor = protected_floor(in);
	char		why[256];

	if (!in->free_slot)
	{
		plan->state = SYNC_STATE_ERROR;
		set_reason(plan, SYNC_REASON_NO_FREE_SLOT,
				   "the standby has no free replication slot for a copy (increase \"max_replication_slots\" on the standby)");
		return;
	}

	plan->action = SYNC_ACTION_CREATE;
	plan->state = SYNC_STATE_NOT_READY;
	plan->create_at = Max(r->restart_lsn, floor);
	if (r->restart_lsn < floor &&
		history_fetchable(in, r->restart_lsn, why, sizeof(why)))
	{
		plan->create_at = r->restart_lsn;
		plan->history_pending = true;
	}
	set_reason(plan, SYNC_REASON_CREATING,
			   "the slot is being created on the standby");
}

/*
 * A not-ready copy whose WAL or mapping files are still to be fetched.
 */
static void
decide_history(const SyncInputs *in, SyncPlan *plan)
{
	const LocalSlot *l = &in->local;
	char		why[256];

	if (!XLogRecPtrIsInvalid(in->history_fetched_from) &&
		in->history_fetched_from <= l->restart_lsn)
	{
		plan->action = SYNC_ACTION_HISTORY_DONE;
		set_reason(plan, SYNC_REASON_FETCHING_HISTORY,
				   "the standby's WAL and logical rewrite mapping files from %X/%X on were fetched",
				   LSN_FORMAT_ARGS(l->restart_lsn));
	}
	else if (history_fetchable(in, l->restart_lsn, why, sizeof(why)))
	{
		plan->fetch_history = true;
		set_reason(plan, SYNC_REASON_FETCHING_HISTORY,
				   "the standby's WAL and logical rewrite mapping files from %X/%X on are being fetched from the primary",
				   LSN_FORMAT_ARGS(l->restart_lsn));
	}
	else
		set_reason(plan, SYNC_REASON_HISTORY_UNAVAILABLE,
				   "the copy starts at %X/%X, before what the standby has, and %s",
				   LSN_FORMAT_ARGS(l->restart_lsn), why);
}

/*
 * Moving a ready copy's restart_lsn or making a copy ready: only with the
 * snapshot at the remote restart_lsn.  Returns true if the update may go
 * ahead; otherwise the plan says what instead.
 */
static bool
snapshot_allows_update(const SyncInputs *in, SyncPlan *plan)
{
	const RemoteSlot *r = in->remote;

	switch (in->snapshot)
	{
		case SNAPSHOT_ON_STANDBY:
		case SNAPSHOT_RECEIVED:
		case SNAPSHOT_NONE:
			return true;
		case SNAPSHOT_NOT_LOOKED:
			plan->fetch_snapshot = true;
			set_reason(plan, SYNC_REASON_CREATING,
					   "the serialized snapshot at %X/%X is being fetched from the primary",
					   LSN_FORMAT_ARGS(r->restart_lsn));
			clear_reason_if_ready(plan);
			break;
		case SNAPSHOT_SLOT_MOVED:
			set_reason(plan, SYNC_REASON_SLOT_MOVED,
					   "the slot moved on the primary while it was being synchronized");
			clear_reason_if_ready(plan);
			break;
		case SNAPSHOT_INVALID:
			set_reason(plan, SYNC_REASON_SNAPSHOT_INVALID,
					   "the serialized snapshot at %X/%X received from the primary is not valid",
					   LSN_FORMAT_ARGS(r->restart_lsn));
			break;
	}
	plan->action = SYNC_ACTION_NONE;
	plan->becomes_ready = false;
	return false;
}

/* An existing copy of the same slot, neither ahead nor invalidated. */
static void
decide_update(const SyncInputs *in, SyncPlan *plan)
{
	const RemoteSlot *r = in->remote;
	const LocalSlot *l = &in->local;

	if (l->ready)
	{
		if (!remote_differs(r, l))
			return;
		plan->action = SYNC_ACTION_UPDATE;
		if (r->restart_lsn != l->restart_lsn)
			(void) snapshot_allows_update(in, plan);
		return;
	}

	if (l->history_pending)
	{
		decide_history(in, plan);
		return;
	}

	/* not ready yet: only the primary's feedback guarantee is missing? */
	if (!in->primary_keeps_catalog ||
		TransactionIdPrecedes(r->catalog_xmin, in->primary_catalog_xmin))
	{
		if (remote_differs(r, l))
			plan->action = SYNC_ACTION_UPDATE;
		if (!in->primary_keeps_catalog)
			set_reason(plan, SYNC_REASON_FEEDBACK_PENDING,
					   "the primary does not yet keep catalog rows for catalog xmin %u: its physical slot for this standby has no catalog_xmin (hot_standby_feedback has not arrived)",
					   r->catalog_xmin);
		else
			set_reason(plan, SYNC_REASON_FEEDBACK_PENDING,
					   "the primary does not yet keep catalog rows for catalog xmin %u: its physical slot for this standby has catalog_xmin %u",
					   r->catalog_xmin, in->primary_catalog_xmin);
		return;
	}

	plan->action = SYNC_ACTION_UPDATE;
	plan->becomes_ready = true;
	if (snapshot_allows_update(in, plan))
		plan->state = SYNC_STATE_READY;
}

/*
 * A slot under the remote slot's name that sync did not make.  If it is
 * logical, a PostgreSQL 15 standby cannot have created it, so it is a
 * leftover from when this server was a primary (or copied in by hand).
 * Nobody can decode from it here, and through hot_standby_feedback it holds
 * back the primary's catalog rows.  Under pg_slotsync.stale_slots = replace
 * it makes way for the primary's slot; under keep, and if it is physical,
 * it is the DBA's.
 */
static void
decide_same_name(const SyncInputs *in, SyncPlan *plan)
{
	if (in->local.is_logical && in->replace_stale)
	{
		plan->action = SYNC_ACTION_REPLACE_STALE;
		plan->state = SYNC_STATE_NOT_READY;
		set_reason(plan, SYNC_REASON_SAME_NAME_SLOT,
				   "a replication slot of the same name that was not synchronized from the primary exists on the standby, and is being replaced");
		return;
	}
	plan->state = SYNC_STATE_CONFLICT;
	set_reason(plan, SYNC_REASON_SAME_NAME_SLOT,
			   "a replication slot of the same name that was not synchronized from the primary exists on the standby");
}

/*
 * The checks that come before any comparison of positions.  Returns true if
 * the plan is complete.
 */
static bool
decide_preconditions(const SyncInputs *in, SyncPlan *plan)
{
	const RemoteSlot *r = in->remote;
	const LocalSlot *l = &in->local;

	if (l->exists && (!l->synced || !l->is_logical))
	{
		decide_same_name(in, plan);
		return true;
	}

	if (r->invalidated)
	{
		plan->state = SYNC_STATE_INVALIDATED;
		set_reason(plan, SYNC_REASON_REMOTE_INVALIDATED,
				   "the slot is invalidated on the primary");
		if (l->exists && !l->invalidated)
			plan->action = SYNC_ACTION_INVALIDATE;
		return true;
	}

	/* a slot still being created on the primary has no position yet */
	if (XLogRecPtrIsInvalid(r->restart_lsn) ||
		XLogRecPtrIsInvalid(r->confirmed_flush) ||
		!TransactionIdIsValid(r->catalog_xmin))
	{
		set_reason(plan, SYNC_REASON_REMOTE_INCOMPLETE,
				   "the slot is still being created on the primary");
		return true;
	}

	if (!OidIsValid(in->database_oid))
	{
		plan->state = SYNC_STATE_ERROR;
		set_reason(plan, SYNC_REASON_DATABASE_MISSING,
				   "database \"%s\" of the slot does not exist on the standby",
				   NameStr(r->database));
		return true;
	}

	if (l->exists && identity_differs(in, plan))
	{
		plan->action = SYNC_ACTION_DROP;
		plan->state = SYNC_STATE_NOT_READY;
		return true;
	}

	/* a ready copy whose catalog rows the primary no longer keeps */
	if (l->exists && l->ready &&
		(!in->primary_keeps_catalog ||
		 TransactionIdPrecedes(l->catalog_xmin, in->primary_catalog_xmin)))
	{
		plan->action = SYNC_ACTION_DEMOTE;
		plan->state = SYNC_STATE_NOT_READY;
		if (!in->primary_keeps_catalog)
			set_reason(plan, SYNC_REASON_UNPROTECTED,
					   "the primary no longer keeps catalog rows for the copy's catalog xmin %u: its physical slot for this standby has no catalog_xmin",
					   l->catalog_xmin);
		else
			set_reason(plan, SYNC_REASON_UNPROTECTED,
					   "the primary no longer keeps catalog rows for the copy's catalog xmin %u: its physical slot for this standby has catalog_xmin %u",
					   l->catalog_xmin, in->primary_catalog_xmin);
		return true;
	}

	/* invalidated here but not there: start over */
	if (l->exists && l->invalidated)
	{
		plan->action = SYNC_ACTION_DROP;
		plan->state = SYNC_STATE_NOT_READY;
		set_reason(plan, SYNC_REASON_LOCAL_INVALIDATED,
				   "the standby's copy was invalidated on the standby only");
		return true;
	}
	return false;
}

/*
 * A ready copy that will not equal the primary's slot after this plan, and
 * has not for longer than pg_slotsync.stale_after, is stale.
 */
static void
decide_staleness(const SyncInputs *in, SyncPlan *plan)
{
	char		why[256];

	if (plan->state != SYNC_STATE_READY || !in->local.exists ||
		(plan->action == SYNC_ACTION_UPDATE && !plan->fetch_snapshot) ||
		!remote_differs(in->remote, &in->local) ||
		in->behind_ms <= in->stale_after_ms)
		return;

	strlcpy(why, plan->reason[0] ? plan->reason :
			"the copy could not be moved yet", sizeof(why));
	plan->state = SYNC_STATE_STALE;
	set_reason(plan, SYNC_REASON_LAGGING,
			   "the copy has not followed the primary's slot for " INT64_FORMAT " ms: %s",
			   in->behind_ms, why);
}

/*
 * Do the standby's own settings still let the primary keep the catalog rows
 * of copies?  hot_standby_feedback carries them to the physical slot named
 * by primary_slot_name; without either, or with another slot named now,
 * nothing is known to keep them.  Says why in "why".
 *
 * The slot name only matters while WAL streams to the standby ("streaming":
 * primary_conninfo is set).  With no upstream nothing new is streamed that
 * could remove catalog rows, so the copies stay as safe as they were (WAL a
 * restore_command brings meanwhile is the archived WAL of a primary, which
 * kept the rows while this standby's slot held them): an HA tool that finds
 * no leader (Patroni) takes primary_conninfo and primary_slot_name away
 * until one leads, and demoting every copy then would make whichever
 * standby it promotes drop them all.  Except when replay moves to another
 * timeline meanwhile ("other_timeline"): that WAL comes from a newly
 * promoted primary, through restore_command, and that server was never
 * told to keep our rows.  Once WAL streams again, the slot the
 * standby streams through is checked on the primary as always (rule 2).
 */
bool
sync_local_protection_lost(bool feedback, bool streaming,
						   bool other_timeline, const char *slot_name,
						   bool slot_name_changed, char *why, Size whylen)
{
	if (!feedback)
		strlcpy(why, "\"hot_standby_feedback\" is off", whylen);
	else if (!streaming && other_timeline)
		strlcpy(why, "replay moved to another timeline while no primary was known to keep the copies' catalog rows",
				whylen);
	else if (!streaming)
		return false;
	else if (slot_name == NULL || slot_name[0] == '\0')
		strlcpy(why, "\"primary_slot_name\" is not set", whylen);
	else if (slot_name_changed)
		snprintf(why, whylen, "\"primary_slot_name\" changed to \"%s\"",
				 slot_name);
	else
		return false;
	return true;
}

/*
 * What a view shows for a slot whose last cycle recorded "recorded": the
 * slot's own marker has the last word on readiness, and a ready copy nobody
 * confirmed lately (no syncing process completed a cycle within
 * pg_slotsync.stale_after) is stale.
 */
SyncState
sync_reported_state(SyncState recorded, bool marker_ready, bool recent_sync,
					SyncReason *code)
{
	if (recorded != SYNC_STATE_READY && recorded != SYNC_STATE_STALE)
		return recorded;
	if (!marker_ready)
	{
		if (*code == SYNC_REASON_NONE)
			*code = SYNC_REASON_UNPROTECTED;
		return SYNC_STATE_NOT_READY;
	}
	if (!recent_sync)
	{
		*code = SYNC_REASON_NO_RECENT_SYNC;
		return SYNC_STATE_STALE;
	}
	return recorded;
}

static void
decide_positions(const SyncInputs *in, SyncPlan *plan)
{
	const RemoteSlot *r = in->remote;
	const LocalSlot *l = &in->local;
	char		why[256];

	/* never point beyond what the standby has */
	if (r->confirmed_flush > in->standby_flush)
	{
		plan->needs_flush = r->confirmed_flush;
		set_reason(plan, SYNC_REASON_WAL_NOT_FLUSHED,
				   "the primary's slot has confirmed LSN %X/%X, which the standby has not flushed yet (flushed up to %X/%X)",
				   LSN_FORMAT_ARGS(r->confirmed_flush),
				   LSN_FORMAT_ARGS(in->standby_flush));
		clear_reason_if_ready(plan);
		return;
	}

	if (!l->exists)
	{
		decide_create(in, plan);
		return;
	}

	if (!remote_ahead_or_equal(r, l))
	{
		if (l->ready &&
			(r->restart_lsn < l->restart_lsn ||
			 r->confirmed_flush < l->confirmed_flush))
		{
			/* the primary's slot is another one now, or ours was moved */
			plan->action = SYNC_ACTION_DROP;
			plan->state = SYNC_STATE_NOT_READY;
			set_reason(plan, SYNC_REASON_LOCAL_AHEAD,
					   "the standby's copy (confirmed LSN %X/%X) is ahead of the primary's slot (confirmed LSN %X/%X)",
					   LSN_FORMAT_ARGS(l->confirmed_flush),
					   LSN_FORMAT_ARGS(r->confirmed_flush));
			return;
		}
		why[0] = '\0';
		if (!l->ready && r->restart_lsn < protected_floor(in) &&
			history_fetchable(in, r->restart_lsn, why, sizeof(why)))
		{
			/* start again where the primary's slot is, with its history */
			plan->action = SYNC_ACTION_DROP;
			set_reason(plan, SYNC_REASON_CREATING,
					   "the copy is made again at the primary slot's restart LSN %X/%X, with the standby's history completed from the primary",
					   LSN_FORMAT_ARGS(r->restart_lsn));
			return;
		}
		if (l->ready || r->restart_lsn >= protected_floor(in))
			why[0] = '\0';
		set_reason(plan, SYNC_REASON_WAITING_FOR_REMOTE,
				   "the primary's slot (restart LSN %X/%X, catalog xmin %u) has not moved past where the standby's copy could start (restart LSN %X/%X, catalog xmin %u)%s%s",
				   LSN_FORMAT_ARGS(r->restart_lsn), r->catalog_xmin,
				   LSN_FORMAT_ARGS(l->restart_lsn), l->catalog_xmin,
				   why[0] ? "; the standby's history could not be completed from the primary: " : "",
				   why);
		clear_reason_if_ready(plan);
		return;
	}

	decide_update(in, plan);
}

void
slot_sync_decide(const SyncInputs *in, SyncPlan *plan)
{
	const LocalSlot *l = &in->local;

	memset(plan, 0, sizeof(*plan));
	plan->action = SYNC_ACTION_NONE;
	plan->state = (l->exists && l->synced && l->ready) ?
		SYNC_STATE_READY : SYNC_STATE_NOT_READY;

	if (!decide_preconditions(in, plan))
		decide_positions(in, plan);
	decide_staleness(in, plan);
}

/*
 * A logical slot of the standby's own that sync did not create (a leftover,
 * see sync_stale.c), seen for seen_ms: under pg_slotsync.stale_slots =
 * replace it is dropped once seen for grace_ms, unless the primary has a
 * failover slot of that name (slot_sync_decide() replaces that one at once,
 * SYNC_ACTION_REPLACE_STALE); under keep it stays.
 */
StaleAction
sync_stale_action(bool replace, bool listed, int64 seen_ms, int grace_ms)
{
	if (!replace || listed)
		return STALE_KEEP;
	return seen_ms >= grace_ms ? STALE_DROP : STALE_WAIT;
}
