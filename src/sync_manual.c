/*-------------------------------------------------------------------------
 *
 * sync_manual.c
 *		pg_slotsync.sync_replication_slots(timeout): synchronize now, in the
 *		calling backend, until every failover slot is ready.
 *
 * The call runs the worker's cycles (sync_cycle.c) until every failover
 * slot the primary had when it was called is ready (or invalidated, or
 * gone from the primary), or until its timeout.  Like PostgreSQL 17's
 * pg_sync_replication_slots() it is refused on a primary and while the
 * worker or another call is syncing (it takes the same claim), and it can
 * be cancelled.  Unlike PostgreSQL 17/18 it retries (as 19 does) and has a
 * timeout; it never reports success while a slot of the primary has no
 * ready copy, including slots it could not even record (more failover
 * slots than the standby has room for).
 *
 * While it runs it reports itself as the syncing process (worker_status.c);
 * what it recorded of each slot stays visible after it returns, stale once
 * nobody has vouched for it for pg_slotsync.stale_after.
 *
 * Nothing outlives the call but ready copies.  On the way out, whatever the
 * way (success, timeout, an error, a cancel, statement_timeout, the backend
 * terminated), the connection is closed, the claim given up and the session
 * memory freed (it lives in the query's memory).  The debris (not-ready
 * copies, the anchor) is dropped by the call itself when it returns or
 * times out; when it fails, it is left to the launcher, which the released
 * claim wakes (sync_launcher.c): an error or exit path is no place to drop
 * slots under database locks.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "common/int.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/slot.h"
#include "slot_sync.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_slotsync_sync_replication_slots);

#define MANUAL_PENDING_WAIT_MS	100 /* long-poll while some slot is not ready */
#define MANUAL_ROUND_SLEEP_MS	20

static bool
manual_interrupted(void)
{
	return QueryCancelPending || ProcDiePending || !RecoveryInProgress();
}

/*
 * The deadline for a timeout interval, overflow-checked; 0 without one.
 */
static TimestampTz
manual_deadline(Interval *timeout)
{
	int64		usecs;
	int64		days;
	TimestampTz now = GetCurrentTimestamp();

	if (timeout == NULL)
		return 0;
	if (timeout->time < 0 || timeout->day < 0 || timeout->month < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));

	/* a month counts as 30 days, as in interval arithmetic */
	days = (int64) timeout->month * DAYS_PER_MONTH + timeout->day;
	if (pg_mul_s64_overflow(days, USECS_PER_DAY, &usecs) ||
		pg_add_s64_overflow(usecs, timeout->time, &usecs) ||
		pg_add_s64_overflow(now, usecs, &usecs))
		return DT_NOEND - 1;	/* longer than anyone will wait */
	return (TimestampTz) usecs;
}

/*
 * Is every slot of the first cycle ready, invalidated or gone?  Says which
 * are not, and why, in not_ready.
 */
static bool
all_done(SyncSession *session, NameData *names, int nnames,
		 StringInfo not_ready)
{
	bool		done = true;

	resetStringInfo(not_ready);
	for (int i = 0; i < nnames; i++)
	{
		const char *name = NameStr(names[i]);
		SyncState	state;
		char		reason[256];
		TimestampTz last_sync;

		if (!slot_sync_status_lookup(name, &state, NULL, reason,
									 sizeof(reason), &last_sync))
		{
			if (!slot_sync_is_listed(session, name))
				continue;		/* no longer a failover slot */
			state = SYNC_STATE_ERROR;
			snprintf(reason, sizeof(reason),
					 "the standby has no room to synchronize or report it (increase \"max_replication_slots\" on the standby)");
		}
		else if (state == SYNC_STATE_READY || state == SYNC_STATE_INVALIDATED)
			continue;
		done = false;
		appendStringInfo(not_ready, "%sreplication slot \"%s\" is %s: %s",
						 not_ready->len ? "\n" : "", name,
						 sync_state_name(state), reason);
	}
	return done;
}

/* Refuse what core refuses, in core's words. */
static void
check_may_sync(void)
{
	SyncComplaint complaint;

	CheckSlotPermissions();
	if (!RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slots can only be synchronized to a standby server")));
	if (!slot_sync_validate_local(&complaint))
		ereport(ERROR,
				(errcode(complaint.sqlerrcode),
				 errmsg_internal("%s", complaint.message),
				 complaint.hint[0] ? errhint("%s", complaint.hint) : 0));
	if (IsTransactionBlock())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("pg_slotsync.sync_replication_slots() cannot run inside a transaction block")));
}

static void
raise_complaint(const SyncComplaint *c)
{
	ereport(ERROR,
			(errcode(c->sqlerrcode),
			 errmsg_internal("%s", c->message),
			 c->detail[0] ? errdetail_internal("%s", c->detail) : 0,
			 c->hint[0] ? errhint("%s", c->hint) : 0));
}

/*
 * Error or exit on the way: close the connection and give up the claim;
 * the launcher cleans up the debris.  Runs while an error propagates, so
 * it only releases things.
 */
static void
manual_failure_cleanup(int code, Datum arg)
{
	SyncSession *session = (SyncSession *) DatumGetPointer(arg);

	LWLockReleaseAll();
	sync_session_disconnect(session);
	worker_status_stopped();
	slot_sync_release();
}

/*
 * Run cycles until done or the deadline; returns true if done.  The names
 * of the first cycle's slots go into *names.
 */
static bool
sync_until_done(SyncSession *session, TimestampTz deadline,
				StringInfo not_ready)
{
	SyncComplaint complaint;
	NameData   *names = NULL;
	int			nnames = 0;
	char	   *appname = slot_sync_application_name(false);

	if (!sync_session_connect(session, appname, &complaint))
		raise_complaint(&complaint);

	for (;;)
	{
		SyncCycleResult result;
		SyncCycleStatus status;

		CHECK_FOR_INTERRUPTS();
		if (!RecoveryInProgress())
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("replication slot synchronization will stop because promotion is triggered")));

		status = slot_sync_cycle(session,
								 names == NULL ? 0 : MANUAL_PENDING_WAIT_MS,
								 &result, &complaint);
		CHECK_FOR_INTERRUPTS();
		if (status == SYNC_CYCLE_FAILED)
			raise_complaint(&complaint);
		if (status == SYNC_CYCLE_INTERRUPTED)
			continue;
		worker_status_synced(0);

		/* the slots to wait for: those the primary has now */
		if (names == NULL)
			slot_sync_listed_names(session, &names, &nnames);
		if (all_done(session, names, nnames, not_ready))
			return true;
		if (deadline != 0 && GetCurrentTimestamp() >= deadline)
			return false;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 MANUAL_ROUND_SLEEP_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

Datum
pg_slotsync_sync_replication_slots(PG_FUNCTION_ARGS)
{
	SyncSession session;
	TimestampTz deadline;
	StringInfoData not_ready;
	bool		done;

	check_may_sync();
	deadline = manual_deadline(PG_ARGISNULL(0) ? NULL : PG_GETARG_INTERVAL_P(0));
	if (!slot_sync_claim())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("cannot synchronize replication slots concurrently"),
				 errdetail("The slot sync worker or another call is synchronizing replication slots."),
				 errhint("Turn off \"pg_slotsync.sync_replication_slots\" to synchronize by hand.")));

	sync_session_init(&session, CurrentMemoryContext, "pg_slotsync manual sync",
					  manual_interrupted);
	worker_status_started(true);
	initStringInfo(&not_ready);

	PG_ENSURE_ERROR_CLEANUP(manual_failure_cleanup, PointerGetDatum(&session));
	{
		done = sync_until_done(&session, deadline, &not_ready);
	}
	PG_END_ENSURE_ERROR_CLEANUP(manual_failure_cleanup, PointerGetDatum(&session));

	/* not-ready copies do not outlive the call, as in core */
	sync_session_destroy(&session);
	sync_remove_debris("when pg_slotsync.sync_replication_slots() returned");
	worker_status_stopped();
	slot_sync_release();

	if (!done)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("timed out waiting for replication slots to become sync-ready"),
				 errdetail_internal("%s", not_ready.data)));

	PG_RETURN_VOID();
}
