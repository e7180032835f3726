/*-------------------------------------------------------------------------
 *
 * primary_watch.c
 *		The long-poll a standby's sync worker waits in on the primary, and
 *		the changes it hands back.
 *
 * PostgreSQL 17's worker polls pg_replication_slots, napping 200 ms and
 * doubling up to 30 s while nothing changes; a slot that moves after a quiet
 * minute reaches the standby up to 30 s late.  We turn the poll around: the
 * worker calls wait_for_failover_slot_changes(), which returns as soon as a
 * failover slot (or the standby's own physical slot's catalog_xmin, which
 * tells it its feedback arrived) is different from what this session last
 * reported, or when its timeout passes; then failover_slot_changes(), in
 * the same round trip, returns only what changed: the slots that are new or
 * different, and the names of those that are gone.  With a thousand slots
 * and one moving, one row crosses the network and one copy is touched.
 *
 * What the session reported last is kept in this backend's memory: each
 * failover slot's state as sent (WatchedSlot, primary_look.c, which also
 * keeps which slots differ from it).  The standby echoes the
 * token of the last answer it received; when the token is not this
 * session's latest (a new connection, an answer lost to an error, or the
 * standby asking on purpose with NULL), the whole list is sent and the
 * standby knows it is whole (full_list), so it cannot drift.
 *
 * Waking up: processes that move failover slots bump a shared counter and
 * broadcast a condition variable (failover_slot_moves.h lists which:
 * logical walsenders, SQL decoding at transaction end, the failover flag,
 * creating, copying and dropping slots, physical walsenders whose
 * catalog_xmin moved).  The call sleeps on it, and looks at the slots only
 * when the counter moved, or every WATCH_SAFETY_POLL_MS for the paths that
 * do not broadcast (a slot invalidated by a checkpoint, dropped with its
 * database).  Looking (primary_look.c) is at the slots whose own move
 * counter changed, or one pass over the slot array in shared memory when
 * a move could not be attributed to a slot and at least every
 * WATCH_SAFETY_POLL_MS; failover flags come from a per-session marker
 * cache (slot_marker_read_cached()).  Idle, that is two passes a second.
 *
 * While it waits, the call gives up its snapshot's xmin, so that the
 * standby's long-poll, running nearly all the time, never holds back vacuum
 * on the primary; only when nothing else in the session can need the
 * snapshot (call_may_release_xmin()): in a REPEATABLE READ transaction,
 * with a cursor open, or inside a larger query the xmin stays.
 *
 * wait_for_failover_slot_change() is version 1.0's long-poll (a hash of
 * everything, then the whole list from failover_slots()), kept for
 * standbys that still run it; it waits the same way.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "failover_slot_moves.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/plannodes.h"
#include "pg_slotsync.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "primary_look.h"
#include "replication/slot.h"
#include "slot_marker.h"
#include "storage/proc.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_slotsync_wait_for_failover_slot_change);
PG_FUNCTION_INFO_V1(pg_slotsync_wait_for_failover_slot_changes);
PG_FUNCTION_INFO_V1(pg_slotsync_failover_slot_changes);

/* What the latest answer of this session reported, besides the slots. */
static uint64 session_token = 0;
static TransactionId sent_standby_xmin = InvalidTransactionId;
static bool delta_ready = false;	/* failover_slot_changes() may answer */
static bool delta_full = false;

/*
 * May this call give up the xmin of its snapshot while it waits?  Only if
 * nothing else in the session can still need what that snapshot (or an
 * older one) sees:
 *
 *	- READ COMMITTED: a REPEATABLE READ or SERIALIZABLE transaction goes on
 *	  using its snapshot after the call;
 *	- no other registered snapshot: an open cursor, an exported snapshot,
 *	  the query of an enclosing function call each hold one;
 *	- the call is the whole of the client's statement, run in the unnamed
 *	  portal, a plain scan of this function with constant arguments,
 *	  nothing else scanned, filtered or computed with the snapshot after it.
 *
 * The sync worker's long-poll is exactly that.  Any other use keeps its
 * xmin, which is merely what any query that long would do.
 */
static bool
call_may_release_xmin(FunctionCallInfo fcinfo)
{
	PlannedStmt *stmt;
	FunctionScan *scan;
	RangeTblFunction *rtfunc;
	FuncExpr   *func;
	ListCell   *lc;

	if (IsolationUsesXactSnapshot() || !ThereAreNoPriorRegisteredSnapshots())
		return false;
	if (ActivePortal == NULL || ActivePortal->name == NULL ||
		ActivePortal->name[0] != '\0' ||
		list_length(ActivePortal->stmts) != 1)
		return false;

	stmt = linitial_node(PlannedStmt, ActivePortal->stmts);
	if (stmt->commandType != CMD_SELECT || stmt->utilityStmt != NULL ||
		stmt->subplans != NIL || list_length(stmt->rtable) != 1 ||
		linitial_node(RangeTblEntry, stmt->rtable)->rtekind != RTE_FUNCTION ||
		!IsA(stmt->planTree, FunctionScan))
		return false;

	scan = (FunctionScan *) stmt->planTree;
	if (scan->scan.plan.qual != NIL || scan->scan.plan.initPlan != NIL ||
		scan->scan.plan.lefttree != NULL || scan->scan.plan.righttree != NULL ||
		scan->funcordinality || list_length(scan->functions) != 1)
		return false;
	foreach(lc, scan->scan.plan.targetlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (!IsA(tle->expr, Var) && !IsA(tle->expr, Const))
			return false;
	}

	rtfunc = linitial_node(RangeTblFunction, scan->functions);
	if (!IsA(rtfunc->funcexpr, FuncExpr))
		return false;
	func = (FuncExpr *) rtfunc->funcexpr;
	if (func->funcid != fcinfo->flinfo->fn_oid)
		return false;
	foreach(lc, func->args)
	{
		if (!IsA(lfirst(lc), Const))
			return false;
	}
	return true;
}

/* Give up the snapshot's xmin while waiting, if the caller allows. */
static void
release_xmin_if_allowed(FunctionCallInfo fcinfo)
{
	InvalidateCatalogSnapshot();
	if (call_may_release_xmin(fcinfo))
		MyProc->xmin = InvalidTransactionId;
}

/*
 * Sleep until a failover slot may have moved since "seen", the safety poll
 * passes, or the deadline; returns the new counter.
 */
static uint64
wait_for_moves(uint64 seen, TimestampTz deadline)
{
	long		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
													 deadline);
	ConditionVariable *cv = failover_slot_moved_cv();

	ms = Min(ms, watch_ms_until_full_look());
	if (ms > 0 && failover_slot_moves_read() == seen)
	{
		ConditionVariablePrepareToSleep(cv);
		if (failover_slot_moves_read() == seen)
			(void) ConditionVariableTimedSleep(cv, ms, PG_WAIT_EXTENSION);
		ConditionVariableCancelSleep();
	}
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		/* patterns may have changed; they decide what is a failover slot */
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	return failover_slot_moves_read();
}

static void
check_timeout(int timeout_ms)
{
	if (timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_ms must not be negative")));
}

/*
 * pg_slotsync.wait_for_failover_slot_changes(standby_slot_name name,
 *		last_token bigint, timeout_ms integer)
 *
 * Wait until something differs from what this session last reported (or
 * at once when last_token is not this session's latest token: then the
 * whole list is sent), then report the primary's state; the changes
 * themselves come from failover_slot_changes() right after.
 */
Datum
pg_slotsync_wait_for_failover_slot_changes(PG_FUNCTION_ARGS)
{
	char	   *standby_slot = PG_ARGISNULL(0) ? NULL : NameStr(*PG_GETARG_NAME(0));
	bool		full = PG_ARGISNULL(1) ||
		(uint64) PG_GETARG_INT64(1) != session_token || session_token == 0;
	int			timeout_ms = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);
	TupleDesc	tupdesc;
	TimestampTz deadline;
	StandbySlotSeen standby;
	uint64		moves;
	Datum		values[8];
	bool		nulls[8] = {0};

	check_caller_may_sync();
	check_timeout(timeout_ms);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	release_xmin_if_allowed(fcinfo);

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	moves = failover_slot_moves_read();
	for (;;)
	{
		int			differ = watch_look(standby_slot, full, &standby);

		if (full || differ > 0 ||
			standby.catalog_xmin != sent_standby_xmin ||
			GetCurrentTimestamp() >= deadline)
			break;
		moves = wait_for_moves(moves, deadline);
	}

	/* what failover_slot_changes() will hand out; as of now, reported */
	session_token++;
	if (session_token == 0)
		session_token = 1;
	sent_standby_xmin = standby.catalog_xmin;
	delta_ready = true;
	delta_full = full;

	values[0] = Int64GetDatum((int64) session_token);
	values[1] = BoolGetDatum(full);
	values[2] = BoolGetDatum(RecoveryInProgress());
	values[3] = BoolGetDatum(wal_level >= WAL_LEVEL_LOGICAL);
	nulls[4] = !standby.found;
	values[4] = BoolGetDatum(standby.physical);
	nulls[5] = !TransactionIdIsValid(standby.catalog_xmin);
	values[5] = TransactionIdGetDatum(standby.catalog_xmin);
	values[6] = Int64GetDatum((int64) GetSystemIdentifier());
	values[7] = Int32GetDatum((int32) GetWALInsertionTimeLine());
	if (RecoveryInProgress())
		nulls[7] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* One row of failover_slot_changes(): a slot as it is now, or gone. */
static void
put_change(WatchedSlot *w, bool gone, void *arg)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) arg;
	Datum		values[12];
	bool		nulls[12] = {0};
	char	   *dbname = gone ? NULL : get_database_name(w->now.database);

	values[0] = NameGetDatum(&w->name);
	values[1] = BoolGetDatum(gone);
	if (gone || dbname == NULL)
	{
		/* a slot whose database is being dropped is going away too */
		for (int i = 2; i < 12; i++)
			nulls[i] = true;
		values[1] = BoolGetDatum(true);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		return;
	}
	if (w->now.incarnation == 0 && !RecoveryInProgress())
		w->now.incarnation = slot_marker_ensure_incarnation(NameStr(w->name));
	values[2] = NameGetDatum(&w->now.plugin);
	values[3] = ObjectIdGetDatum(w->now.database);
	values[4] = CStringGetTextDatum(dbname);
	values[5] = BoolGetDatum(w->now.two_phase);
	nulls[6] = XLogRecPtrIsInvalid(w->now.two_phase_at);
	values[6] = LSNGetDatum(w->now.two_phase_at);
	nulls[7] = XLogRecPtrIsInvalid(w->now.restart_lsn);
	values[7] = LSNGetDatum(w->now.restart_lsn);
	nulls[8] = XLogRecPtrIsInvalid(w->now.confirmed_flush);
	values[8] = LSNGetDatum(w->now.confirmed_flush);
	nulls[9] = !TransactionIdIsValid(w->now.catalog_xmin);
	values[9] = TransactionIdGetDatum(w->now.catalog_xmin);
	values[10] = BoolGetDatum(w->now.invalidated);
	nulls[11] = w->now.incarnation == 0;
	values[11] = Int64GetDatum((int64) w->now.incarnation);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * pg_slotsync.failover_slot_changes(): what the last
 * wait_for_failover_slot_changes() call of this session found different
 * from what was reported before it (everything, for a full list), and the
 * names of the slots gone since.  Only once per wait call.
 */
Datum
pg_slotsync_failover_slot_changes(PG_FUNCTION_ARGS)
{
	check_caller_may_sync();
	InitMaterializedSRF(fcinfo, 0);
	if (!delta_ready)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_slotsync.failover_slot_changes() must follow pg_slotsync.wait_for_failover_slot_changes() in the same session")));
	delta_ready = false;

	watch_report(delta_full, put_change, fcinfo->resultinfo);
	return (Datum) 0;
}

/*
 * pg_slotsync.wait_for_failover_slot_change(standby_slot_name, last_token,
 *		timeout_ms) (version 1.0): wait until the failover slots (or the named
 *		physical slot's catalog_xmin) differ from what last_token described,
 *		or the timeout passes; then report the new token and the state the
 *		standby checks before syncing.
 */
Datum
pg_slotsync_wait_for_failover_slot_change(PG_FUNCTION_ARGS)
{
	char	   *standby_slot = PG_ARGISNULL(0) ? NULL : NameStr(*PG_GETARG_NAME(0));
	bool		have_last = !PG_ARGISNULL(1);
	uint64		last_token = have_last ? (uint64) PG_GETARG_INT64(1) : 0;
	int			timeout_ms = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);
	TupleDesc	tupdesc;
	TimestampTz deadline;
	StandbySlotSeen standby;
	uint64		token;
	uint64		moves;
	Datum		values[6];
	bool		nulls[6] = {0};

	check_caller_may_sync();
	check_timeout(timeout_ms);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	release_xmin_if_allowed(fcinfo);

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	moves = failover_slot_moves_read();
	for (;;)
	{
		(void) watch_look(standby_slot, true, &standby);
		token = watch_state_hash(standby.catalog_xmin);
		if (!have_last || token != last_token ||
			GetCurrentTimestamp() >= deadline)
			break;
		moves = wait_for_moves(moves, deadline);
	}

	values[0] = Int64GetDatum((int64) token);
	values[1] = BoolGetDatum(RecoveryInProgress());
	values[2] = BoolGetDatum(wal_level >= WAL_LEVEL_LOGICAL);
	nulls[3] = !standby.found;
	values[3] = BoolGetDatum(standby.physical);
	/* 1.0 reported the standby slot's restart_lsn, which it never used */
	nulls[4] = true;
	nulls[5] = !TransactionIdIsValid(standby.catalog_xmin);
	values[5] = TransactionIdGetDatum(standby.catalog_xmin);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
