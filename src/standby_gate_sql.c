/*-------------------------------------------------------------------------
 *
 * standby_gate_sql.c
 *		Attaching the gate to the SQL decoding functions
 *		(pg_logical_slot_get_changes, _peek_changes, their binary variants,
 *		pg_replication_slot_advance), and the guards that refuse a decoding
 *		of a failover slot the gate could not attach to.
 *
 * Attaching: these functions create a decoding context whose reader is
 * read_local_xlog_page, and call InvalidateSystemCaches() right after
 * XLogBeginRead() and before reading any WAL; core needs that call (so that
 * decoding's historic catalog access sees no ordinary cache entries), and
 * it calls every relcache callback with InvalidOid.  Our callback then finds
 * the decoding context of the slot this backend holds
 * (standby_gate_context.c) and replaces the reader's page_read:
 *
 *	read_local_xlog_page	the gated reader (standby_gate_read.c), for any
 *							logical slot: whether the gate applies (a
 *							failover slot, the setting not empty) is
 *							decided per page;
 *	ours already			nothing;
 *	anything else			the refusing reader, which raises an ERROR on
 *							its first read while the gate applies (an
 *							unknown reader on a failover slot is refused,
 *							not passed).  Not in a walsender: there it is
 *							the walsender's own reader, which the walsender
 *							side attaches to and guards.
 *
 * An invalidation callback runs at arbitrary points (sinval resets, cache
 * invalidations replayed by decoding itself, even after an error), where an
 * ERROR is not safe.  So the callback never raises one and never reads a
 * file: finding the context only reads memory, and wrapping a reader is a
 * pointer store.  What it cannot handle it only notes; the refusal then
 * comes from a safe place: the refusing reader's ERROR, or the next
 * CHECK_FOR_INTERRUPTS.
 *
 * Guards, for a decoding of a failover slot the gate could not attach to,
 * while the setting is not empty:
 *
 *	1. The callback sees a decoding context's memory context but no context
 *	   it recognises (core laid it out differently): it logs a WARNING that
 *	   says why and cancels the statement at the next interrupt check.  The
 *	   decoding loops of these functions check for interrupts after every
 *	   record, before they return anything or confirm the slot's new
 *	   position, so the call fails with nothing returned and the slot
 *	   unmoved (pg_replication_slot_advance checks only between records: if
 *	   its target lies within the first record, that one record is
 *	   confirmed first).
 *	2. The replay guard: every change a SQL function returns is replayed by
 *	   the reorder buffer inside an internal subtransaction, started before
 *	   the output plugin sees the transaction.  At the start of a
 *	   subtransaction, while this backend holds a logical slot, we look for
 *	   its decoding context again; if its reader is not gated, the
 *	   statement is refused as in 1.  This does not depend on the
 *	   invalidation callback at all, and covers get/peek (text and binary):
 *	   nothing they decode reaches their result unchecked.  It does not
 *	   cover pg_replication_slot_advance, which returns no changes and so
 *	   replays none: if the invalidation callback were never called, advance
 *	   would move the slot ungated.  Raising an ERROR here is not possible:
 *	   at that point the subtransaction is half started, and an ERROR would
 *	   turn into a FATAL in the reorder buffer's cleanup.  To keep this
 *	   cheap (it runs once per transaction returned), the callback
 *	   remembers the reader it attached to, with a reset callback on the
 *	   decoding context's memory that forgets it when the context goes; the
 *	   search of memory happens only when there is no such reader.
 *
 * Both guards decide "failover slot" without reading the slot's marker file
 * (which could raise an error): a slot matching the name patterns is one,
 * and a slot we have not read the marker of yet counts as one (fail closed).
 *
 * pg_slotsync.debug_gate_skip_attach plays each failure: 'sql' makes the
 * callback not recognise the context (guard 1), 'sql_reader' makes it not
 * know read_local_xlog_page (the refusing reader), 'sql_callback' makes it
 * ignore everything (guard 2).
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogutils.h"
#include "miscadmin.h"
#include "replication/walsender.h"
#include "standby_gate.h"
#include "standby_gate_internal.h"
#include "utils/inval.h"
#include "utils/memutils.h"

/* this statement is being cancelled by a guard */
static bool refusal_pending = false;

/* the reader we gated or refused, while its decoding context exists */
static XLogReaderState *attached_reader = NULL;
static ReplicationSlot *attached_slot = NULL;

/*
 * A logical slot this backend holds, persistent, on a primary: what the
 * SQL decoding functions hold while they decode.
 */
static bool
holds_decodable_slot(void)
{
	ReplicationSlot *slot = MyReplicationSlot;

	return slot != NULL && SlotIsLogical(slot) &&
		slot->data.persistency == RS_PERSISTENT && !RecoveryInProgress();
}

/*
 * Guards 1 and 2: refuse this decoding at the next interrupt check, unless
 * the gate does not apply.  Never raises an error.
 */
static void
refuse_at_next_interrupt(const char *why)
{
	if (standby_slots_config == NULL || gate_slot_known_not_failover() ||
		refusal_pending)
		return;

	refusal_pending = true;
	gate_count_refused();
	ereport(WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot decode failover replication slot \"%s\" without waiting for the standbys",
					NameStr(MyReplicationSlot->data.name)),
			 errdetail("%s pg_slotsync cannot hold the changes back until the standbys listed in parameter \"%s\" confirm them, so it cancels the statement.",
					   why, STANDBY_SLOTS_GUC_NAME),
			 errhint("Check the server log for pg_slotsync's self-check at startup.")));
	InterruptPending = true;
	QueryCancelPending = true;
}

static void
forget_attached_reader(void *arg)
{
	attached_reader = NULL;
	attached_slot = NULL;
}

/*
 * Remember the reader we just replaced until its decoding context goes
 * away, so that the replay guard need not search memory for it.  Without
 * memory for the callback, the guard searches (slower, not less safe).
 */
static void
remember_attached_reader(LogicalDecodingContext *ctx)
{
	MemoryContextCallback *callback;

	callback = MemoryContextAllocExtended(ctx->context,
										  sizeof(MemoryContextCallback),
										  MCXT_ALLOC_NO_OOM);
	if (callback == NULL)
		return;
	callback->func = forget_attached_reader;
	callback->arg = NULL;
	MemoryContextRegisterResetCallback(ctx->context, callback);
	attached_reader = ctx->reader;
	attached_slot = ctx->slot;
}

/*
 * Gate the reader of a decoding context we found.
 */
static void
attach_reader(LogicalDecodingContext *ctx)
{
	XLogPageReadCB page_read = ctx->reader->routine.page_read;

	if (gate_reader_is_ours(page_read))
		return;

	if (page_read == read_local_xlog_page &&
		gate_debug_skip_attach != GATE_SKIP_SQL_READER)
	{
		ctx->reader->routine.page_read = gate_backend_page_read;
		gate_reader_attached();
		gate_count_attached();
	}
	else if (!am_walsender)
	{
		gate_refused_reader_orig = page_read;
		ctx->reader->routine.page_read = gate_refusing_page_read;
	}
	else
		return;
	remember_attached_reader(ctx);
}

/*
 * Relcache callback: InvalidOid is what the SQL decoding functions cause
 * right before they read WAL.
 */
static void
gate_relcache_callback(Datum arg, Oid relid)
{
	LogicalDecodingContext *ctx;
	bool		seen;

	if (OidIsValid(relid) || gate_debug_skip_attach == GATE_SKIP_SQL_CALLBACK ||
		!holds_decodable_slot())
		return;

	ctx = gate_find_decoding_context(MyReplicationSlot,
									 gate_debug_skip_attach != GATE_SKIP_SQL,
									 &seen);
	if (ctx != NULL)
		attach_reader(ctx);
	else if (seen && !am_walsender)
		refuse_at_next_interrupt("A logical decoding context is in use, but pg_slotsync does not recognise its layout.");
}

/*
 * The replay guard (2): a subtransaction starts while we hold a logical
 * slot, so decoding is about to hand a transaction to the output plugin.
 */
static void
gate_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	LogicalDecodingContext *ctx;
	bool		seen;

	if (event != SUBXACT_EVENT_START_SUB || MyReplicationSlot == NULL ||
		!holds_decodable_slot() || standby_slots_config == NULL)
		return;

	/* the reader we attached to, if its decoding context is still there */
	if (attached_reader != NULL && attached_slot == MyReplicationSlot &&
		gate_reader_is_ours(attached_reader->routine.page_read))
		return;

	ctx = gate_find_decoding_context(MyReplicationSlot, true, &seen);
	if (ctx != NULL && gate_reader_is_ours(ctx->reader->routine.page_read))
		return;
	refuse_at_next_interrupt("Decoding is about to return a transaction, but pg_slotsync was never attached to it.");
}

static void
gate_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE)
		refusal_pending = false;
}

/*
 * From _PG_init.
 */
void
gate_sql_install(void)
{
	CacheRegisterRelcacheCallback(gate_relcache_callback, (Datum) 0);
	RegisterSubXactCallback(gate_subxact_callback, NULL);
	RegisterXactCallback(gate_xact_callback, NULL);
}
