/*-------------------------------------------------------------------------
 *
 * decide_table.c
 *		The decision table of slot synchronization, checked branch by
 *		branch: every rule of src/sync_decide.c gets a case here, an input
 *		and the plan it must produce.
 *
 * Built and run by test/t/002_decide_table.pl against the very source the
 * extension is built from.  It is a plain program: sync_decide.c needs
 * nothing of the server at run time but TransactionIdPrecedes(), which is
 * given here with the server's definition of xid order, and the printf
 * family from libpgport.  Output is TAP; with --names it prints every
 * reason code and state name instead.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "sync_decide.h"

/* xid order as the server defines it (modulo 2^32, permanent xids first) */
bool
TransactionIdPrecedes(TransactionId id1, TransactionId id2)
{
	int32		diff;

	if (!TransactionIdIsNormal(id1) || !TransactionIdIsNormal(id2))
		return (id1 < id2);
	diff = (int32) (id1 - id2);
	return (diff < 0);
}

#define DB_OID		16384
#define OTHER_OID	16385
#define INC			UINT64CONST(1234567890123)

/* A case: how it differs from the base inputs, and what must come out. */
typedef struct DecideCase
{
	const char *name;
	void		(*setup) (SyncInputs *in, RemoteSlot *r);
	SyncAction	action;
	SyncState	state;
	SyncReason	reason;
	bool		fetch_snapshot;
	bool		becomes_ready;
	XLogRecPtr	create_at;		/* checked when not 0 */
	XLogRecPtr	needs_flush;	/* checked when not 0 */
	bool		fetch_history;
	bool		history_pending;
} DecideCase;

/*
 * The base: a ready copy equal to the primary's slot, with everything the
 * rules need in place.
 */
static void
base_inputs(SyncInputs *in, RemoteSlot *r)
{
	memset(in, 0, sizeof(*in));
	memset(r, 0, sizeof(*r));
	strcpy(NameStr(r->name), "s");
	strcpy(NameStr(r->plugin), "pgoutput");
	strcpy(NameStr(r->database), "db");
	r->incarnation = INC;
	r->restart_lsn = 0x3000000;
	r->confirmed_flush = 0x3000100;
	r->catalog_xmin = 1000;

	in->remote = r;
	in->local.exists = true;
	in->local.synced = true;
	in->local.ready = true;
	in->local.is_logical = true;
	strcpy(NameStr(in->local.plugin), "pgoutput");
	in->local.database = DB_OID;
	in->local.incarnation = INC;
	in->local.restart_lsn = r->restart_lsn;
	in->local.confirmed_flush = r->confirmed_flush;
	in->local.catalog_xmin = r->catalog_xmin;
	in->database_oid = DB_OID;
	in->free_slot = true;
	in->standby_flush = 0x4000000;
	in->standby_replay = 0x4000000;
	in->protected_from = 0x2000000;
	in->primary_keeps_catalog = true;
	in->primary_catalog_xmin = 900;
	in->snapshot = SNAPSHOT_NOT_LOOKED;
	in->behind_ms = 0;
	in->stale_after_ms = 30000;
	in->wal_from = 0x1800000;
	in->removed_upto = InvalidXLogRecPtr;
	in->max_fetch_bytes = INT64CONST(1024) * 1024 * 1024;
	in->history_fetched_from = InvalidXLogRecPtr;
	in->history_failure = NULL;
}

/* a copy that exists but is not ready yet, one step behind */
static void
not_ready(SyncInputs *in, RemoteSlot *r)
{
	in->local.ready = false;
	strcpy(NameStr(in->local.plugin), "pg_slotsync_not_ready");
	in->local.confirmed_flush = 0x3000050;
}

static void
c_stranger(SyncInputs *in, RemoteSlot *r)
{
	in->local.synced = false;
	in->local.ready = false;
}

static void
c_physical(SyncInputs *in, RemoteSlot *r)
{
	in->local.is_logical = false;
}

static void
c_stranger_replace(SyncInputs *in, RemoteSlot *r)
{
	c_stranger(in, r);
	in->replace_stale = true;
}

static void
c_physical_replace(SyncInputs *in, RemoteSlot *r)
{
	c_physical(in, r);
	in->replace_stale = true;
}

static void
c_remote_invalidated(SyncInputs *in, RemoteSlot *r)
{
	r->invalidated = true;
	r->restart_lsn = InvalidXLogRecPtr;
}

static void
c_both_invalidated(SyncInputs *in, RemoteSlot *r)
{
	c_remote_invalidated(in, r);
	in->local.invalidated = true;
	in->local.restart_lsn = InvalidXLogRecPtr;
}

static void
c_remote_incomplete(SyncInputs *in, RemoteSlot *r)
{
	r->catalog_xmin = InvalidTransactionId;
}

static void
c_database_missing(SyncInputs *in, RemoteSlot *r)
{
	in->database_oid = InvalidOid;
}

static void
c_other_incarnation(SyncInputs *in, RemoteSlot *r)
{
	r->incarnation = INC + 1;
}

static void
c_other_database(SyncInputs *in, RemoteSlot *r)
{
	in->database_oid = OTHER_OID;
}

static void
c_other_plugin(SyncInputs *in, RemoteSlot *r)
{
	strcpy(NameStr(r->plugin), "test_decoding");
}

static void
c_not_ready_placeholder_plugin(SyncInputs *in, RemoteSlot *r)
{
	not_ready(in, r);
	in->primary_keeps_catalog = false;
}

static void
c_two_phase_off(SyncInputs *in, RemoteSlot *r)
{
	in->local.two_phase = true;
}

static void
c_local_invalidated(SyncInputs *in, RemoteSlot *r)
{
	in->local.invalidated = true;
	in->local.restart_lsn = InvalidXLogRecPtr;
}

static void
c_not_flushed(SyncInputs *in, RemoteSlot *r)
{
	in->standby_flush = 0x3000080;
}

static void
c_not_flushed_not_ready(SyncInputs *in, RemoteSlot *r)
{
	not_ready(in, r);
	c_not_flushed(in, r);
}

static void
c_absent_no_room(SyncInputs *in, RemoteSlot *r)
{
	memset(&in->local, 0, sizeof(in->local));
	in->free_slot = false;
}

static void
c_absent(SyncInputs *in, RemoteSlot *r)
{
	memset(&in->local, 0, sizeof(in->local));
}

static void
c_absent_older_than_anchor(SyncInputs *in, RemoteSlot *r)
{
	c_absent(in, r);
	in->protected_from = 0x3000080;
	in->max_fetch_bytes = 0;
}

static void
c_absent_no_anchor(SyncInputs *in, RemoteSlot *r)
{
	c_absent(in, r);
	in->protected_from = InvalidXLogRecPtr;
	in->standby_replay = 0x3500000;
	in->max_fetch_bytes = 0;
}

static void
c_local_ahead(SyncInputs *in, RemoteSlot *r)
{
	in->local.restart_lsn = 0x3000080;
	in->local.confirmed_flush = 0x3000200;
}

static void
c_waiting_for_remote(SyncInputs *in, RemoteSlot *r)
{
	not_ready(in, r);
	in->local.restart_lsn = 0x3000080;
	in->local.confirmed_flush = 0x3000080;
}

static void
c_ready_xmin_behind(SyncInputs *in, RemoteSlot *r)
{
	in->local.catalog_xmin = 1001;
}

static void
c_ready_equal(SyncInputs *in, RemoteSlot *r)
{
}

static void
c_ready_confirmed_moved(SyncInputs *in, RemoteSlot *r)
{
	r->confirmed_flush = 0x3000200;
}

static void
c_ready_restart_moved(SyncInputs *in, RemoteSlot *r)
{
	r->restart_lsn = 0x3000100;
	r->confirmed_flush = 0x3000200;
}

static void
c_ready_restart_moved_on_standby(SyncInputs *in, RemoteSlot *r)
{
	c_ready_restart_moved(in, r);
	in->snapshot = SNAPSHOT_ON_STANDBY;
}

static void
c_ready_restart_moved_slot_moved(SyncInputs *in, RemoteSlot *r)
{
	c_ready_restart_moved(in, r);
	in->snapshot = SNAPSHOT_SLOT_MOVED;
}

static void
c_ready_restart_moved_invalid(SyncInputs *in, RemoteSlot *r)
{
	c_ready_restart_moved(in, r);
	in->snapshot = SNAPSHOT_INVALID;
}

static void
c_ready_two_phase_on(SyncInputs *in, RemoteSlot *r)
{
	r->two_phase = true;
	r->two_phase_at = 0x3000100;
}

static void
c_no_feedback(SyncInputs *in, RemoteSlot *r)
{
	not_ready(in, r);
	in->primary_keeps_catalog = false;
}

static void
c_feedback_behind(SyncInputs *in, RemoteSlot *r)
{
	not_ready(in, r);
	in->primary_catalog_xmin = 1001;
}

static void
c_feedback_behind_equal(SyncInputs *in, RemoteSlot *r)
{
	c_feedback_behind(in, r);
	in->local.confirmed_flush = r->confirmed_flush;
}

static void
c_becomes_ready_not_looked(SyncInputs *in, RemoteSlot *r)
{
	not_ready(in, r);
}

static void
c_becomes_ready_received(SyncInputs *in, RemoteSlot *r)
{
	not_ready(in, r);
	in->snapshot = SNAPSHOT_RECEIVED;
}

static void
c_becomes_ready_fileless(SyncInputs *in, RemoteSlot *r)
{
	not_ready(in, r);
	in->snapshot = SNAPSHOT_NONE;
}

static void
c_becomes_ready_invalid(SyncInputs *in, RemoteSlot *r)
{
	not_ready(in, r);
	in->snapshot = SNAPSHOT_INVALID;
}

static void
c_becomes_ready_slot_moved(SyncInputs *in, RemoteSlot *r)
{
	not_ready(in, r);
	in->snapshot = SNAPSHOT_SLOT_MOVED;
}

static void
c_feedback_equal_xmin(SyncInputs *in, RemoteSlot *r)
{
	not_ready(in, r);
	in->primary_catalog_xmin = r->catalog_xmin;
	in->snapshot = SNAPSHOT_ON_STANDBY;
}

static void
c_feedback_gone(SyncInputs *in, RemoteSlot *r)
{
	in->primary_keeps_catalog = false;
}

static void
c_feedback_above_copy(SyncInputs *in, RemoteSlot *r)
{
	in->primary_catalog_xmin = 1001;
}

/* the primary's slot moved, the standby lacks the WAL to follow */
static void
c_lagging_long(SyncInputs *in, RemoteSlot *r)
{
	r->confirmed_flush = 0x3000200;
	in->standby_flush = 0x3000150;
	in->behind_ms = 30001;
}

static void
c_lagging_briefly(SyncInputs *in, RemoteSlot *r)
{
	c_lagging_long(in, r);
	in->behind_ms = 29000;
}

static void
c_equal_for_long(SyncInputs *in, RemoteSlot *r)
{
	in->behind_ms = 60000;
}

static void
c_updated_after_long(SyncInputs *in, RemoteSlot *r)
{
	c_ready_confirmed_moved(in, r);
	in->behind_ms = 60000;
}

/* a slot older than the anchor (protected_from 0x2000000) */
static void
c_absent_old(SyncInputs *in, RemoteSlot *r)
{
	c_absent(in, r);
	r->restart_lsn = 0x1000000;
}

static void
c_absent_old_fetch_off(SyncInputs *in, RemoteSlot *r)
{
	c_absent_old(in, r);
	in->max_fetch_bytes = 0;
}

static void
c_absent_old_removed(SyncInputs *in, RemoteSlot *r)
{
	c_absent_old(in, r);
	in->removed_upto = 0x1400000;
}

static void
c_absent_old_too_far(SyncInputs *in, RemoteSlot *r)
{
	c_absent_old(in, r);
	in->max_fetch_bytes = 1024 * 1024;
}

static void
c_absent_old_not_looked(SyncInputs *in, RemoteSlot *r)
{
	c_absent_old(in, r);
	in->wal_from = InvalidXLogRecPtr;
}

static void
c_absent_old_failed(SyncInputs *in, RemoteSlot *r)
{
	c_absent_old(in, r);
	in->history_failure = "no such file";
}

/* a copy at the old slot's restart_lsn, its history still to be fetched */
static void
c_pending(SyncInputs *in, RemoteSlot *r)
{
	not_ready(in, r);
	r->restart_lsn = 0x1000000;
	in->local.restart_lsn = 0x1000000;
	in->local.history_pending = true;
}

static void
c_pending_fetched(SyncInputs *in, RemoteSlot *r)
{
	c_pending(in, r);
	in->history_fetched_from = 0x0F00000;
}

static void
c_pending_fetched_above(SyncInputs *in, RemoteSlot *r)
{
	c_pending(in, r);
	in->history_fetched_from = 0x1100000;
}

static void
c_pending_failed(SyncInputs *in, RemoteSlot *r)
{
	c_pending(in, r);
	in->history_failure = "no such file";
}

/* a copy made at the anchor, waiting, for a slot below the anchor */
static void
c_waiting_below_anchor(SyncInputs *in, RemoteSlot *r)
{
	not_ready(in, r);
	r->restart_lsn = 0x1000000;
	in->local.restart_lsn = 0x2000000;
	in->local.confirmed_flush = 0x2000000;
}

static void
c_waiting_below_anchor_off(SyncInputs *in, RemoteSlot *r)
{
	c_waiting_below_anchor(in, r);
	in->max_fetch_bytes = 0;
}

#define A_NONE SYNC_ACTION_NONE
#define A_CREATE SYNC_ACTION_CREATE
#define A_UPDATE SYNC_ACTION_UPDATE
#define A_DROP SYNC_ACTION_DROP
#define A_INVAL SYNC_ACTION_INVALIDATE
#define A_DEMOTE SYNC_ACTION_DEMOTE
#define A_HDONE SYNC_ACTION_HISTORY_DONE
#define A_REPLACE SYNC_ACTION_REPLACE_STALE
#define S_NR SYNC_STATE_NOT_READY
#define S_R SYNC_STATE_READY
#define S_C SYNC_STATE_CONFLICT
#define S_S SYNC_STATE_STALE
#define S_I SYNC_STATE_INVALIDATED
#define S_E SYNC_STATE_ERROR

static const DecideCase cases[] = {
	{"a same-name slot not made by sync is left alone", c_stranger, A_NONE, S_C, SYNC_REASON_SAME_NAME_SLOT},
	{"a same-name physical slot is left alone", c_physical, A_NONE, S_C, SYNC_REASON_SAME_NAME_SLOT},
	{"stale_slots = replace: a same-name leftover makes way", c_stranger_replace, A_REPLACE, S_NR, SYNC_REASON_SAME_NAME_SLOT},
	{"stale_slots = replace: a same-name physical slot is still left alone", c_physical_replace, A_NONE, S_C, SYNC_REASON_SAME_NAME_SLOT},
	{"a remote invalidation is copied", c_remote_invalidated, A_INVAL, S_I, SYNC_REASON_REMOTE_INVALIDATED},
	{"an invalidation copied already is kept", c_both_invalidated, A_NONE, S_I, SYNC_REASON_REMOTE_INVALIDATED},
	{"a slot still being created on the primary waits, a ready copy stays ready", c_remote_incomplete, A_NONE, S_R, SYNC_REASON_REMOTE_INCOMPLETE},
	{"a database missing on the standby is an error", c_database_missing, A_NONE, S_E, SYNC_REASON_DATABASE_MISSING},
	{"a copy of another incarnation is dropped", c_other_incarnation, A_DROP, S_NR, SYNC_REASON_IDENTITY_CHANGED},
	{"a copy of another database is dropped", c_other_database, A_DROP, S_NR, SYNC_REASON_IDENTITY_CHANGED},
	{"a ready copy with another plugin is dropped", c_other_plugin, A_DROP, S_NR, SYNC_REASON_IDENTITY_CHANGED},
	{"a not-ready copy's placeholder plugin is no identity change", c_not_ready_placeholder_plugin, A_UPDATE, S_NR, SYNC_REASON_FEEDBACK_PENDING},
	{"a copy with two_phase the primary's slot lacks is dropped", c_two_phase_off, A_DROP, S_NR, SYNC_REASON_IDENTITY_CHANGED},
	{"a copy invalidated on the standby only is dropped", c_local_invalidated, A_DROP, S_NR, SYNC_REASON_LOCAL_INVALIDATED},
	{"WAL not flushed yet: a ready copy stays ready and waits", c_not_flushed, A_NONE, S_R, SYNC_REASON_NONE, false, false, 0, 0x3000100},
	{"WAL not flushed yet: a not-ready copy says so", c_not_flushed_not_ready, A_NONE, S_NR, SYNC_REASON_WAL_NOT_FLUSHED, false, false, 0, 0x3000100},
	{"no free slot for a new copy", c_absent_no_room, A_NONE, S_E, SYNC_REASON_NO_FREE_SLOT},
	{"a new copy starts at the remote restart_lsn", c_absent, A_CREATE, S_NR, SYNC_REASON_CREATING, false, false, 0x3000000},
	{"without fetching, a new copy never starts below the anchor", c_absent_older_than_anchor, A_CREATE, S_NR, SYNC_REASON_CREATING, false, false, 0x3000080},
	{"without an anchor nor fetching, not below the replay position", c_absent_no_anchor, A_CREATE, S_NR, SYNC_REASON_CREATING, false, false, 0x3500000},
	{"a ready copy ahead of the primary's slot is dropped", c_local_ahead, A_DROP, S_NR, SYNC_REASON_LOCAL_AHEAD},
	{"a not-ready copy waits for the primary's slot to pass its start", c_waiting_for_remote, A_NONE, S_NR, SYNC_REASON_WAITING_FOR_REMOTE},
	{"a ready copy whose catalog_xmin is ahead stays ready", c_ready_xmin_behind, A_NONE, S_R, SYNC_REASON_NONE},
	{"a ready copy equal to the primary's slot needs nothing", c_ready_equal, A_NONE, S_R, SYNC_REASON_NONE},
	{"a moved confirmed position is copied without a snapshot", c_ready_confirmed_moved, A_UPDATE, S_R, SYNC_REASON_NONE},
	{"a moved restart_lsn asks for the primary's snapshot first", c_ready_restart_moved, A_NONE, S_R, SYNC_REASON_NONE, true},
	{"a moved restart_lsn is copied with the standby's snapshot", c_ready_restart_moved_on_standby, A_UPDATE, S_R, SYNC_REASON_NONE},
	{"the slot moved while asked: a ready copy stays ready", c_ready_restart_moved_slot_moved, A_NONE, S_R, SYNC_REASON_NONE},
	{"an invalid snapshot keeps a ready copy where it is", c_ready_restart_moved_invalid, A_NONE, S_R, SYNC_REASON_SNAPSHOT_INVALID},
	{"two_phase switched on is copied", c_ready_two_phase_on, A_UPDATE, S_R, SYNC_REASON_NONE},
	{"no feedback yet: the copy follows, not ready", c_no_feedback, A_UPDATE, S_NR, SYNC_REASON_FEEDBACK_PENDING},
	{"feedback behind the copy's catalog_xmin: not ready", c_feedback_behind, A_UPDATE, S_NR, SYNC_REASON_FEEDBACK_PENDING},
	{"feedback behind and nothing to copy: nothing to do", c_feedback_behind_equal, A_NONE, S_NR, SYNC_REASON_FEEDBACK_PENDING},
	{"becoming ready asks for the primary's snapshot first", c_becomes_ready_not_looked, A_NONE, S_NR, SYNC_REASON_CREATING, true},
	{"becoming ready with the primary's snapshot", c_becomes_ready_received, A_UPDATE, S_R, SYNC_REASON_NONE, false, true},
	{"becoming ready where the primary has no snapshot", c_becomes_ready_fileless, A_UPDATE, S_R, SYNC_REASON_NONE, false, true},
	{"an invalid snapshot keeps a copy not ready", c_becomes_ready_invalid, A_NONE, S_NR, SYNC_REASON_SNAPSHOT_INVALID},
	{"the slot moved while asked: not ready yet", c_becomes_ready_slot_moved, A_NONE, S_NR, SYNC_REASON_SLOT_MOVED},
	{"feedback at exactly the copy's catalog_xmin is enough", c_feedback_equal_xmin, A_UPDATE, S_R, SYNC_REASON_NONE, false, true},
	{"a ready copy the primary no longer protects is demoted", c_feedback_gone, A_DEMOTE, S_NR, SYNC_REASON_UNPROTECTED},
	{"a ready copy below the primary's catalog_xmin is demoted", c_feedback_above_copy, A_DEMOTE, S_NR, SYNC_REASON_UNPROTECTED},
	{"a ready copy behind for longer than stale_after is stale", c_lagging_long, A_NONE, S_S, SYNC_REASON_LAGGING},
	{"a ready copy behind briefly is still ready", c_lagging_briefly, A_NONE, S_R, SYNC_REASON_NONE},
	{"a ready copy equal to the primary's slot is never stale", c_equal_for_long, A_NONE, S_R, SYNC_REASON_NONE},
	{"a ready copy moved now is not stale", c_updated_after_long, A_UPDATE, S_R, SYNC_REASON_NONE},
	{"an old slot's copy starts at its restart_lsn, history pending", c_absent_old, A_CREATE, S_NR, SYNC_REASON_CREATING, false, false, 0x1000000, 0, false, true},
	{"fetching off: an old slot's copy starts at the anchor", c_absent_old_fetch_off, A_CREATE, S_NR, SYNC_REASON_CREATING, false, false, 0x2000000, 0, false, false},
	{"WAL removed since start: the copy starts at the anchor", c_absent_old_removed, A_CREATE, S_NR, SYNC_REASON_CREATING, false, false, 0x2000000, 0, false, false},
	{"too much WAL to fetch: the copy starts at the anchor", c_absent_old_too_far, A_CREATE, S_NR, SYNC_REASON_CREATING, false, false, 0x2000000, 0, false, false},
	{"the standby's WAL not looked at: the copy starts at the anchor", c_absent_old_not_looked, A_CREATE, S_NR, SYNC_REASON_CREATING, false, false, 0x2000000, 0, false, false},
	{"a failed fetch: the copy starts at the anchor", c_absent_old_failed, A_CREATE, S_NR, SYNC_REASON_CREATING, false, false, 0x2000000, 0, false, false},
	{"history pending: fetch it", c_pending, A_NONE, S_NR, SYNC_REASON_FETCHING_HISTORY, false, false, 0, 0, true, false},
	{"history fetched from below the copy: take the mark away", c_pending_fetched, A_HDONE, S_NR, SYNC_REASON_FETCHING_HISTORY},
	{"history fetched from above the copy: fetch again", c_pending_fetched_above, A_NONE, S_NR, SYNC_REASON_FETCHING_HISTORY, false, false, 0, 0, true, false},
	{"history pending and unavailable: never ready", c_pending_failed, A_NONE, S_NR, SYNC_REASON_HISTORY_UNAVAILABLE},
	{"a waiting copy of a slot below the anchor is made again with history", c_waiting_below_anchor, A_DROP, S_NR, SYNC_REASON_CREATING},
	{"fetching off: a waiting copy keeps waiting", c_waiting_below_anchor_off, A_NONE, S_NR, SYNC_REASON_WAITING_FOR_REMOTE},
};

/* sync_reported_state(): what the views show of a recorded state */
typedef struct ReportCase
{
	const char *name;
	SyncState	recorded;
	bool		marker_ready;
	bool		recent;
	SyncState	shown;
	SyncReason	code;
} ReportCase;

static const ReportCase report_cases[] = {
	{"shown: a ready copy confirmed lately is ready", S_R, true, true, S_R, SYNC_REASON_NONE},
	{"shown: a ready copy nobody confirmed lately is stale", S_R, true, false, S_S, SYNC_REASON_NO_RECENT_SYNC},
	{"shown: a copy demoted since the cycle is not ready", S_R, false, true, S_NR, SYNC_REASON_UNPROTECTED},
	{"shown: a lagging copy nobody confirmed lately stays stale", S_S, true, false, S_S, SYNC_REASON_NO_RECENT_SYNC},
	{"shown: a not-ready copy stays not ready", S_NR, false, false, S_NR, SYNC_REASON_NONE},
	{"shown: a conflict stays a conflict", S_C, false, false, S_C, SYNC_REASON_NONE},
};

static bool
check_report(int n, const ReportCase *c)
{
	SyncReason	code = SYNC_REASON_NONE;
	SyncState	shown = sync_reported_state(c->recorded, c->marker_ready,
											c->recent, &code);
	bool		ok = shown == c->shown && code == c->code;

	printf("%s %d - %s\n", ok ? "ok" : "not ok", n, c->name);
	return ok;
}

/* sync_local_protection_lost(): which settings leave copies unprotected */
static bool
check_protection(int n)
{
	char		why[128];
	bool		ok = !sync_local_protection_lost(true, true, false, "sb", false, why, sizeof(why)) &&
		sync_local_protection_lost(false, true, false, "sb", false, why, sizeof(why)) &&
		sync_local_protection_lost(false, false, false, "sb", false, why, sizeof(why)) &&
		sync_local_protection_lost(true, true, false, "", false, why, sizeof(why)) &&
		sync_local_protection_lost(true, true, false, NULL, false, why, sizeof(why)) &&
		sync_local_protection_lost(true, true, false, "sb", true, why, sizeof(why)) &&
		strstr(why, "primary_slot_name") != NULL &&
		!sync_local_protection_lost(true, false, false, "", false, why, sizeof(why)) &&
		!sync_local_protection_lost(true, false, false, NULL, false, why, sizeof(why)) &&
		!sync_local_protection_lost(true, false, false, "sb", true, why, sizeof(why)) &&
		sync_local_protection_lost(true, false, true, "", false, why, sizeof(why)) &&
		strstr(why, "timeline") != NULL;

	printf("%s %d - protection: feedback off; while WAL streams, no slot name or another slot name; while nothing streams, only replay on another timeline\n",
		   ok ? "ok" : "not ok", n);
	return ok;
}

/* sync_stale_action(): what becomes of a leftover slot of the standby */
static bool
check_stale(int n)
{
	bool		ok = sync_stale_action(false, false, 1000000, 0) == STALE_KEEP &&
		sync_stale_action(true, true, 1000000, 0) == STALE_KEEP &&
		sync_stale_action(true, false, 999, 1000) == STALE_WAIT &&
		sync_stale_action(true, false, 1000, 1000) == STALE_DROP &&
		sync_stale_action(true, false, 0, 0) == STALE_DROP;

	printf("%s %d - stale slots: keep keeps; replace leaves same-name ones to the decision, drops the others after the grace\n",
		   ok ? "ok" : "not ok", n);
	return ok;
}

static bool
check(int n, const DecideCase *c)
{
	SyncInputs	in;
	RemoteSlot	remote;
	SyncPlan	plan;
	bool		ok;

	base_inputs(&in, &remote);
	c->setup(&in, &remote);
	slot_sync_decide(&in, &plan);

	ok = plan.action == c->action && plan.state == c->state &&
		plan.reason_code == c->reason &&
		plan.fetch_snapshot == c->fetch_snapshot &&
		plan.becomes_ready == c->becomes_ready &&
		(c->create_at == 0 || plan.create_at == c->create_at) &&
		(c->needs_flush == 0 || plan.needs_flush == c->needs_flush) &&
		plan.fetch_history == c->fetch_history &&
		plan.history_pending == c->history_pending;
	printf("%s %d - %s\n", ok ? "ok" : "not ok", n, c->name);
	if (!ok)
		printf("#   got action %d state %s reason %s fetch %d ready %d create_at %X/%X needs_flush %X/%X (%s)\n",
			   plan.action, sync_state_name(plan.state),
			   sync_reason_name(plan.reason_code) ? sync_reason_name(plan.reason_code) : "none",
			   plan.fetch_snapshot, plan.becomes_ready,
			   LSN_FORMAT_ARGS(plan.create_at), LSN_FORMAT_ARGS(plan.needs_flush),
			   plan.reason);
	return ok;
}

/* Every reason code and state name, one a line, for the docs check. */
static void
print_names(void)
{
	for (int r = SYNC_REASON_NONE + 1; r < SYNC_REASON_COUNT; r++)
		printf("reason_code %s\n", sync_reason_name((SyncReason) r));
	for (int s = SYNC_STATE_NOT_READY; s <= SYNC_STATE_ERROR; s++)
		printf("state %s\n", sync_state_name((SyncState) s));
	/* out of range: never printed, but the names must not crash */
	if (sync_reason_name(SYNC_REASON_NONE) != NULL ||
		strcmp(sync_reason_name(SYNC_REASON_COUNT), "unknown") != 0 ||
		strcmp(sync_state_name((SyncState) 99), "unknown") != 0)
		printf("# unknown values are not named \"unknown\"\n");
	printf("data_loss_wording");
	for (int r = SYNC_REASON_NONE + 1; r < SYNC_REASON_COUNT; r++)
		if (sync_reason_is_data_loss((SyncReason) r))
			printf(" %s", sync_reason_name((SyncReason) r));
	printf("\n");
}

int
main(int argc, char **argv)
{
	int			n = lengthof(cases);
	int			failed = 0;

	if (argc > 1 && strcmp(argv[1], "--names") == 0)
	{
		print_names();
		return 0;
	}

	printf("1..%d\n", n + (int) lengthof(report_cases) + 2);
	for (int i = 0; i < n; i++)
		if (!check(i + 1, &cases[i]))
			failed++;
	for (int i = 0; i < (int) lengthof(report_cases); i++)
		if (!check_report(n + i + 1, &report_cases[i]))
			failed++;
	if (!check_protection(n + lengthof(report_cases) + 1))
		failed++;
	if (!check_stale(n + lengthof(report_cases) + 2))
		failed++;
	return failed == 0 ? 0 : 1;
}
