/*-------------------------------------------------------------------------
 *
 * standby_gate_walsender.c
 *		Attaching the gate to walsenders, the terminal guard that refuses a
 *		logical walsender it could not attach to, and the wakeup the
 *		physical walsenders of listed slots give to waiters.
 *
 * PostgreSQL 15 has no hook into the walsender, but every walsender talks
 * to its client through libpq's method table, PqCommMethods.  In a
 * ClientAuthentication_hook we give each walsender copies of the table in
 * place then (whatever another module installed before us) with some
 * methods replaced, and switch between them by state:
 *
 *	idle		(commands) putmessage is ours: it looks for CopyBothResponse
 *				('W'), the message with which START_REPLICATION starts
 *				streaming, and for CopyData ('d', see "streaming").
 *	guarding	(logical, from 'W' to the first CopyData) putmessage_noblock
 *				is ours too: the terminal guard.
 *	streaming	(logical, once the guard passed) only flush is ours: every
 *				method a walsender uses per message (putmessage_noblock,
 *				which calls putmessage, flush_if_writable, is_send_pending)
 *				is the previous one, so sending a change runs none of our
 *				code.  A blocking flush ends a command (ReadyForQuery) or
 *				follows a notice or error; ours puts "idle" back, so that a
 *				later START_REPLICATION on the same connection is seen, and
 *				if streaming goes on, the next CopyData through putmessage
 *				switches back.
 *	reading		("streaming" while the walsender is inside its reader's
 *				page_read: reading a page, waiting for WAL, or waiting for
 *				the standbys) is_send_pending is ours too: the wakeup of
 *				failover slot watchers.
 *	physical	(a physical slot, from 'W' on) is_send_pending and flush are
 *				ours: the wakeup of the gate's waiters.
 *
 * Attaching: START_REPLICATION ... LOGICAL creates the decoding context and
 * then sends 'W' before it reads any WAL.  At 'W' we find the context in
 * memory (standby_gate_context.c) and replace its reader's page_read with
 * the gated one (standby_gate_read.c), for every logical walsender: whether
 * its slot is a failover slot, and whether the setting is empty, is decided
 * per page, since both can change while it streams.  We also start watching
 * for shutdown (standby_gate_shutdown.c).
 *
 * The terminal guard: the first CopyData a logical walsender sends (a
 * change, or a keepalive; in any case before the first change) must find
 * its reader gated.  If not, and the gate applies (a failover slot, the
 * setting not empty), it is refused with a FATAL before anything is sent.
 * If not and the gate does not apply yet, the guard stays in place and
 * checks each message until the gate applies (then FATAL) or streaming
 * ends; a warning says why.  Once the reader is found gated, the guard
 * steps out ("streaming").
 *
 * The wakeups: the physical walsender of a listed slot broadcasts on the
 * gate's condition variable whenever its slot's restart_lsn moved.  It
 * notices in is_send_pending, which WalSndLoop calls right after processing
 * standby replies, once per loop: a spinlock read.  Likewise a logical
 * walsender tells failover_slot_moves.c when its slot's confirmed_flush,
 * restart_lsn or catalog_xmin changed and the slot is a failover slot.  It
 * looks at the start of every page read, and, through the "reading" table,
 * in every round of its wait for WAL (WalSndWaitForWal, where an idle
 * walsender processes its client's replies) and of the gate's wait; never
 * per change sent.  A look is three plain loads compared with the values
 * seen last; only a difference costs a spinlock read (and, on a generation
 * change, a look at the slot's marker).  Only this process moves those
 * fields of the slot it holds (but for the checkpointer invalidating it),
 * so the plain loads are exact; where they could tear, that only costs one
 * more locked read.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "failover_slot_moves.h"
#include "libpq/auth.h"
#include "libpq/libpq.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "replication/walsender.h"
#include "standby_gate.h"
#include "standby_gate_internal.h"
#include "storage/spin.h"

static ClientAuthentication_hook_type prev_client_auth_hook = NULL;

/* libpq's methods as they were before ours, and ours by state */
static const PQcommMethods *prev_comm_methods = NULL;
static PQcommMethods idle_methods;
static PQcommMethods guarding_methods;
static PQcommMethods streaming_methods;
static PQcommMethods reading_methods;
static PQcommMethods physical_methods;

/* what the walsender streams since its last CopyBothResponse */
typedef enum StreamState
{
	STREAM_NONE,
	STREAM_GUARDING,			/* logical, guard not passed yet */
	STREAM_LOGICAL,				/* logical, guard passed */
	STREAM_PHYSICAL
} StreamState;

static StreamState stream_state = STREAM_NONE;

/* the reader we gated at the last CopyBothResponse, NULL if none */
static XLogReaderState *gated_reader = NULL;
static bool guard_warned = false;
static bool in_page_read = false;

/* logical walsender: where we saw our slot last */
static XLogRecPtr logical_seen_confirmed = InvalidXLogRecPtr;
static XLogRecPtr logical_seen_restart = InvalidXLogRecPtr;
static TransactionId logical_seen_xmin = InvalidTransactionId;

/* physical walsender: is our slot listed, and where did we see it last */
static uint64 listed_cache_generation = PG_UINT64_MAX;
static bool listed_cache = false;
static XLogRecPtr physical_last_restart_lsn = InvalidXLogRecPtr;
static TransactionId physical_last_catalog_xmin = InvalidTransactionId;

/*
 * Remember where our logical slot is now.  Returns true if that differs
 * from what we saw last.
 */
static bool
logical_slot_moved(ReplicationSlot *slot)
{
	XLogRecPtr	confirmed;
	XLogRecPtr	restart;
	TransactionId xmin;

	SpinLockAcquire(&slot->mutex);
	confirmed = slot->data.confirmed_flush;
	restart = slot->data.restart_lsn;
	xmin = slot->data.catalog_xmin;
	SpinLockRelease(&slot->mutex);

	if (confirmed == logical_seen_confirmed &&
		restart == logical_seen_restart && xmin == logical_seen_xmin)
		return false;
	logical_seen_confirmed = confirmed;
	logical_seen_restart = restart;
	logical_seen_xmin = xmin;
	return true;
}

/*
 * Logical walsender about to stream (CopyBothResponse): gate its reader.
 * Failing to is decided by the guard at the first CopyData.
 */
static void
walsender_attach(void)
{
	LogicalDecodingContext *ctx;
	bool		seen;

	gated_reader = NULL;
	guard_warned = false;
	in_page_read = false;
	gate_waiter_clear();
	(void) logical_slot_moved(MyReplicationSlot);

	if (gate_debug_skip_attach == GATE_SKIP_WALSENDER)
		return;

	ctx = gate_find_decoding_context(MyReplicationSlot, true, &seen);
	if (ctx == NULL)
		return;

	if (ctx->reader->routine.page_read != gate_walsender_page_read)
	{
		gate_walsender_reader_orig = ctx->reader->routine.page_read;
		ctx->reader->routine.page_read = gate_walsender_page_read;
		gate_reader_attached();
	}
	gated_reader = ctx->reader;
	gate_count_attached();
	gate_install_stop_detector();
}

static bool
walsender_gated(void)
{
	return gated_reader != NULL &&
		gated_reader->routine.page_read == gate_walsender_page_read;
}

/*
 * The terminal guard, on the first CopyData of a logical walsender.
 */
static void
guard_putmessage_noblock(char msgtype, const char *s, size_t len)
{
	if (msgtype == 'd')
	{
		if (walsender_gated())
		{
			stream_state = STREAM_LOGICAL;
			PqCommMethods = in_page_read ? &reading_methods : &streaming_methods;
		}
		else if (gate_applies())
		{
			gate_count_refused();
			ereport(FATAL,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot stream failover replication slot \"%s\" without waiting for the standbys",
							NameStr(MyReplicationSlot->data.name)),
					 errdetail("pg_slotsync could not attach to this walsender's logical decoding, so it cannot hold the changes back until the standbys listed in parameter \"%s\" confirm them.",
							   STANDBY_SLOTS_GUC_NAME),
					 errhint("Check the server log for pg_slotsync's self-check at startup.")));
		}
		else if (!guard_warned)
		{
			guard_warned = true;
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pg_slotsync could not attach to the walsender of replication slot \"%s\"",
							NameStr(MyReplicationSlot->data.name)),
					 errdetail("The walsender will be terminated if the slot becomes a failover slot while parameter \"%s\" is set.",
							   STANDBY_SLOTS_GUC_NAME)));
		}
	}
	prev_comm_methods->putmessage_noblock(msgtype, s, len);
}

/*
 * Physical walsender: if our slot is listed and has moved, wake the waiters;
 * if hot standby feedback moved its catalog_xmin, wake the standbys' watch
 * (the standby learns from it that its copies' catalog rows are kept).
 */
static void
physical_walsender_progress(void)
{
	ReplicationSlot *slot = MyReplicationSlot;
	XLogRecPtr	restart_lsn;
	TransactionId catalog_xmin;

	if (slot == NULL || !SlotIsPhysical(slot))
		return;

	SpinLockAcquire(&slot->mutex);
	catalog_xmin = slot->data.catalog_xmin;
	SpinLockRelease(&slot->mutex);
	if (catalog_xmin != physical_last_catalog_xmin)
	{
		physical_last_catalog_xmin = catalog_xmin;
		failover_slot_moved_slot(slot);
	}

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
	ConditionVariableBroadcast(&GateState->standby_confirmed_cv);
}

static bool
physical_is_send_pending(void)
{
	physical_walsender_progress();
	return prev_comm_methods->is_send_pending();
}

/*
 * Logical walsender: if our failover slot moved, tell its watchers.
 */
static void
logical_walsender_progress(void)
{
	ReplicationSlot *slot = MyReplicationSlot;

	if (slot != NULL &&
		(slot->data.confirmed_flush != logical_seen_confirmed ||
		 slot->data.restart_lsn != logical_seen_restart ||
		 slot->data.catalog_xmin != logical_seen_xmin) &&
		logical_slot_moved(slot) && gate_slot_is_failover())
		failover_slot_moved_slot(slot);
}

static bool
reading_is_send_pending(void)
{
	logical_walsender_progress();
	return prev_comm_methods->is_send_pending();
}

/*
 * The walsender's reader enters (true) or leaves (false) page_read.
 */
void
gate_walsender_reading(bool reading)
{
	in_page_read = reading;
	if (reading)
		logical_walsender_progress();
	if (stream_state == STREAM_LOGICAL)
		PqCommMethods = reading ? &reading_methods : &streaming_methods;
}

/*
 * A blocking flush: a command ends, or a notice or error was sent.  Be
 * ready for the next START_REPLICATION.
 */
static int
gate_flush(void)
{
	PqCommMethods = &idle_methods;
	return prev_comm_methods->flush();
}

/*
 * In "idle": CopyBothResponse starts streaming, so attach and choose the
 * table; CopyData means streaming goes on after a flush.
 */
static int
gate_putmessage(char msgtype, const char *s, size_t len)
{
	if (msgtype == 'W' && MyReplicationSlot != NULL)
	{
		if (SlotIsLogical(MyReplicationSlot))
		{
			walsender_attach();
			stream_state = STREAM_GUARDING;
			PqCommMethods = &guarding_methods;
		}
		else
		{
			stream_state = STREAM_PHYSICAL;
			PqCommMethods = &physical_methods;
		}
	}
	else if (msgtype == 'W')
		stream_state = STREAM_NONE;
	else if (msgtype == 'C' &&
			 (strncmp(s, "CREATE_REPLICATION_SLOT", Min(len, 23)) == 0 ||
			  strncmp(s, "DROP_REPLICATION_SLOT", Min(len, 21)) == 0))
		failover_slot_moved();	/* a slot came or went: tell watchers */
	else if (msgtype == 'd' && stream_state == STREAM_LOGICAL)
		PqCommMethods = in_page_read ? &reading_methods : &streaming_methods;
	else if (msgtype == 'd' && stream_state == STREAM_PHYSICAL)
		PqCommMethods = &physical_methods;
	else if (msgtype == 'd' && stream_state == STREAM_GUARDING)
		PqCommMethods = &guarding_methods;
	return prev_comm_methods->putmessage(msgtype, s, len);
}

static void
gate_client_authentication(Port *port, int status)
{
	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);

	if (am_walsender && prev_comm_methods == NULL)
	{
		prev_comm_methods = PqCommMethods;
		idle_methods = *prev_comm_methods;
		idle_methods.putmessage = gate_putmessage;
		guarding_methods = idle_methods;
		guarding_methods.putmessage_noblock = guard_putmessage_noblock;
		streaming_methods = *prev_comm_methods;
		streaming_methods.flush = gate_flush;
		reading_methods = streaming_methods;
		reading_methods.is_send_pending = reading_is_send_pending;
		physical_methods = streaming_methods;
		physical_methods.is_send_pending = physical_is_send_pending;
		PqCommMethods = &idle_methods;
	}
}

/*
 * From _PG_init.
 */
void
gate_walsender_install(void)
{
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = gate_client_authentication;
}
