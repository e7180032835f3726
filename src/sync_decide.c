/*-------------------------------------------------------------------------
 *
 * sync_decide.c
 *		What to do with one failover slot, given what the primary reports
 *		and what the standby has.  Decisions only: no side effects, so the
 *		rules that keep a synced slot safe can be read in one place.
 *
 * A synced slot is "ready" when decoding from it after promotion yields
 * every change after its confirmed_flush_lsn, exactly as decoding from the
 * primary's slot would.  That needs three things on the standby:
 *
 *	1. WAL from the slot's restart_lsn.  The copy's restart_lsn is never
 *	   below the remote one and never above what the standby has flushed,
 *	   and the WAL is reserved by the slot itself.
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
 *	   slot that never moved since creation, by rebuilding the snapshot the
 *	   same way it was built at creation.  The copy gets the very same file
 *	   (sync_apply.c installs the primary's) or, where the primary has none,
 *	   repeats the same rebuild over the same WAL.  Decoding files the
 *	   standby writes itself by replay (logical rewrite mappings) must not
 *	   have been removed since restart_lsn: the copy's restart_lsn is never
 *	   below "protected_from", the oldest restart_lsn local logical slots
 *	   have held continuously (see sync_apply.c's anchor slot).
 *
 * So a slot is created at max(remote restart_lsn, protected_from).  When
 * the remote slot is behind that, the copy cannot be ready until the remote
 * slot moves past it: that is core's "could lead to data loss" wait, which
 * with the anchor only happens for slots older than the sync worker.
 *
 * A synced slot never moves backwards: if the primary's slot is behind the
 * copy, the primary's slot was dropped and created again under the same
 * name (or someone advanced the copy on the standby); a not-ready copy waits,
 * a ready copy is dropped and created afresh.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "slot_sync.h"

static void
set_reason(SyncDecision *out, SyncReason code, const char *fmt,...)
			pg_attribute_printf(3, 4);

static void
set_reason(SyncDecision *out, SyncReason code, const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	vsnprintf(out->reason, sizeof(out->reason), fmt, args);
	va_end(args);
	out->reason_code = code;
}

/* a ready copy stays ready while it waits for a transient condition */
static void
clear_reason(SyncDecision *out)
{
	out->reason[0] = '\0';
	out->reason_code = SYNC_REASON_NONE;
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
		case SYNC_REASON_NO_DATABASE:
			return "database_missing";
		case SYNC_REASON_LOCAL_INVALIDATED:
			return "local_invalidated";
		case SYNC_REASON_WAL_NOT_FLUSHED:
			return "wal_not_flushed";
		case SYNC_REASON_CREATING:
			return "creating";
		case SYNC_REASON_LOCAL_AHEAD:
			return "local_ahead";
		case SYNC_REASON_REMOTE_BEHIND:
			return "wal_or_rows_removed";
		case SYNC_REASON_FEEDBACK_PENDING:
			return "feedback_pending";
		case SYNC_REASON_SLOT_MOVED:
			return "slot_moved";
		case SYNC_REASON_ERROR:
			return "error";
	}
	return "unknown";
}

/* Reasons core words as "Synchronization could lead to data loss" */
bool
sync_reason_is_data_loss(SyncReason reason)
{
	return reason == SYNC_REASON_WAL_NOT_FLUSHED ||
		reason == SYNC_REASON_REMOTE_BEHIND ||
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

void
slot_sync_decide(const SyncInputs *in, SyncDecision *out)
{
	const RemoteSlot *r = in->remote;
	const LocalSlot *l = &in->local;

	memset(out, 0, sizeof(*out));
	out->action = SYNC_ACTION_NONE;
	out->state = (l->exists && l->synced && l->ready) ?
		SYNC_STATE_READY : SYNC_STATE_NOT_READY;

	/* A same-name slot we did not create is the DBA's; never touch it. */
	if (l->exists && (!l->synced || !l->is_logical))
	{
		out->state = SYNC_STATE_CONFLICT;
		set_reason(out, SYNC_REASON_SAME_NAME_SLOT,
				   "a replication slot of the same name that was not synchronized from the primary exists on the standby");
		return;
	}

	if (r->invalidated)
	{
		out->state = SYNC_STATE_INVALIDATED;
		set_reason(out, SYNC_REASON_REMOTE_INVALIDATED,
				   "the slot is invalidated on the primary");
		if (l->exists && !l->invalidated)
			out->action = SYNC_ACTION_INVALIDATE;
		return;
	}

	/* a slot still being created on the primary has no position yet */
	if (XLogRecPtrIsInvalid(r->restart_lsn) ||
		XLogRecPtrIsInvalid(r->confirmed_flush) ||
		!TransactionIdIsValid(r->catalog_xmin))
	{
		set_reason(out, SYNC_REASON_REMOTE_INCOMPLETE,
				   "the slot is still being created on the primary");
		return;
	}

	if (!in->database_exists)
	{
		out->state = SYNC_STATE_ERROR;
		set_reason(out, SYNC_REASON_NO_DATABASE, "database \"%s\" of the slot does not exist on the standby",
				   NameStr(r->database));
		return;
	}

	/* invalidated here but not there: start over */
	if (l->exists && l->invalidated)
	{
		out->action = SYNC_ACTION_RECREATE;
		out->state = SYNC_STATE_NOT_READY;
		set_reason(out, SYNC_REASON_LOCAL_INVALIDATED,
				   "the standby's copy was invalidated on the standby only");
		return;
	}

	/* never point beyond what the standby has */
	if (r->confirmed_flush > in->standby_flush)
	{
		out->needs_flush = r->confirmed_flush;
		set_reason(out, SYNC_REASON_WAL_NOT_FLUSHED,
				   "the primary's slot has confirmed LSN %X/%X, which the standby has not flushed yet (flushed up to %X/%X)",
				   LSN_FORMAT_ARGS(r->confirmed_flush),
				   LSN_FORMAT_ARGS(in->standby_flush));
		if (out->state == SYNC_STATE_READY)
			clear_reason(out);
		return;
	}

	if (!l->exists)
	{
		out->action = SYNC_ACTION_CREATE;
		out->state = SYNC_STATE_NOT_READY;
		set_reason(out, SYNC_REASON_CREATING,
				   "the slot is being created on the standby");
		return;
	}

	if (!remote_ahead_or_equal(r, l))
	{
		if (l->ready &&
			(r->restart_lsn < l->restart_lsn ||
			 r->confirmed_flush < l->confirmed_flush))
		{
			/* the primary's slot is another one now, or ours was moved */
			out->action = SYNC_ACTION_RECREATE;
			out->state = SYNC_STATE_NOT_READY;
			set_reason(out, SYNC_REASON_LOCAL_AHEAD,
					   "the standby's copy (confirmed LSN %X/%X) is ahead of the primary's slot (confirmed LSN %X/%X)",
					   LSN_FORMAT_ARGS(l->confirmed_flush),
					   LSN_FORMAT_ARGS(r->confirmed_flush));
			return;
		}
		set_reason(out, SYNC_REASON_REMOTE_BEHIND,
				   "the remote slot needs WAL at LSN %X/%X and catalog xmin %u, but the standby has LSN %X/%X and catalog xmin %u",
				   LSN_FORMAT_ARGS(r->restart_lsn), r->catalog_xmin,
				   LSN_FORMAT_ARGS(l->restart_lsn), l->catalog_xmin);
		if (out->state == SYNC_STATE_READY)
			clear_reason(out);
		return;
	}

	if (l->ready)
	{
		if (remote_differs(r, l))
			out->action = SYNC_ACTION_UPDATE;
		return;
	}

	/* not ready yet: only the primary's feedback guarantee is missing? */
	if (!in->primary_keeps_catalog ||
		TransactionIdPrecedes(r->catalog_xmin, in->primary_catalog_xmin))
	{
		if (remote_differs(r, l))
			out->action = SYNC_ACTION_UPDATE;
		if (!in->primary_keeps_catalog)
			set_reason(out, SYNC_REASON_FEEDBACK_PENDING,
					   "the primary does not yet keep catalog rows for catalog xmin %u: its physical slot for this standby has no catalog_xmin (hot_standby_feedback has not arrived)",
					   r->catalog_xmin);
		else
			set_reason(out, SYNC_REASON_FEEDBACK_PENDING,
					   "the primary does not yet keep catalog rows for catalog xmin %u: its physical slot for this standby has catalog_xmin %u",
					   r->catalog_xmin, in->primary_catalog_xmin);
		return;
	}

	out->action = SYNC_ACTION_UPDATE;
	out->becomes_ready = true;
	out->state = SYNC_STATE_READY;
}

