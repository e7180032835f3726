/*-------------------------------------------------------------------------
 *
 * standby_gate_wait.c
 *		Waiting until the standbys listed in
 *		pg_slotsync.synchronized_standby_slots confirm a WAL position, for a
 *		walsender and for a backend running a SQL decoding function.
 *
 * Waking up: waiters sleep on GateState->standby_confirmed_cv.  The
 * physical walsender of a listed slot broadcasts on it whenever the slot's
 * restart_lsn moves (standby_gate_walsender.c), so a standby's flush report
 * releases waiters within microseconds, with no polling.  A reload wakes
 * every process (SIGHUP sets the latch), so taking a standby off the list
 * releases waiters at once too.  What has no broadcast (a listed slot moved
 * by pg_replication_slot_advance, a standby connecting) is noticed at the
 * next check, within a second.
 *
 * A walsender must stay a good citizen while it waits: reply to its client,
 * send keepalives, notice timeouts, reloads, shutdown and termination.  Its
 * own loop does all that, so we never wait long: we sleep on the socket
 * (readable), our latch and postmaster death, for at most a second (an
 * eighth of wal_sender_timeout if that is shorter), and then, or as soon as
 * the client sends something or a reload is pending, return false; the
 * gated reader returns -1, the WAL reader takes that as "no record yet",
 * WalSndLoop() runs its round and asks us again.  WalSndLoop checks
 * timeouts and sends keepalive requests with the time it read before
 * calling us, so after a round in which we slept, the next round only
 * checks and does not sleep: that round's checks see the current time.
 *
 * A backend (SQL function) waits on its latch for at most a second per
 * round, with CHECK_FOR_INTERRUPTS (cancel, terminate, statement_timeout)
 * and a configuration reload each round, as core's
 * WaitForStandbyConfirmation() does, and exits if the postmaster dies.
 *
 * Every wait here checks for postmaster death: the sleeps wait for it, and
 * a walsender round that does not sleep asks PostmasterIsAlive().
 *
 * Shutdown: a walsender told to stop (standby_gate_shutdown.c) keeps
 * waiting for the standbys as in core, but a listed slot that is missing,
 * logical, invalidated or inactive while behind raises core's ERROR, and
 * after wal_sender_timeout (60 s if that is disabled) it logs and exits,
 * without sending what the standbys lack (core would wait for ever).
 *
 * The waiter registry: while it waits, a consumer shows in its own entry of
 * GateState->waiters (by BackendId) which slot waits for which position and
 * since when, for pg_slotsync.gate_status().  A wait that ends clears it;
 * one that ends in an error may not (a walsender's), so readers only count
 * entries whose slot the pid still holds.  Waiters also show wait event
 * type "Extension".
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq/libpq.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "replication/walsender.h"
#include "standby_gate.h"
#include "standby_gate_internal.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

/* Longest single wait before a walsender returns to its own loop. */
#define WALSENDER_MAX_WAIT_MS		1000

/* Longest wait of a SQL function before it looks again without a wakeup. */
#define BACKEND_MAX_WAIT_MS			1000

/* How long a stopping walsender waits when wal_sender_timeout is 0. */
#define STOPPING_DEFAULT_WAIT_MS	60000

static TimestampTz stopping_since = 0;

static GateWaiter *
my_waiter(void)
{
	if (GateState == NULL || MyBackendId < 1 ||
		MyBackendId > GateState->nwaiters)
		return NULL;
	return &GateState->waiters[MyBackendId - 1];
}

/*
 * Show that we wait for "target" on the slot we hold; the start of the wait
 * is kept while we go on waiting for the same slot.
 */
static void
waiter_set(XLogRecPtr target, bool walsender)
{
	GateWaiter *waiter = my_waiter();
	TimestampTz now;

	if (waiter == NULL)
		return;
	if (waiter->pid == MyProcPid &&
		strcmp(NameStr(waiter->slot),
			   NameStr(MyReplicationSlot->data.name)) == 0)
	{
		SpinLockAcquire(&waiter->mutex);
		waiter->target = target;
		SpinLockRelease(&waiter->mutex);
		return;
	}

	now = GetCurrentTimestamp();
	SpinLockAcquire(&waiter->mutex);
	waiter->pid = MyProcPid;
	waiter->walsender = walsender;
	namestrcpy(&waiter->slot, NameStr(MyReplicationSlot->data.name));
	waiter->target = target;
	waiter->since = now;
	SpinLockRelease(&waiter->mutex);
}

/*
 * We no longer wait.  Reading our own entry without the lock is fine: only
 * we write it.
 */
void
gate_waiter_clear(void)
{
	GateWaiter *waiter = my_waiter();

	if (waiter == NULL || waiter->pid == 0)
		return;
	SpinLockAcquire(&waiter->mutex);
	waiter->pid = 0;
	SpinLockRelease(&waiter->mutex);
}

/*
 * A stopping walsender has waited long enough: leave without sending what
 * the standbys have not confirmed.
 */
static void
walsender_give_up(XLogRecPtr target, int waited_ms)
{
	ConditionVariableCancelSleep();
	gate_waiter_clear();
	ereport(LOG,
			(errmsg("terminating walsender process for replication slot \"%s\" during shutdown",
					NameStr(MyReplicationSlot->data.name)),
			 errdetail("The standbys listed in parameter \"%s\" did not confirm WAL location %X/%X within %d ms; the changes from there on were not sent.",
					   STANDBY_SLOTS_GUC_NAME, LSN_FORMAT_ARGS(target),
					   waited_ms)));
	proc_exit(0);
}

/*
 * How much longer a stopping walsender may wait (exits if that is none).
 */
static long
stopping_wait_left(XLogRecPtr target, TimestampTz now)
{
	int			limit = wal_sender_timeout > 0 ?
		wal_sender_timeout : STOPPING_DEFAULT_WAIT_MS;
	long		waited;

	if (stopping_since == 0)
		stopping_since = now;
	waited = TimestampDifferenceMilliseconds(stopping_since, now);
	if (waited >= limit)
		walsender_give_up(target, (int) waited);
	return limit - waited;
}

static void
exit_on_postmaster_death(void)
{
	ConditionVariableCancelSleep();
	gate_waiter_clear();
	proc_exit(1);
}

/*
 * Walsender: wait until the standbys confirm "target", but not longer than
 * until the walsender's own loop has work to do.  Returns true if the gate
 * opened, false if the caller should return -1 from page_read.
 */
bool
gate_walsender_wait(XLogRecPtr target)
{
	static bool slept_last_round = false;
	TimestampTz start = GetCurrentTimestamp();
	long		max_wait = WALSENDER_MAX_WAIT_MS;
	bool		may_sleep = !slept_last_round;
	bool		slept = false;
	bool		opened = false;

	if (wal_sender_timeout > 0)
		max_wait = Min(max_wait, Max(wal_sender_timeout / 8, 10));

	for (;;)
	{
		long		timeout;
		WaitEvent	event;

		/* re-register each round: a broadcast takes us off the list */
		ConditionVariablePrepareToSleep(&GateState->standby_confirmed_cv);

		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			exit_on_postmaster_death();

		if (!gate_applies() ||
			standby_slots_confirmed(target,
									gate_walsender_stopping ? ERROR : WARNING))
		{
			opened = true;
			break;
		}
		waiter_set(target, true);

		/* let WalSndLoop reload the configuration, or flush its output */
		if (ConfigReloadPending || pq_is_send_pending())
			break;

		timeout = max_wait -
			TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());
		if (gate_walsender_stopping)
			timeout = Min(timeout,
						  stopping_wait_left(target, GetCurrentTimestamp()));
		if (timeout <= 0 || !may_sleep)
			break;

		slept = true;
		ModifyWaitEvent(FeBeWaitSet, FeBeWaitSetSocketPos, WL_SOCKET_READABLE,
						NULL);
		if (WaitEventSetWait(FeBeWaitSet, timeout, &event, 1,
							 PG_WAIT_EXTENSION) == 1)
		{
			if (event.events & WL_POSTMASTER_DEATH)
				exit_on_postmaster_death();
			if (event.events & WL_SOCKET_READABLE)
				break;			/* the client has something for WalSndLoop */
			if (event.events & WL_LATCH_SET)
				ResetLatch(MyLatch);
		}
	}

	ConditionVariableCancelSleep();
	if (opened)
		gate_waiter_clear();
	slept_last_round = slept && !opened;
	return opened;
}

/*
 * Backend running a SQL decoding function: wait until the standbys confirm
 * "target" or the gate no longer applies.  Interrupts end the wait with an
 * ERROR; postmaster death ends the process.
 */
void
gate_backend_wait(XLogRecPtr target)
{
	PG_TRY();
	{
		for (;;)
		{
			ConditionVariablePrepareToSleep(&GateState->standby_confirmed_cv);

			CHECK_FOR_INTERRUPTS();

			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}

			if (!gate_applies() || standby_slots_confirmed(target, WARNING))
				break;
			waiter_set(target, false);

			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 BACKEND_MAX_WAIT_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
	PG_FINALLY();
	{
		ConditionVariableCancelSleep();
		gate_waiter_clear();
	}
	PG_END_TRY();
}
