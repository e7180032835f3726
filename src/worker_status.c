/*-------------------------------------------------------------------------
 *
 * worker_status.c
 *		What the syncing process (the worker, or a manual call) reports
 *		about itself in shared memory: running or not, connected or not,
 *		what keeps it from syncing, when it last completed a cycle.
 *
 * The views need it to say whether anyone vouches for the copies: a copy
 * recorded ready by a cycle long ago is only "stale" now (see
 * sync_reported_state() in sync_decide.c), and a standby that never synced
 * is not failover-safe, however empty its list of problems.  So the worker
 * records every start, every completed cycle and every failure here, and
 * clears its pid when it exits; pg_slotsync.sync_worker and
 * pg_slotsync.failover_readiness() read it (sync_views.c).
 *
 * One writer at a time: only the process holding the sync claim
 * (sync_status.c) writes, under the spinlock; readers copy the struct.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "slot_sync.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

typedef struct WorkerStatusShared
{
	slock_t		mutex;
	WorkerStatus status;
} WorkerStatusShared;

static WorkerStatusShared *WorkerShared = NULL;

Size
worker_status_shmem_size(void)
{
	return MAXALIGN(sizeof(WorkerStatusShared));
}

void
worker_status_shmem_init(void *ptr, bool found)
{
	WorkerShared = (WorkerStatusShared *) ptr;
	if (!found)
	{
		memset(WorkerShared, 0, sizeof(*WorkerShared));
		SpinLockInit(&WorkerShared->mutex);
	}
}

static void
forget_pid_at_exit(int code, Datum arg)
{
	SpinLockAcquire(&WorkerShared->mutex);
	if (WorkerShared->status.pid == MyProcPid)
	{
		WorkerShared->status.pid = 0;
		WorkerShared->status.phase = WORKER_PHASE_NONE;
	}
	SpinLockRelease(&WorkerShared->mutex);
}

/*
 * The syncing process starts (manual: a call of the manual function).
 */
void
worker_status_started(bool manual)
{
	static bool callback_registered = false;

	SpinLockAcquire(&WorkerShared->mutex);
	WorkerShared->status.pid = MyProcPid;
	WorkerShared->status.manual = manual;
	WorkerShared->status.phase = WORKER_PHASE_STARTING;
	WorkerShared->status.started_at = GetCurrentTimestamp();
	WorkerShared->status.cycles = 0;
	WorkerShared->status.errors = 0;
	WorkerShared->status.connected = false;
	SpinLockRelease(&WorkerShared->mutex);

	if (!callback_registered)
	{
		before_shmem_exit(forget_pid_at_exit, (Datum) 0);
		callback_registered = true;
	}
}

/* It stops. */
void
worker_status_stopped(void)
{
	forget_pid_at_exit(0, (Datum) 0);
}

/*
 * Something keeps it from syncing: a setting (misconfigured) or the primary
 * (disconnected; counted as an error).
 */
void
worker_status_problem(WorkerPhase phase, const char *message)
{
	SpinLockAcquire(&WorkerShared->mutex);
	WorkerShared->status.phase = phase;
	if (phase == WORKER_PHASE_DISCONNECTED)
	{
		WorkerShared->status.errors++;
		WorkerShared->status.connected = false;
	}
	WorkerShared->status.last_error_time = GetCurrentTimestamp();
	strlcpy(WorkerShared->status.last_error, message,
			sizeof(WorkerShared->status.last_error));
	SpinLockRelease(&WorkerShared->mutex);
}

/* A cycle completed. */
void
worker_status_synced(uint64 primary_sysid)
{
	SpinLockAcquire(&WorkerShared->mutex);
	WorkerShared->status.phase = WORKER_PHASE_SYNCING;
	WorkerShared->status.connected = true;
	WorkerShared->status.cycles++;
	WorkerShared->status.last_sync = GetCurrentTimestamp();
	if (primary_sysid != 0)
		WorkerShared->status.primary_sysid = primary_sysid;
	SpinLockRelease(&WorkerShared->mutex);
}

/* A copy of the whole status. */
void
worker_status_read(WorkerStatus *out)
{
	SpinLockAcquire(&WorkerShared->mutex);
	*out = WorkerShared->status;
	SpinLockRelease(&WorkerShared->mutex);
}

/*
 * Did a syncing process complete a cycle within pg_slotsync.stale_after?
 * Anyone who vouches for the copies must have.
 */
bool
worker_status_recent_sync(void)
{
	WorkerStatus st;

	worker_status_read(&st);
	return st.last_sync != 0 &&
		!TimestampDifferenceExceeds(st.last_sync, GetCurrentTimestamp(),
									pg_slotsync_stale_after);
}
