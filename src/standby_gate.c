/*-------------------------------------------------------------------------
 *
 * standby_gate.c
 *		Holding back consumers of failover slots until the standbys listed
 *		in pg_slotsync.synchronized_standby_slots have the WAL they decode
 *		(PostgreSQL 17's synchronized_standby_slots, on PostgreSQL 15).
 *
 * Why: after a failover, a logical consumer resumes from a copy of its slot
 * on the promoted standby.  If it had already received a transaction that
 * standby never got, it would hold data the new primary does not, and the
 * slot copy would point past WAL that does not exist there.  So a consumer
 * of a failover slot must never see a change, or a commit, before the
 * failover-candidate standbys have flushed the WAL it comes from.
 *
 * Who waits: consumers of failover slots (slot_counts_as_failover(): the
 * marker flag, or a name pattern), on a primary only, while the setting is
 * not empty.  Those are logical walsenders streaming such a slot, and the
 * SQL functions pg_logical_slot_get_changes/peek_changes (text and binary)
 * and pg_replication_slot_advance.  Nobody else ever waits; creating a slot
 * does not.  Whether our slot is a failover slot is checked on every WAL
 * page read, with its marker flags cached until the shared marker
 * generation moves, so setting or clearing the flag, or changing the
 * patterns, takes effect on a consumer that is already streaming.
 *
 * How: PostgreSQL 15 has no hook for this, so we gate the one thing every
 * consumer does before it can see anything: reading WAL.  Logical decoding
 * reads WAL through ctx->reader->routine.page_read; we replace that callback
 * with ours.  Ours asks for the page as before and, while the standbys have
 * not confirmed the bytes the reader asks for (targetPagePtr + reqLen),
 * waits; once they have, it returns no more of the page than they have
 * confirmed.  The decoder therefore never sees a byte of WAL past the
 * confirmed position: no change, no commit, no message.  Nothing is held
 * longer than needed: what is confirmed flows at once, record by record.
 *
 * Finding the decoding context: core keeps it in walsender.c's static
 * logical_decoding_ctx, or in a local variable of the SQL function.  We
 * find it in memory instead: CreateDecodingContext() creates a memory
 * context named "Logical decoding context", under the current one, and
 * allocates the LogicalDecodingContext as the first chunk in it.  We look
 * for that context among the children of the current memory context and its
 * ancestors, then in the whole tree, and accept a chunk only if it points
 * back to the context, its slot is MyReplicationSlot, and its reader's
 * private_data points back to it.  If a decoding context exists and no chunk
 * passes, we raise an ERROR: a failover slot is never decoded ungated (fail
 * closed).
 *
 *	- Walsenders: in a ClientAuthentication_hook we give every walsender a
 *	  copy of libpq's PqCommMethods (whatever table was installed before
 *	  ours) in which putmessage is ours.  START_REPLICATION ... LOGICAL
 *	  creates the decoding context and then sends CopyBothResponse ('W')
 *	  through putmessage; there we locate the context and wrap its
 *	  page_read.  The other methods stay the previous ones, so streaming
 *	  changes runs none of our code.
 *	- SQL functions: they call InvalidateSystemCaches() after creating the
 *	  decoding context and before reading any WAL; that calls every relcache
 *	  callback with InvalidOid.  Ours wraps the page_read (core's
 *	  read_local_xlog_page) when the held slot is a failover slot.
 *
 * Waiting in a walsender: the walsender must stay a good citizen, replying
 * to its client, sending keepalives, noticing timeouts, reloads, shutdown
 * and termination.  Its own loop does all of that, so we never wait long:
 * we sleep on the socket (readable), our latch and postmaster death, for at
 * most a second (an eighth of wal_sender_timeout if that is shorter), and
 * then, or as soon as the client sends something or a reload is pending,
 * return -1 from page_read; after a sleep, the next round only checks (see
 * walsender_wait() for why).  The reader takes that as "no record yet"
 * without an error, XLogSendLogical() returns, WalSndLoop() runs its round
 * (replies, keepalives, timeouts, SIGHUP, interrupts) and calls us again
 * for the same record.  A signal (pg_terminate_backend) sets our latch and
 * CHECK_FOR_INTERRUPTS ends the process at once; a client that goes away
 * makes the socket readable.
 *
 * Waiting in a backend (SQL functions): a latch wait of at most a second,
 * with CHECK_FOR_INTERRUPTS (cancel, terminate, statement_timeout) and
 * config reload each round, as core's WaitForStandbyConfirmation() does.
 *
 * Waking up: waiters sleep on our condition variable in shared memory.  The
 * physical walsender of a listed slot broadcasts on it whenever the slot's
 * restart_lsn has moved.  It notices in pq_is_send_pending(), which we wrap
 * once it sends CopyBothResponse for a physical slot: WalSndLoop calls it
 * right after processing standby replies.  So a standby's flush report
 * releases waiters within microseconds, with no polling.  A reload wakes
 * every process (SIGHUP sets the latch), so removing a standby from the
 * list releases waiters at once too.  Things without a broadcast (a listed
 * slot advanced by pg_replication_slot_advance, a standby connecting) are
 * noticed at the next check, within a second.
 *
 * Shutdown: a walsender learns that the server is shutting down through
 * PROCSIG_WALSND_INIT_STOPPING, which core records only in walsender.c's
 * static got_STOPPING.  To see it, we wrap the walsender's SIGUSR1 handler
 * and look at the ProcSignal flag before core's handler clears it.  The
 * ProcSignal slot layout is private to procsignal.c, so we mirror it and
 * check the mirror before trusting it: its size must match
 * ProcSignalShmemSize(), and our slot must hold our pid.  If not, we log
 * once and go without shutdown detection.  Once stopping, as in core: a
 * listed slot that is missing, logical, invalidated or inactive while behind
 * raises an ERROR, and the walsender exits without sending what the standbys
 * lack.  Otherwise it keeps waiting for the standbys, but, unlike core,
 * not forever: after wal_sender_timeout (60 s if that is disabled) it logs
 * and exits, still without sending the unconfirmed changes.  A walsender
 * that is not gated stops as core's does.
 *
 * Safety: the gate never lets a byte past the confirmed position reach the
 * decoder.  Every way out of a wait is either "confirmed", "the gate no
 * longer applies" (list emptied, slot no longer a failover slot), or a
 * return of -1, after which the record is read again and the gate asked
 * again.  Waiters show wait event type "Extension".
 *
 * Cost: when standbys keep up, a page read costs a comparison against the
 * cached confirmed position (standby_gate_quorum.c), an atomic read of the
 * marker generation and the name patterns check; nothing per change.
 * Physical walsenders of listed slots read their slot's restart_lsn once
 * per loop.  See bench/gate_cost.sh.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xlog.h"
#include "access/xlogreader.h"
#include "access/xlogutils.h"
#include "libpq/auth.h"
#include "libpq/libpq.h"
#include "miscadmin.h"
#include "nodes/memnodes.h"
#include "pg_slotsync.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "replication/walsender.h"
#include "slot_marker.h"
#include "standby_gate.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/procsignal.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* Longest single wait before a walsender returns to its own loop. */
#define WALSENDER_MAX_WAIT_MS		1000

/* Longest wait of a SQL function before it looks again without a wakeup. */
#define BACKEND_MAX_WAIT_MS			1000

/* How long a stopping walsender waits when wal_sender_timeout is 0. */
#define STOPPING_DEFAULT_WAIT_MS	60000

/* Name core gives the memory context of a LogicalDecodingContext. */
#define DECODING_CONTEXT_NAME		"Logical decoding context"

/* How far into that context's first block we look for the chunk. */
#define DECODING_CONTEXT_SCAN		1024

typedef struct StandbyGateShared
{
	ConditionVariable standby_confirmed_cv; /* a listed slot moved */
} StandbyGateShared;

static StandbyGateShared *GateShared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ClientAuthentication_hook_type prev_client_auth_hook = NULL;

/* libpq's methods as they were before ours, and ours (walsenders only) */
static const PQcommMethods *prev_comm_methods = NULL;
static PQcommMethods walsender_comm_methods;
static PQcommMethods physical_comm_methods;

/* page_read of the walsender's decoding context before ours */
static XLogPageReadCB walsender_page_read_orig = NULL;

/* cache: the marker flags of the slot we hold */
static uint64 marker_cache_generation = PG_UINT64_MAX;
static NameData marker_cache_slot;
static uint32 marker_cache_flags = 0;

/* physical walsender: is our slot listed, and where did we see it last */
static uint64 listed_cache_generation = PG_UINT64_MAX;
static bool listed_cache = false;
static XLogRecPtr physical_last_restart_lsn = InvalidXLogRecPtr;

/* walsender shutdown detection */
static volatile sig_atomic_t walsender_stopping = false;
static TimestampTz stopping_since = 0;
static bool stop_detector_tried = false;
static pqsigfunc prev_sigusr1_handler = NULL;

/*
 * A mirror of procsignal.c's private ProcSignalSlot and ProcSignalHeader
 * (PostgreSQL 15), to read our PROCSIG_WALSND_INIT_STOPPING flag.  Trusted
 * only after the checks in install_stop_detector().
 */
typedef struct MirrorProcSignalSlot
{
	volatile pid_t pss_pid;
	volatile sig_atomic_t pss_signalFlags[NUM_PROCSIGNALS];
	pg_atomic_uint64 pss_barrierGeneration;
	pg_atomic_uint32 pss_barrierCheckMask;
	ConditionVariable pss_barrierCV;
} MirrorProcSignalSlot;

typedef struct MirrorProcSignalHeader
{
	pg_atomic_uint64 psh_barrierGeneration;
	MirrorProcSignalSlot psh_slot[FLEXIBLE_ARRAY_MEMBER];
} MirrorProcSignalHeader;

static MirrorProcSignalSlot *my_procsignal_slot = NULL;


/* ---------------------------------------------------------------------
 * Does the gate apply to the slot we hold?
 * ---------------------------------------------------------------------
 */

static bool
my_slot_is_failover(void)
{
	ReplicationSlot *slot = MyReplicationSlot;
	uint64		generation;

	generation = pg_atomic_read_u64(&SlotSyncState->marker_generation);
	if (generation != marker_cache_generation ||
		strcmp(NameStr(marker_cache_slot), NameStr(slot->data.name)) != 0)
	{
		SlotMarker	marker;

		/* read the generation first: a change after it makes us read again */
		marker_cache_generation = PG_UINT64_MAX;
		slot_marker_read(NameStr(slot->data.name), &marker);
		marker_cache_flags = marker.flags;
		namestrcpy(&marker_cache_slot, NameStr(slot->data.name));
		marker_cache_generation = generation;
	}

	return slot_counts_as_failover(NameStr(slot->data.name),
								   SlotIsLogical(slot),
								   slot->data.persistency,
								   marker_cache_flags, false);
}

/*
 * Must the consumer of our slot wait for the listed standbys?
 */
static bool
gate_applies(void)
{
	if (standby_slots_config == NULL || MyReplicationSlot == NULL)
		return false;
	if (RecoveryInProgress())
		return false;
	return my_slot_is_failover();
}

/*
 * Return no more of the page than the standbys have confirmed.  Callers
 * have them confirm the requested bytes first; should the gate have closed
 * again since (the slot became a failover slot once more), fail the read,
 * and the reader will ask again.
 */
static int
cap_to_confirmed(int count, XLogRecPtr targetPagePtr, int reqLen)
{
	XLogRecPtr	upto;

	if (count <= 0 || !gate_applies())
		return count;

	upto = standby_slots_confirmed_upto();
	if (upto < targetPagePtr + reqLen)
		return -1;
	if (targetPagePtr + count > upto)
		count = (int) (upto - targetPagePtr);
	return count;
}


/* ---------------------------------------------------------------------
 * Waiting
 * ---------------------------------------------------------------------
 */

/*
 * A stopping walsender has waited long enough: leave without sending what
 * the standbys have not confirmed.
 */
static void
walsender_give_up(XLogRecPtr target, int waited_ms)
{
	ConditionVariableCancelSleep();
	ereport(LOG,
			(errmsg("terminating walsender process for replication slot \"%s\" during shutdown",
					NameStr(MyReplicationSlot->data.name)),
			 errdetail("The standbys listed in parameter \"%s\" did not confirm WAL location %X/%X within %d ms; the changes from there on were not sent.",
					   STANDBY_SLOTS_GUC_NAME, LSN_FORMAT_ARGS(target),
					   waited_ms)));
	proc_exit(0);
}

/*
 * Walsender: wait until the standbys confirm "target", but not longer than
 * until the walsender's own loop has work to do.  Returns true if the gate
 * opened, false if the caller should return -1 from page_read.
 *
 * WalSndLoop() checks for timeouts and sends keepalive requests after
 * send_data() returns, using the time it read before calling it.  So after
 * we slept and gave up, the next call only checks and does not sleep: that
 * round's checks see the current time, and a keepalive request due is sent
 * at most a couple of sleeps late.
 */
static bool
walsender_wait(XLogRecPtr target)
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
		TimestampTz now;
		long		timeout;
		WaitEvent	event;

		/* re-register each round: a broadcast takes us off the list */
		ConditionVariablePrepareToSleep(&GateShared->standby_confirmed_cv);

		CHECK_FOR_INTERRUPTS();

		if (!gate_applies() ||
			standby_slots_confirmed(target,
									walsender_stopping ? ERROR : WARNING))
		{
			opened = true;
			break;
		}

		/* let WalSndLoop reload the configuration, or flush its output */
		if (ConfigReloadPending || pq_is_send_pending())
			break;

		now = GetCurrentTimestamp();
		timeout = max_wait - TimestampDifferenceMilliseconds(start, now);

		if (walsender_stopping)
		{
			int			limit = wal_sender_timeout > 0 ?
				wal_sender_timeout : STOPPING_DEFAULT_WAIT_MS;
			long		waited;

			if (stopping_since == 0)
				stopping_since = now;
			waited = TimestampDifferenceMilliseconds(stopping_since, now);
			if (waited >= limit)
				walsender_give_up(target, (int) waited);
			timeout = Min(timeout, limit - waited);
		}

		if (timeout <= 0 || !may_sleep)
			break;

		slept = true;
		ModifyWaitEvent(FeBeWaitSet, FeBeWaitSetSocketPos, WL_SOCKET_READABLE,
						NULL);
		if (WaitEventSetWait(FeBeWaitSet, timeout, &event, 1,
							 PG_WAIT_EXTENSION) == 1)
		{
			if (event.events & WL_POSTMASTER_DEATH)
			{
				ConditionVariableCancelSleep();
				proc_exit(1);
			}
			if (event.events & WL_SOCKET_READABLE)
				break;			/* the client has something for WalSndLoop */
			if (event.events & WL_LATCH_SET)
				ResetLatch(MyLatch);
		}
	}

	ConditionVariableCancelSleep();
	slept_last_round = slept && !opened;
	return opened;
}

/*
 * Backend running a SQL decoding function: wait until the standbys confirm
 * "target" or the gate no longer applies.  Interrupts end the wait with an
 * ERROR.
 */
static void
backend_wait(XLogRecPtr target)
{
	for (;;)
	{
		ConditionVariablePrepareToSleep(&GateShared->standby_confirmed_cv);

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (!gate_applies() || standby_slots_confirmed(target, WARNING))
			break;

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 BACKEND_MAX_WAIT_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	ConditionVariableCancelSleep();
}


/* ---------------------------------------------------------------------
 * The page_read wrappers
 * ---------------------------------------------------------------------
 */

/*
 * Common part: read the page with "orig", but hand out only what the
 * standbys have confirmed.  While they have not confirmed the requested
 * bytes, wait; a walsender may give up the attempt (-1) to run its loop.
 */
static int
gated_page_read(XLogPageReadCB orig, bool walsender,
				XLogReaderState *state, XLogRecPtr targetPagePtr, int reqLen,
				XLogRecPtr targetRecPtr, char *cur_page)
{
	XLogRecPtr	target = targetPagePtr + reqLen;
	int			count = 0;
	bool		have_page = false;

	if (!gate_applies())
	{
		/*
		 * Reading may wait for new WAL, for as long as nothing happens; if
		 * meanwhile the slot became a failover slot or the list was set,
		 * what was read is gated like the rest.
		 */
		count = orig(state, targetPagePtr, reqLen, targetRecPtr, cur_page);
		if (count < 0 || !gate_applies())
			return count;
		have_page = true;
	}

	if (standby_slots_confirmed_upto() < target)
	{
		/*
		 * WAL that is not even flushed here cannot be on a standby: let the
		 * server wait for it its own way first (a walsender's way handles
		 * its client and shutdown), and warn about standbys only then.
		 */
		if (!have_page && target > GetFlushRecPtr(NULL))
		{
			count = orig(state, targetPagePtr, reqLen, targetRecPtr, cur_page);
			if (count < 0)
				return count;
			have_page = true;
		}

		if (walsender)
		{
			if (!walsender_wait(target))
				return -1;
		}
		else
			backend_wait(target);
	}

	if (!have_page)
		count = orig(state, targetPagePtr, reqLen, targetRecPtr, cur_page);
	return cap_to_confirmed(count, targetPagePtr, reqLen);
}

static int
walsender_page_read(XLogReaderState *state, XLogRecPtr targetPagePtr,
					int reqLen, XLogRecPtr targetRecPtr, char *cur_page)
{
	return gated_page_read(walsender_page_read_orig, true, state,
						   targetPagePtr, reqLen, targetRecPtr, cur_page);
}

static int
backend_page_read(XLogReaderState *state, XLogRecPtr targetPagePtr,
				  int reqLen, XLogRecPtr targetRecPtr, char *cur_page)
{
	return gated_page_read(read_local_xlog_page, false, state,
						   targetPagePtr, reqLen, targetRecPtr, cur_page);
}


/* ---------------------------------------------------------------------
 * Finding the decoding context
 * ---------------------------------------------------------------------
 */

/*
 * If "context" is a decoding context's memory context, return the
 * LogicalDecodingContext of MyReplicationSlot allocated in it, or NULL if
 * none passes the checks (see the header comment); *seen says whether it
 * was a decoding context's memory context.
 */
static LogicalDecodingContext *
decoding_context_in(MemoryContext context, bool *seen)
{
	if (!IsA(context, AllocSetContext) || context->name == NULL ||
		strcmp(context->name, DECODING_CONTEXT_NAME) != 0)
		return NULL;
	*seen = true;

	/* the first chunk: its header ends with a pointer to the set */
	for (Size off = MAXALIGN(sizeof(MemoryContextData));
		 off < DECODING_CONTEXT_SCAN; off += MAXIMUM_ALIGNOF)
	{
		void	  **p = (void **) ((char *) context + off);
		LogicalDecodingContext *ctx = (LogicalDecodingContext *) p;

		if (p[-1] == (void *) context &&
			ctx->context == context &&
			ctx->slot == MyReplicationSlot &&
			ctx->reader != NULL &&
			ctx->reader->private_data == (void *) ctx &&
			ctx->reader->routine.page_read != NULL)
			return ctx;
	}
	return NULL;
}

/*
 * Find the LogicalDecodingContext of MyReplicationSlot.  Core creates it
 * under the current memory context, so we look there first: among the
 * children of the current context and of its ancestors.  Failing that, we
 * walk the whole tree.  Returns NULL if there is none; *seen says whether a
 * decoding context's memory context was there at all.
 */
static LogicalDecodingContext *
find_decoding_context(bool *seen)
{
	LogicalDecodingContext *ctx;
	MemoryContext context;

	*seen = false;

	for (MemoryContext ancestor = CurrentMemoryContext; ancestor != NULL;
		 ancestor = ancestor->parent)
	{
		for (context = ancestor->firstchild; context != NULL;
			 context = context->nextchild)
		{
			if ((ctx = decoding_context_in(context, seen)) != NULL)
				return ctx;
		}
	}

	/* depth first, without recursion */
	context = TopMemoryContext;
	while (context != NULL)
	{
		if ((ctx = decoding_context_in(context, seen)) != NULL)
			return ctx;

		if (context->firstchild != NULL)
			context = context->firstchild;
		else
		{
			while (context != NULL && context->nextchild == NULL)
				context = context->parent;
			if (context != NULL)
				context = context->nextchild;
		}
	}
	return NULL;
}

static void
decoding_context_not_found(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("could not locate the logical decoding context of replication slot \"%s\"",
					NameStr(MyReplicationSlot->data.name)),
			 errdetail("pg_slotsync cannot hold back this consumer until the standbys in parameter \"%s\" confirm the changes, so it refuses to decode.",
					   STANDBY_SLOTS_GUC_NAME)));
}

/*
 * Relcache callback.  The SQL decoding functions call
 * InvalidateSystemCaches() between creating their decoding context and
 * reading WAL: wrap its page_read if our slot is a failover slot.
 */
static void
gate_relcache_callback(Datum arg, Oid relid)
{
	LogicalDecodingContext *ctx;
	bool		seen;

	if (OidIsValid(relid) || MyReplicationSlot == NULL ||
		!SlotIsLogical(MyReplicationSlot) ||
		MyReplicationSlot->data.persistency != RS_PERSISTENT ||
		RecoveryInProgress() || !my_slot_is_failover())
		return;

	ctx = find_decoding_context(&seen);
	if (ctx == NULL)
	{
		if (seen)
			decoding_context_not_found();
		return;					/* decoding is over, or not begun */
	}
	if (ctx->reader->routine.page_read == read_local_xlog_page)
		ctx->reader->routine.page_read = backend_page_read;
}


/* ---------------------------------------------------------------------
 * Walsender shutdown detection
 * ---------------------------------------------------------------------
 */

static void
gate_sigusr1_handler(SIGNAL_ARGS)
{
	if (my_procsignal_slot != NULL &&
		my_procsignal_slot->pss_signalFlags[PROCSIG_WALSND_INIT_STOPPING])
		walsender_stopping = true;
	prev_sigusr1_handler(postgres_signal_arg);
}

static void
install_stop_detector(void)
{
	MirrorProcSignalHeader *header;
	Size		mirror_size;
	bool		found;
	pqsigfunc	prev;

	if (stop_detector_tried)
		return;
	stop_detector_tried = true;

	mirror_size = add_size(offsetof(MirrorProcSignalHeader, psh_slot),
						   mul_size(MaxBackends + NUM_AUXPROCTYPES,
									sizeof(MirrorProcSignalSlot)));
	header = (MirrorProcSignalHeader *)
		ShmemInitStruct("ProcSignal", ProcSignalShmemSize(), &found);
	if (!found || mirror_size != ProcSignalShmemSize() ||
		MyBackendId < 1 || MyBackendId > MaxBackends ||
		header->psh_slot[MyBackendId - 1].pss_pid != MyProcPid)
	{
		ereport(LOG,
				(errmsg("pg_slotsync cannot detect walsender shutdown on this server"),
				 errdetail("The ProcSignal layout does not match PostgreSQL 15's. A walsender held back by parameter \"%s\" delays shutdown until its client disconnects.",
						   STANDBY_SLOTS_GUC_NAME)));
		return;
	}

	my_procsignal_slot = &header->psh_slot[MyBackendId - 1];
	prev = pqsignal(SIGUSR1, gate_sigusr1_handler);
	if (prev == SIG_ERR || prev == SIG_DFL || prev == SIG_IGN || prev == NULL)
	{
		/* not a handler we could chain to: put it back */
		if (prev != SIG_ERR)
			pqsignal(SIGUSR1, prev);
		my_procsignal_slot = NULL;
		return;
	}
	prev_sigusr1_handler = prev;
}


/* ---------------------------------------------------------------------
 * Walsenders: libpq method table
 * ---------------------------------------------------------------------
 */

/*
 * Logical walsender about to stream (CopyBothResponse): gate its reader.
 */
static void
walsender_attach_gate(void)
{
	LogicalDecodingContext *ctx;
	bool		seen;

	ctx = find_decoding_context(&seen);
	if (ctx == NULL)
		decoding_context_not_found();

	if (ctx->reader->routine.page_read != walsender_page_read)
	{
		walsender_page_read_orig = ctx->reader->routine.page_read;
		ctx->reader->routine.page_read = walsender_page_read;
	}
	install_stop_detector();
}

/*
 * Physical walsender: if our slot is listed and has moved, wake the waiters.
 */
static void
physical_walsender_progress(void)
{
	ReplicationSlot *slot = MyReplicationSlot;
	XLogRecPtr	restart_lsn;

	if (slot == NULL || !SlotIsPhysical(slot))
		return;

	if (listed_cache_generation != standby_slots_generation)
	{
		listed_cache = standby_slots_lists(NameStr(slot->data.name));
		listed_cache_generation = standby_slots_generation;
	}
	if (!listed_cache)
		return;

	SpinLockAcquire(&slot->mutex);
	restart_lsn = slot->data.restart_lsn;
	SpinLockRelease(&slot->mutex);

	if (restart_lsn == physical_last_restart_lsn)
		return;
	physical_last_restart_lsn = restart_lsn;
	ConditionVariableBroadcast(&GateShared->standby_confirmed_cv);
}

static bool
gate_is_send_pending(void)
{
	physical_walsender_progress();
	return prev_comm_methods->is_send_pending();
}

static int
gate_putmessage(char msgtype, const char *s, size_t len)
{
	if (msgtype == 'W' && MyReplicationSlot != NULL)
	{
		bool		ours = PqCommMethods == &walsender_comm_methods ||
			PqCommMethods == &physical_comm_methods;

		if (SlotIsLogical(MyReplicationSlot))
		{
			walsender_attach_gate();
			if (ours)
				PqCommMethods = &walsender_comm_methods;
		}
		else if (ours)
			PqCommMethods = &physical_comm_methods;
	}
	return prev_comm_methods->putmessage(msgtype, s, len);
}

/*
 * Every walsender gets libpq's methods with our putmessage; the other
 * methods are the previous ones themselves, so a logical walsender sending
 * changes runs no code of ours.  Once a walsender streams from a physical
 * slot, is_send_pending is ours too: WalSndLoop calls it right after
 * processing standby replies, which is when the slot may have moved.
 */
static void
gate_client_authentication(Port *port, int status)
{
	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);

	if (am_walsender && prev_comm_methods == NULL)
	{
		prev_comm_methods = PqCommMethods;
		walsender_comm_methods = *prev_comm_methods;
		walsender_comm_methods.putmessage = gate_putmessage;
		physical_comm_methods = walsender_comm_methods;
		physical_comm_methods.is_send_pending = gate_is_send_pending;
		PqCommMethods = &walsender_comm_methods;
	}
}


/* ---------------------------------------------------------------------
 * Shared memory and installation
 * ---------------------------------------------------------------------
 */

static void
gate_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(MAXALIGN(sizeof(StandbyGateShared)));
}

static void
gate_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	GateShared = ShmemInitStruct("pg_slotsync standby gate",
								 sizeof(StandbyGateShared), &found);
	if (!found)
		ConditionVariableInit(&GateShared->standby_confirmed_cv);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Called from _PG_init: request our shared memory, and install the hooks
 * through which we meet walsenders and SQL decoding functions.
 */
void
standby_gate_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = gate_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = gate_shmem_startup;
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = gate_client_authentication;
	CacheRegisterRelcacheCallback(gate_relcache_callback, (Datum) 0);
}
