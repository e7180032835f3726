/*-------------------------------------------------------------------------
 *
 * sync_worker.c
 *		The slot sync worker: the process that keeps a standby's copies of
 *		its primary's failover slots current.
 *
 * The launcher (sync_launcher.c) starts it while
 * pg_slotsync.sync_replication_slots is on.  It claims the right to
 * synchronize (only one process may, see sync_status.c), connects to the
 * primary (sync_cycle.c, sync_remote.c), runs cycles, and otherwise waits
 * inside the primary's long-poll call, so a slot that moves on the primary
 * is on the standby a round trip later, after an hour of quiet as well as
 * under load.  While some slot is not ready yet it asks the primary to
 * answer within SYNC_PENDING_WAIT_MS, so that what the standby itself is
 * waiting for (WAL to be flushed, feedback to arrive) is noticed quickly.
 *
 * It logs core's "slot sync worker started" once it really synchronizes:
 * after its first successful cycle, and again after each restart for a
 * parameter change; not while its configuration keeps it from syncing.
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
 * stops, drop what it leaves (sync_remove_debris()) and exit.  A change of
 * primary_conninfo, primary_slot_name, hot_standby_feedback,
 * pg_slotsync.primary_conninfo or pg_slotsync.primary_dbname makes it log
 * that it restarts, and start
 * over with the new settings (a new connection, a first cycle).  Settings
 * that leave the primary no reason to keep the copies' catalog rows
 * (hot_standby_feedback off, primary_slot_name unset or changed while WAL
 * streams, see sync_local_protection_lost()) make it demote every ready
 * copy at once: they are proven again once the settings allow.  "Changed"
 * is judged against the slot WAL last streamed through, so that a standby
 * whose HA tool empties primary_conninfo and primary_slot_name while no
 * member leads, then names the same slot again, keeps its copies.
 *
 * Everything it does is reported in shared memory for the views
 * (worker_status.c): started, what keeps it from syncing, every completed
 * cycle.
 *
 * Promotion: the worker checks for the end of recovery at least every
 * REMOTE_POLL_MS (50 ms) even while it waits for the primary, then drops
 * the debris and exits; it never holds up the promotion, which does not
 * wait for it.  Ready copies stay, with their failover flag, usable at
 * once.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/walreceiver.h"
#include "slot_copy.h"
#include "slot_sync.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PGDLLEXPORT void pg_slotsync_worker_main(Datum arg);

#define SYNC_IDLE_WAIT_MS		10000	/* long-poll while all is ready */
#define SYNC_PENDING_WAIT_MS	100 /* long-poll while some slot is not */
#define SYNC_RETRY_MIN_MS		1000
#define SYNC_RETRY_MAX_MS		30000
#define COMPLAINT_INTERVAL_MS	60000

/* The settings whose change makes the worker start over. */
typedef struct WatchedSettings
{
	char	   *conninfo;
	char	   *dbname;
	char	   *slot_name;
	bool		hot_standby_feedback;
} WatchedSettings;

static void
watched_settings_take(WatchedSettings *w)
{
	char	   *dbname = slot_sync_dbname();

	if (w->conninfo)
		pfree(w->conninfo);
	if (w->dbname)
		pfree(w->dbname);
	if (w->slot_name)
		pfree(w->slot_name);
	w->conninfo = MemoryContextStrdup(TopMemoryContext,
									  slot_sync_conninfo() ? slot_sync_conninfo() : "");
	w->dbname = MemoryContextStrdup(TopMemoryContext, dbname ? dbname : "");
	w->slot_name = MemoryContextStrdup(TopMemoryContext,
									   PrimarySlotName ? PrimarySlotName : "");
	w->hot_standby_feedback = hot_standby_feedback;
}

static bool
watched_settings_changed(const WatchedSettings *w)
{
	char	   *dbname = slot_sync_dbname();

	return strcmp(w->conninfo, slot_sync_conninfo() ? slot_sync_conninfo() : "") != 0 ||
		strcmp(w->dbname, dbname ? dbname : "") != 0 ||
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
			 c->detail[0] ? errdetail_internal("%s", c->detail) : 0,
			 c->hint[0] ? errhint("%s", c->hint) : 0));
}

/* application_name on the primary, like core's "<cluster>_slotsync worker" */
char *
slot_sync_application_name(bool worker)
{
	const char *what = worker ? "pg_slotsync worker" : "pg_slotsync";

	if (cluster_name != NULL && cluster_name[0] != '\0')
		return psprintf("%s_%s", cluster_name, what);
	return pstrdup(what);
}

/*
 * Live logical slots after the last cycle; fewer now means one was dropped
 * or invalidated.
 */
static int	logical_slots_after_cycle = -1;

/* Should a wait for the primary give up now? */
static bool
worker_interrupted(void)
{
	return ShutdownRequestPending || ConfigReloadPending ||
		ProcDiePending || !RecoveryInProgress() ||
		(logical_slots_after_cycle >= 0 &&
		 slot_count_live_logical() < logical_slots_after_cycle);
}

static void
worker_stop(SyncSession *session, const char *why, const char *debris_why)
{
	bool		promoted = !RecoveryInProgress();

	if (why != NULL)
		ereport(LOG, (errmsg_internal("%s", why)));
	sync_session_disconnect(session);
	if (!promoted)
	{
		StartTransactionCommand();
		sync_remove_debris(debris_why);
		CommitTransactionCommand();
	}
	else
		sync_remove_debris(debris_why);

	/* the copies left stay visible, stale once nobody vouches for them */
	if (promoted)
		slot_sync_status_clear();
	sync_stale_clear();
	worker_status_stopped();
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

/* What the worker's loop carries from one round to the next. */
typedef struct WorkerState
{
	SyncSession session;
	WatchedSettings watched;
	int			retry_ms;
	int			next_wait_ms;
	bool		announced;		/* "slot sync worker started" logged */
	char	   *streamed_slot_name; /* primary_slot_name last seen while WAL
									 * streamed; NULL before that */
} WorkerState;

/*
 * Is primary_slot_name another slot than the one WAL last streamed
 * through?  Remembers the current one while WAL streams.  Streaming from
 * nowhere for a while changes nothing, nor does streaming for the first
 * time since the worker started (the first cycle checks that slot on the
 * primary).
 */
static bool
streamed_slot_name_changed(WorkerState *ws)
{
	const char *now = PrimarySlotName ? PrimarySlotName : "";
	bool		changed;

	if (!slot_sync_streaming())
		return false;
	changed = ws->streamed_slot_name != NULL &&
		strcmp(ws->streamed_slot_name, now) != 0;
	if (ws->streamed_slot_name)
		pfree(ws->streamed_slot_name);
	ws->streamed_slot_name = MemoryContextStrdup(TopMemoryContext, now);
	return changed;
}

/* Stop, reload or restart as the signals and settings say. */
static void
handle_interrupts(WorkerState *ws)
{
	CHECK_FOR_INTERRUPTS();
	if (!RecoveryInProgress())
		worker_stop(&ws->session,
					"replication slot synchronization worker will stop because promotion is triggered",
					"at promotion");
	if (ShutdownRequestPending)
		worker_stop(&ws->session, NULL, "because slot synchronization stopped");
	if (!ConfigReloadPending)
		return;

	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	if (!pg_slotsync_sync_enabled)
		worker_stop(&ws->session,
					"replication slot synchronization worker will stop because \"pg_slotsync.sync_replication_slots\" is disabled",
					"because slot synchronization is off");
	if (watched_settings_changed(&ws->watched))
	{
		ereport(LOG,
				(errmsg("replication slot synchronization worker will restart because of a parameter change")));
		sync_demote_if_unprotected(streamed_slot_name_changed(ws));
		watched_settings_take(&ws->watched);
		sync_session_disconnect(&ws->session);
		ws->retry_ms = SYNC_RETRY_MIN_MS;
		ws->next_wait_ms = 0;
		ws->announced = false;
	}
}

/* A failure: log it, back off, and start afresh with a new connection. */
static void
back_off(WorkerState *ws, const SyncComplaint *complaint, bool disconnect)
{
	log_complaint(complaint);
	worker_status_problem(complaint->sqlerrcode == ERRCODE_CONNECTION_FAILURE ?
						  WORKER_PHASE_DISCONNECTED : WORKER_PHASE_MISCONFIGURED,
						  complaint->message);
	if (disconnect)
	{
		sync_session_disconnect(&ws->session);
		logical_slots_after_cycle = -1;
	}
	worker_sleep(ws->retry_ms);
	ws->retry_ms = Min(ws->retry_ms * 2, SYNC_RETRY_MAX_MS);
}

/* After a good cycle: how long the next long-poll may wait. */
static void
plan_next_wait(WorkerState *ws, const SyncCycleResult *result)
{
	if (!XLogRecPtrIsInvalid(result->flush_needed))
	{
		/*
		 * The primary's slot is ahead of the WAL this standby has: that WAL
		 * is on its way, and the primary has nothing new to say, so watch
		 * the local flush position and go again once it passes.
		 */
		wait_for_local_flush(result->flush_needed);
		ws->next_wait_ms = 0;
		return;
	}
	if (result->deferred)
	{
		/* work left for want of time: ask for changes, do not wait */
		ws->next_wait_ms = 0;
		return;
	}
	if (result->pending && result->nchanged == 0)
		worker_sleep(20);		/* local progress takes a moment */

	/* come back often enough to keep the copies from looking stale */
	ws->next_wait_ms = result->pending ? SYNC_PENDING_WAIT_MS :
		Min(SYNC_IDLE_WAIT_MS, pg_slotsync_stale_after / 3);
}

/*
 * Become the worker: signals, a database connection for catalog access, the
 * session, the sync claim.  Returns the context one round of the loop
 * allocates in.
 */
static MemoryContext
worker_setup(WorkerState *ws)
{
	MemoryContext loop_cxt;

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

	memset(ws, 0, sizeof(*ws));
	sync_session_init(&ws->session, TopMemoryContext, "pg_slotsync worker",
					  worker_interrupted);
	/* what one round of the loop allocates, freed at the next */
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_slotsync worker loop",
									 ALLOCSET_SMALL_SIZES);
	ws->retry_ms = SYNC_RETRY_MIN_MS;

	while (!slot_sync_claim())
	{
		/* a manual sync, or the launcher's cleaning, is running */
		worker_sleep(200);
		if (ShutdownRequestPending || !RecoveryInProgress())
			proc_exit(0);
	}
	watched_settings_take(&ws->watched);
	(void) streamed_slot_name_changed(ws);
	worker_status_started(false);
	return loop_cxt;
}

/*
 * The worker's loop: check the settings, connect, run a cycle, back off on
 * failure, and plan the next wait.
 */
void
pg_slotsync_worker_main(Datum arg)
{
	WorkerState ws;
	SyncComplaint complaint;
	SyncCycleResult result;
	MemoryContext loop_cxt = worker_setup(&ws);

	for (;;)
	{
		SyncCycleStatus status;

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		handle_interrupts(&ws);

		if (!slot_sync_validate_local(&complaint))
		{
			sync_demote_if_unprotected(false);
			log_complaint(&complaint);
			worker_status_problem(WORKER_PHASE_MISCONFIGURED,
								  complaint.message);
			worker_sleep(ws.retry_ms);
			ws.retry_ms = Min(ws.retry_ms * 2, SYNC_RETRY_MAX_MS);
			continue;
		}

		if (ws.session.conn == NULL)
		{
			char	   *appname;
			bool		ok;

			/*
			 * A local slot dropped since the last cycle interrupts a wait
			 * for the primary only to start a new cycle at once: with no
			 * session there is nothing to cut short, and the count must not
			 * keep interrupting the connection attempts (which would spin).
			 */
			logical_slots_after_cycle = -1;
			appname = slot_sync_application_name(true);
			ok = sync_session_connect(&ws.session, appname, &complaint);

			pfree(appname);
			if (!ok)
			{
				if (!worker_interrupted())
					back_off(&ws, &complaint, false);
				continue;
			}
		}

		status = slot_sync_cycle(&ws.session, ws.next_wait_ms, &result,
								 &complaint);
		if (status == SYNC_CYCLE_FAILED)
		{
			back_off(&ws, &complaint, true);
			continue;
		}
		if (status == SYNC_CYCLE_INTERRUPTED)
		{
			/* the long call was abandoned midway: start afresh, at once */
			sync_session_disconnect(&ws.session);
			logical_slots_after_cycle = -1;
			continue;
		}

		worker_status_synced(result.primary_sysid, result.nexamined);
		if (!ws.announced)
		{
			ereport(LOG, (errmsg("slot sync worker started")));
			ws.announced = true;
		}
		ws.retry_ms = SYNC_RETRY_MIN_MS;
		logical_slots_after_cycle = ws.session.logical_slots_seen;
		plan_next_wait(&ws, &result);
	}
}
