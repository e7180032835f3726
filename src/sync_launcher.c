/*-------------------------------------------------------------------------
 *
 * sync_launcher.c
 *		The launcher: the background worker that keeps a sync worker
 *		running on a standby, and clears away what syncing leaves behind
 *		when nobody syncs.
 *
 * It is registered at server start on every node.
 *
 * On a server that starts as a primary (a promoted standby restarted, or a
 * standby that was stopped, had its standby.signal removed and was started
 * again) it removes the debris of earlier syncing, not-ready copies and the
 * anchor (sync_remove_debris()), logging each, and exits: a primary never
 * becomes a standby without a restart.
 *
 * On a standby it connects to template1 (so that it can take database
 * locks, see sync_apply.c) and:
 *
 *	- starts the sync worker (a dynamic background worker) while
 *	  pg_slotsync.sync_replication_slots is on, and starts it again, with a
 *	  growing delay (SYNC_RETRY_MIN_MS doubling to SYNC_RETRY_MAX_MS), should
 *	  it fail; so turning sync off and on again needs no restart, as with
 *	  core's postmaster-launched worker;
 *	- whenever sync is off and nobody holds the sync claim (sync_status.c),
 *	  removes the debris: at its own start (what a crashed worker left), and
 *	  each time a syncing process (the worker, or a manual call that failed
 *	  or was cancelled or terminated) gives up the claim, which wakes it.
 *	  It takes the claim itself while it cleans, so that a manual call
 *	  cannot start meanwhile;
 *	- while sync is off, demotes ready copies once the standby's settings no
 *	  longer protect them (sync_local_protection_lost()), which makes them
 *	  debris too;
 *	- at promotion, once the worker is gone, removes the debris in case the
 *	  worker could not, and exits.
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
#include "slot_sync.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/timestamp.h"

PGDLLEXPORT void pg_slotsync_launcher_main(Datum arg);

#define SYNC_RETRY_MIN_MS		1000
#define SYNC_RETRY_MAX_MS		30000
#define LAUNCHER_CHECK_MS		200

void
slot_sync_register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
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

/*
 * Remove the debris of syncing, in a transaction during recovery (database
 * locks).  Returns how many slots were in use and left for later.
 */
static int
remove_debris(const char *why)
{
	int			busy;

	if (!RecoveryInProgress())
		return sync_remove_debris(why);
	StartTransactionCommand();
	busy = sync_remove_debris(why);
	CommitTransactionCommand();
	return busy;
}

/* The state of the launcher's loop. */
typedef struct LauncherState
{
	BackgroundWorkerHandle *handle;
	TimestampTz next_start;
	TimestampTz started_at;
	int			retry_ms;
	uint64		cleaned_at_releases;	/* claim releases at the last clean */
	bool		cleanup_pending;
	bool		settings_changed;	/* since the last look at protection */
} LauncherState;

/*
 * Nobody syncs: if the settings no longer protect the ready copies, they
 * are not ready any more, and so debris to clean up.
 */
static void
demote_if_unprotected(LauncherState *ls)
{
	if (!slot_sync_claim())
		return;					/* a manual call is syncing: it decides */
	ls->settings_changed = false;
	if (sync_demote_if_unprotected(false) > 0)
		ls->cleanup_pending = true;
	slot_sync_release();
	ls->cleaned_at_releases = slot_sync_claim_releases();
}

/*
 * Sync is off and nobody syncs: clean up if a syncing process gave up its
 * claim since we last looked, or something was in use then.
 */
static void
clean_up_if_due(LauncherState *ls)
{
	if (!ls->cleanup_pending &&
		slot_sync_claim_releases() == ls->cleaned_at_releases)
		return;
	if (!slot_sync_claim())
		return;					/* a manual call is syncing */
	ls->cleanup_pending =
		remove_debris("because slot synchronization is off") > 0;
	slot_sync_release();
	ls->cleaned_at_releases = slot_sync_claim_releases();
}

/* Is the worker running?  Forgets a worker that stopped, and plans when to
 * start the next one. */
static bool
worker_running(LauncherState *ls)
{
	pid_t		pid;
	TimestampTz now;

	if (ls->handle == NULL)
		return false;
	if (GetBackgroundWorkerPid(ls->handle, &pid) != BGWH_STOPPED)
		return true;

	/* it stopped: if it did not last a minute, wait longer */
	pfree(ls->handle);
	ls->handle = NULL;
	now = GetCurrentTimestamp();
	if (TimestampDifferenceExceeds(ls->started_at, now, 60000))
		ls->retry_ms = SYNC_RETRY_MIN_MS;
	else
		ls->retry_ms = Min(ls->retry_ms * 2, SYNC_RETRY_MAX_MS);
	ls->next_start = TimestampTzPlusMilliseconds(now, ls->retry_ms);
	return false;
}

/* Start the worker if it is due; returns how long to sleep at most. */
static long
start_worker_if_due(LauncherState *ls)
{
	TimestampTz now = GetCurrentTimestamp();

	if (now < ls->next_start)
		return Max(1, Min(LAUNCHER_CHECK_MS, (ls->next_start - now) / 1000));

	if (start_worker(&ls->handle))
		ls->started_at = now;
	else
	{
		ereport(LOG,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the pg_slotsync worker: no background worker slot is free"),
				 errhint("Increase \"max_worker_processes\".")));
		ls->handle = NULL;
		ls->next_start = TimestampTzPlusMilliseconds(now, SYNC_RETRY_MAX_MS);
	}
	return LAUNCHER_CHECK_MS;
}

static void
forget_launcher_latch(int code, Datum arg)
{
	slot_sync_set_launcher_latch(NULL);
}

void
pg_slotsync_launcher_main(Datum arg)
{
	LauncherState ls;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	/* a primary has nothing to synchronize, and never becomes a standby */
	if (!RecoveryInProgress())
	{
		remove_debris("because the server runs as a primary");
		proc_exit(0);
	}

	/* template1 always exists; a standby cannot use it as a template */
	BackgroundWorkerInitializeConnection("template1", NULL,
										 BGWORKER_BYPASS_ALLOWCONN);
	pgstat_report_appname("pg_slotsync launcher");

	memset(&ls, 0, sizeof(ls));
	ls.retry_ms = SYNC_RETRY_MIN_MS;
	ls.cleanup_pending = true;	/* whatever a crashed worker left */
	ls.settings_changed = true;
	slot_sync_set_launcher_latch(MyLatch);
	before_shmem_exit(forget_launcher_latch, (Datum) 0);

	for (;;)
	{
		long		wait_ms = LAUNCHER_CHECK_MS;
		bool		running;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			proc_exit(0);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			ls.next_start = 0;	/* a fixed setting may let it start now */
			ls.settings_changed = true;
		}

		running = worker_running(&ls);
		if (!RecoveryInProgress())
		{
			/* promoted: not-ready copies must not outlive the standby */
			if (running)
				wait_ms = 10;
			else
			{
				remove_debris("at promotion");
				proc_exit(0);
			}
		}
		else if (!pg_slotsync_sync_enabled)
		{
			if (!running && ls.settings_changed)
				demote_if_unprotected(&ls);
			if (!running)
				clean_up_if_due(&ls);
		}
		else if (!running)
			wait_ms = start_worker_if_due(&ls);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
