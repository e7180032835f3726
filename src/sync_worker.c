/*-------------------------------------------------------------------------
 *
 * sync_worker.c
 *		The processes that keep failover slots synchronized on a standby:
 *		the launcher, the sync worker, and the manual
 *		pg_slotsync.sync_replication_slots().
 *
 * The launcher is a background worker registered at server start on every
 * node.  On a primary it exits at once: a primary never becomes a standby
 * without a restart.  On a standby it starts the sync worker (a dynamic
 * background worker) while pg_slotsync.sync_replication_slots is on, and
 * starts it again, with a growing delay, should it fail; so turning sync
 * off and on again needs no restart, as with core's postmaster-launched
 * worker.  At promotion it exits, after dropping any synced slot that is not
 * sync-ready in case the worker could not.
 *
 * The sync worker connects to the primary (sync_remote.c), runs cycles
 * (sync_cycle.c) and otherwise waits inside the primary's long-poll call, so
 * a slot that moves on the primary is on the standby a round trip later,
 * after an hour of quiet as well as under load.  While some slot is not
 * ready yet it asks the primary to answer within SYNC_PENDING_WAIT_MS, so
 * that what the standby itself is waiting for (WAL to be flushed, feedback
 * to arrive) is noticed quickly.
 *
 * Failures never take the server down.  A configuration the worker cannot
 * use (hot_standby_feedback off, primary_slot_name unset or missing on the
 * primary, no dbname, the extension missing on the primary, a connection
 * refused) is logged, at most once a minute while it stays the same, and
 * retried with a growing delay (SYNC_RETRY_MIN_MS to SYNC_RETRY_MAX_MS, and
 * at once on a configuration reload); the worker starts syncing by itself
 * once the problem is fixed.
 *
 * Configuration changes: turning sync off makes the worker log that it
 * stops, drop the slots that are not ready, and exit.  A change of
 * primary_conninfo, primary_slot_name, hot_standby_feedback or
 * pg_slotsync.primary_conninfo makes it log that it restarts and reconnect
 * with the new settings.
 *
 * Promotion: the worker checks for the end of recovery at least every
 * REMOTE_POLL_MS (50 ms) even while it waits for the primary, then drops
 * not-ready synced slots and exits; it never holds up the promotion, which
 * does not wait for it.  Ready slots stay, with their failover flag, usable
 * at once.
 *
 * The manual function runs the same cycles in the calling backend, until
 * every failover slot the primary had when it was called is ready (or
 * invalidated, or gone), or until its timeout; it is refused on a primary
 * and while the worker or another call is syncing, and it can be cancelled.
 * The slots it leaves not ready are dropped when it returns, as core's
 * function does.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/slot.h"
#include "replication/walreceiver.h"
#include "slot_sync.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PGDLLEXPORT void pg_slotsync_launcher_main(Datum arg);
PGDLLEXPORT void pg_slotsync_worker_main(Datum arg);

PG_FUNCTION_INFO_V1(pg_slotsync_sync_replication_slots);

#define SYNC_IDLE_WAIT_MS		10000	/* long-poll while all is ready */
#define SYNC_PENDING_WAIT_MS	100 /* long-poll while some slot is not */
#define SYNC_RETRY_MIN_MS		1000
#define SYNC_RETRY_MAX_MS		30000
#define COMPLAINT_INTERVAL_MS	60000
#define LAUNCHER_CHECK_MS		200

/* The settings whose change makes the worker start over. */
typedef struct WatchedSettings
{
	char	   *conninfo;
	char	   *slot_name;
	bool		hot_standby_feedback;
} WatchedSettings;

static void
watched_settings_take(WatchedSettings *w)
{
	if (w->conninfo)
		pfree(w->conninfo);
	if (w->slot_name)
		pfree(w->slot_name);
	w->conninfo = MemoryContextStrdup(TopMemoryContext,
									  slot_sync_conninfo() ? slot_sync_conninfo() : "");
	w->slot_name = MemoryContextStrdup(TopMemoryContext,
									   PrimarySlotName ? PrimarySlotName : "");
	w->hot_standby_feedback = hot_standby_feedback;
}

static bool
watched_settings_changed(const WatchedSettings *w)
{
	return strcmp(w->conninfo, slot_sync_conninfo() ? slot_sync_conninfo() : "") != 0 ||
		strcmp(w->slot_name, PrimarySlotName ? PrimarySlotName : "") != 0 ||
		w->hot_standby_feedback != hot_standby_feedback;
}

/*
 * Log a complaint, but the same one at most once a minute.
 */
static void
log_complaint(const SyncComplaint *c)
{
	static char last_message[512] = "";
	static TimestampTz last_time = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (strcmp(last_message, c->message) == 0 &&
		!TimestampDifferenceExceeds(last_time, now, COMPLAINT_INTERVAL_MS))
		return;
	strlcpy(last_message, c->message, sizeof(last_message));
	last_time = now;
	ereport(LOG,
			(errcode(c->sqlerrcode),
			 errmsg_internal("%s", c->message),
			 c->hint[0] ? errhint("%s", c->hint) : 0));
}

static void
raise_complaint(const SyncComplaint *c)
{
	ereport(ERROR,
			(errcode(c->sqlerrcode),
			 errmsg_internal("%s", c->message),
			 c->hint[0] ? errhint("%s", c->hint) : 0));
}

static char *
worker_application_name(bool worker)
{
	if (cluster_name != NULL && cluster_name[0] != '\0')
		return psprintf("%s_%s", cluster_name,
						worker ? "pg_slotsync worker" : "pg_slotsync");
	return pstrdup(worker ? "pg_slotsync worker" : "pg_slotsync");
}

/* ---------------------------------------------------------------------
 * The launcher
 * ---------------------------------------------------------------------
 */

void
slot_sync_register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS;
	bgw.bgw_start_time = BgWorkerStart_ConsistentState;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "pg_slotsync");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "pg_slotsync_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "pg_slotsync launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "pg_slotsync launcher");
	RegisterBackgroundWorker(&bgw);
}

static bool
start_worker(BackgroundWorkerHandle **handle)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_ConsistentState;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "pg_slotsync");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "pg_slotsync_worker_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "pg_slotsync worker");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "pg_slotsync worker");
	bgw.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&bgw, handle);
}

void
pg_slotsync_launcher_main(Datum arg)
{
	BackgroundWorkerHandle *handle = NULL;
	TimestampTz next_start = 0;
	TimestampTz started_at = 0;
	int			retry_ms = SYNC_RETRY_MIN_MS;
	bool		cleanup_due = true;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	/* a primary has nothing to synchronize, and never becomes a standby */
	if (!RecoveryInProgress())
		proc_exit(0);

	for (;;)
	{
		pid_t		pid = 0;
		bool		running;
		TimestampTz now;
		long		wait_ms = LAUNCHER_CHECK_MS;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			proc_exit(0);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			next_start = 0;		/* a fixed setting may let it start now */
		}

		if (!RecoveryInProgress())
		{
			/* promoted: not-ready copies must not outlive the standby */
			if (handle == NULL ||
				GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
			{
				sync_drop_not_ready_slots();
				sync_anchor_drop();
			}
			proc_exit(0);
		}

		running = handle != NULL &&
			GetBackgroundWorkerPid(handle, &pid) != BGWH_STOPPED;
		if (!running && handle != NULL)
		{
			/* it stopped: if it did not last a minute, wait longer */
			pfree(handle);
			handle = NULL;
			now = GetCurrentTimestamp();
			if (TimestampDifferenceExceeds(started_at, now, 60000))
				retry_ms = SYNC_RETRY_MIN_MS;
			else
				retry_ms = Min(retry_ms * 2, SYNC_RETRY_MAX_MS);
			next_start = TimestampTzPlusMilliseconds(now, retry_ms);
		}

		/*
		 * Sync is off and no worker runs: what a previous worker left (after
		 * a crash, say) would only pin WAL and catalog rows.
		 */
		if (pg_slotsync_sync_enabled)
			cleanup_due = true;
		else if (!running && cleanup_due)
		{
			sync_drop_not_ready_slots();
			sync_anchor_drop();
			cleanup_due = false;
		}

		now = GetCurrentTimestamp();
		if (!running && pg_slotsync_sync_enabled && now >= next_start)
		{
			if (start_worker(&handle))
				started_at = now;
			else
			{
				ereport(LOG,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("could not start the pg_slotsync worker: no background worker slot is free"),
						 errhint("Increase \"max_worker_processes\".")));
				handle = NULL;
				next_start = TimestampTzPlusMilliseconds(now, SYNC_RETRY_MAX_MS);
			}
		}
		else if (!running && pg_slotsync_sync_enabled)
			wait_ms = Max(1, Min(wait_ms, (next_start - now) / 1000));

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------------
 * The sync worker
 * ---------------------------------------------------------------------
 */

/* logical slots after the last cycle; fewer now means one was dropped */
static int	logical_slots_after_cycle = -1;

/* Should a wait for the primary give up now? */
static bool
worker_interrupted(void)
{
	return ShutdownRequestPending || ConfigReloadPending ||
		ProcDiePending || !RecoveryInProgress() ||
		(logical_slots_after_cycle >= 0 &&
		 sync_count_logical_slots() < logical_slots_after_cycle);
}

static void
worker_stop(SyncSession *session, const char *why)
{
	if (why != NULL)
		ereport(LOG, (errmsg_internal("%s", why)));
	primary_disconnect(session->conn);
	session->conn = NULL;
	sync_drop_not_ready_slots();
	sync_anchor_drop();
	slot_sync_status_clear();
	slot_sync_release();
	proc_exit(0);
}

/* Sleep, waking for a reload, shutdown or promotion. */
static void
worker_sleep(long ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	while (!worker_interrupted())
	{
		long		left = (until - GetCurrentTimestamp()) / 1000;

		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(left, 50), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Wait (at most a few seconds) until this standby has flushed "lsn".  The
 * walreceiver has no way to wake us, so look every couple of milliseconds;
 * this only happens while the standby trails a slot that just moved.
 */
static void
wait_for_local_flush(XLogRecPtr lsn)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);

	while (!worker_interrupted() && GetCurrentTimestamp() < until)
	{
		if (GetWalRcvFlushRecPtr(NULL, NULL) >= lsn ||
			GetXLogReplayRecPtr(NULL) >= lsn)
			break;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 2, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

void
pg_slotsync_worker_main(Datum arg)
{
	SyncSession session;
	WatchedSettings watched = {0};
	SyncComplaint complaint;
	SyncCycleResult result = {0};
	int			retry_ms = SYNC_RETRY_MIN_MS;
	int			next_wait_ms = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	/*
	 * Which local database we live in does not matter (we only read
	 * pg_database and shared memory), but catalog access needs one.  Core
	 * uses the one named in primary_conninfo, so that a typo there keeps
	 * its worker from starting; template1 always exists and is never
	 * dropped, and a standby cannot use it as a template meanwhile.
	 */
	BackgroundWorkerInitializeConnection("template1", NULL,
										 BGWORKER_BYPASS_ALLOWCONN);
	pgstat_report_appname("pg_slotsync worker");

	memset(&session, 0, sizeof(session));
	session.cycle_cxt = AllocSetContextCreate(TopMemoryContext,
											  "pg_slotsync cycle",
											  ALLOCSET_DEFAULT_SIZES);
	session.interrupted = worker_interrupted;

	while (!slot_sync_claim())
	{
		/* a manual sync is running; it is short */
		worker_sleep(1000);
		if (ShutdownRequestPending || !RecoveryInProgress())
			proc_exit(0);
	}

	ereport(LOG, (errmsg("slot sync worker started")));
	watched_settings_take(&watched);

	for (;;)
	{
		SyncCycleStatus status;

		CHECK_FOR_INTERRUPTS();
		if (!RecoveryInProgress())
			worker_stop(&session,
						"replication slot synchronization worker will stop because promotion is triggered");
		if (ShutdownRequestPending)
			worker_stop(&session, NULL);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (!pg_slotsync_sync_enabled)
				worker_stop(&session,
							"replication slot synchronization worker will stop because \"pg_slotsync.sync_replication_slots\" is disabled");
			if (watched_settings_changed(&watched))
			{
				ereport(LOG,
						(errmsg("replication slot synchronization worker will restart because of a parameter change")));
				watched_settings_take(&watched);
				primary_disconnect(session.conn);
				session.conn = NULL;
				session.have_token = false;
				retry_ms = SYNC_RETRY_MIN_MS;
				next_wait_ms = 0;
			}
		}

		if (!slot_sync_validate_local(&complaint))
		{
			log_complaint(&complaint);
			worker_sleep(retry_ms);
			retry_ms = Min(retry_ms * 2, SYNC_RETRY_MAX_MS);
			continue;
		}

		if (session.conn == NULL)
		{
			char	   *appname = worker_application_name(true);

			session.conn = primary_connect(slot_sync_conninfo(), appname, LOG);
			pfree(appname);
			session.have_token = false;
			if (session.conn == NULL)
			{
				worker_sleep(retry_ms);
				retry_ms = Min(retry_ms * 2, SYNC_RETRY_MAX_MS);
				continue;
			}
		}

		status = slot_sync_cycle(&session, next_wait_ms, &result, &complaint);
		if (status == SYNC_CYCLE_FAILED)
		{
			log_complaint(&complaint);
			primary_disconnect(session.conn);
			session.conn = NULL;
			worker_sleep(retry_ms);
			retry_ms = Min(retry_ms * 2, SYNC_RETRY_MAX_MS);
			continue;
		}
		if (status == SYNC_CYCLE_INTERRUPTED)
		{
			/* the long call was abandoned midway: start afresh, at once */
			primary_disconnect(session.conn);
			session.conn = NULL;
			logical_slots_after_cycle = -1;
			continue;
		}
		retry_ms = SYNC_RETRY_MIN_MS;
		logical_slots_after_cycle = sync_count_logical_slots();
		if (!XLogRecPtrIsInvalid(result.flush_needed))
		{
			/*
			 * The primary's slot is ahead of the WAL this standby has: that
			 * WAL is on its way, and the primary has nothing new to say, so
			 * watch the local flush position and go again once it passes.
			 */
			wait_for_local_flush(result.flush_needed);
			next_wait_ms = 0;
		}
		else
		{
			if (result.pending && result.nchanged == 0)
				worker_sleep(20);	/* local progress takes a moment */
			next_wait_ms = result.pending ? SYNC_PENDING_WAIT_MS : SYNC_IDLE_WAIT_MS;
		}
	}
}

/* ---------------------------------------------------------------------
 * pg_slotsync.sync_replication_slots(timeout interval DEFAULT NULL)
 * ---------------------------------------------------------------------
 */

static bool
manual_interrupted(void)
{
	return QueryCancelPending || ProcDiePending || !RecoveryInProgress();
}

/* Is every slot of the first cycle ready, invalidated or gone? */
static bool
all_done(NameData *names, int nnames, StringInfo not_ready)
{
	bool		done = true;

	resetStringInfo(not_ready);
	for (int i = 0; i < nnames; i++)
	{
		SyncState	state;
		char		reason[256];
		TimestampTz last_sync;

		if (!slot_sync_status_lookup(NameStr(names[i]), &state, reason,
									 sizeof(reason), &last_sync))
			continue;			/* no longer a failover slot */
		if (state == SYNC_STATE_READY || state == SYNC_STATE_INVALIDATED)
			continue;
		done = false;
		appendStringInfo(not_ready, "%sreplication slot \"%s\" is %s: %s",
						 not_ready->len ? "\n" : "", NameStr(names[i]),
						 sync_state_name(state), reason);
	}
	return done;
}

Datum
pg_slotsync_sync_replication_slots(PG_FUNCTION_ARGS)
{
	SyncSession session;
	SyncComplaint complaint;
	NameData   *names = NULL;
	int			nnames = 0;
	TimestampTz deadline = 0;
	StringInfoData not_ready;
	char	   *appname;
	bool		timed_out = false;

	CheckSlotPermissions();
	if (!RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slots can only be synchronized to a standby server")));
	if (!PG_ARGISNULL(0))
	{
		Interval   *timeout = PG_GETARG_INTERVAL_P(0);
		int64		usecs = timeout->time +
		(int64) timeout->day * USECS_PER_DAY +
		(int64) timeout->month * 30 * USECS_PER_DAY;

		if (usecs < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout must not be negative")));
		deadline = GetCurrentTimestamp() + usecs;
	}
	if (!slot_sync_validate_local(&complaint))
		raise_complaint(&complaint);
	if (IsTransactionBlock())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("pg_slotsync.sync_replication_slots() cannot run inside a transaction block")));
	if (!slot_sync_claim())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("cannot synchronize replication slots concurrently"),
				 errdetail("The slot sync worker or another call is synchronizing replication slots."),
				 errhint("Turn off \"pg_slotsync.sync_replication_slots\" to synchronize by hand.")));

	memset(&session, 0, sizeof(session));
	session.cycle_cxt = AllocSetContextCreate(TopMemoryContext,
											  "pg_slotsync manual sync",
											  ALLOCSET_DEFAULT_SIZES);
	session.interrupted = manual_interrupted;
	initStringInfo(&not_ready);

	PG_TRY();
	{
		appname = worker_application_name(false);
		session.conn = primary_connect(slot_sync_conninfo(), appname, ERROR);

		for (;;)
		{
			SyncCycleResult result;
			SyncCycleStatus status;

			CHECK_FOR_INTERRUPTS();
			if (!RecoveryInProgress())
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("replication slot synchronization will stop because promotion is triggered")));

			status = slot_sync_cycle(&session, names == NULL ? 0 : SYNC_PENDING_WAIT_MS,
									 &result, &complaint);
			CHECK_FOR_INTERRUPTS();
			if (status == SYNC_CYCLE_FAILED)
				raise_complaint(&complaint);
			if (status == SYNC_CYCLE_INTERRUPTED)
				continue;

			if (names == NULL)
			{
				/* the slots to wait for: those the primary has now */
				MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

				slot_sync_listed_names(&session, &names, &nnames);
				MemoryContextSwitchTo(oldcxt);
			}
			if (all_done(names, nnames, &not_ready))
				break;
			if (deadline != 0 && GetCurrentTimestamp() >= deadline)
			{
				timed_out = true;
				break;
			}
			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 20, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
	PG_FINALLY();
	{
		primary_disconnect(session.conn);
		if (names != NULL)
			pfree(names);
		slot_sync_status_clear();
		slot_sync_release();
	}
	PG_END_TRY();

	/* not-ready copies do not outlive the call, as in core */
	sync_drop_not_ready_slots();
	sync_anchor_drop();
	MemoryContextDelete(session.cycle_cxt);
	if (session.memory != NULL)
		hash_destroy(session.memory);

	if (timed_out)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("timed out waiting for replication slots to become sync-ready"),
				 errdetail_internal("%s", not_ready.data)));

	PG_RETURN_VOID();
}
