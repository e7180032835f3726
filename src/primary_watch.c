/*-------------------------------------------------------------------------
 *
 * primary_watch.c
 *		The long-poll a standby's sync worker waits in on the primary:
 *		wait_for_failover_slot_change().
 *
 * PostgreSQL 17's worker polls pg_replication_slots, napping 200 ms and
 * doubling up to 30 s while nothing changes; a slot that moves after a quiet
 * minute reaches the standby up to 30 s late.  We turn the poll around: the
 * worker calls wait_for_failover_slot_change() with the change token it saw
 * last, and the call returns as soon as any failover slot (or the standby's
 * own physical slot) is different, or when its timeout passes.  While
 * nothing happens the standby sends nothing but that one long call.
 *
 * The token is a 64-bit hash over what the standby copies: each failover
 * slot's name, positions, catalog_xmin, two_phase state and invalidation,
 * plus the catalog_xmin of the standby's physical slot (how the standby
 * learns its hot_standby_feedback has arrived).  Waiting is a cheap scan of
 * the slot array in shared memory every few milliseconds; PostgreSQL 15 has
 * no event to wait for when a slot moves.
 *
 * Which slots are failover slots needs each slot's marker file (see
 * slot_marker.c).  The waiting backend reads a marker again only when some
 * marker was written since (slot_marker_read_cached()).  A stale flag (a
 * slot dropped and created again without a marker) can only cause a
 * spurious wake-up; the list the standby acts on comes from
 * failover_slots(), which always reads the markers afresh.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "replication/slot.h"
#include "slot_copy.h"
#include "slot_marker.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_slotsync_wait_for_failover_slot_change);

/* How often a waiting call looks at the slots. */
#define SLOT_WATCH_INTERVAL_MS		5

/* The markers this backend has read, by slot name. */
typedef struct WatchedMarker
{
	NameData	name;			/* hash key */
	MarkerCacheEntry cache;
} WatchedMarker;

static HTAB *watched_markers = NULL;

static uint32
watched_flags(const char *name)
{
	WatchedMarker *w;
	NameData	key;
	bool		found;

	if (watched_markers == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(NameData);
		ctl.entrysize = sizeof(WatchedMarker);
		watched_markers = hash_create("pg_slotsync watched markers", 64, &ctl,
									  HASH_ELEM | HASH_STRINGS);
	}
	namestrcpy(&key, name);
	w = hash_search(watched_markers, &key, HASH_ENTER, &found);
	if (!found)
		w->cache.valid = false;
	slot_marker_read_cached(name, &w->cache);
	return w->cache.marker.flags;
}

static uint64
hash_lsn(uint64 h, XLogRecPtr lsn)
{
	return hash_combine64(h, (uint64) lsn);
}

/*
 * The change token: what the standby would see from failover_slots() and
 * from its own physical slot, folded into 64 bits.
 */
static uint64
compute_change_token(const SlotCopy *slots, int nslots,
					 const char *standby_slot, bool in_recovery)
{
	uint64		h = UINT64CONST(0x9E3779B97F4A7C15);

	for (int i = 0; i < nslots; i++)
	{
		const SlotCopy *s = &slots[i];
		const char *name = NameStr(s->name);

		if (standby_slot != NULL && !s->is_logical &&
			strcmp(name, standby_slot) == 0)
		{
			/*
			 * Only its catalog_xmin: it tells the standby its feedback has
			 * arrived.  Its restart_lsn moves with every WAL flush of the
			 * standby, which would wake the standby for nothing.
			 */
			h = hash_combine64(h, s->catalog_xmin);
			continue;
		}
		if (!s->is_logical || s->persistency != RS_PERSISTENT ||
			!slot_counts_as_failover(name, true, s->persistency,
									 watched_flags(name), in_recovery))
			continue;
		h = hash_combine64(h, hash_bytes_extended((const unsigned char *) name,
												  strlen(name), 0));
		h = hash_lsn(h, s->restart_lsn);
		h = hash_lsn(h, s->confirmed_flush);
		h = hash_lsn(h, s->invalidated_at);
		h = hash_lsn(h, s->two_phase_at);
		h = hash_combine64(h, s->catalog_xmin);
		h = hash_combine64(h, s->two_phase);
	}
	return h;
}

/* The result row: the token and the standby's own physical slot. */
static Datum
watch_result(FunctionCallInfo fcinfo, uint64 token, bool in_recovery,
			 const SlotCopy *slots, int nslots, const char *standby_slot)
{
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {0};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	values[0] = Int64GetDatum((int64) token);
	values[1] = BoolGetDatum(in_recovery);
	values[2] = BoolGetDatum(wal_level >= WAL_LEVEL_LOGICAL);
	nulls[3] = nulls[4] = nulls[5] = true;
	for (int i = 0; standby_slot != NULL && i < nslots; i++)
	{
		if (strcmp(NameStr(slots[i].name), standby_slot) != 0)
			continue;
		values[3] = BoolGetDatum(!slots[i].is_logical);
		nulls[3] = false;
		nulls[4] = XLogRecPtrIsInvalid(slots[i].restart_lsn);
		values[4] = LSNGetDatum(slots[i].restart_lsn);
		nulls[5] = !TransactionIdIsValid(slots[i].catalog_xmin);
		values[5] = TransactionIdGetDatum(slots[i].catalog_xmin);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * pg_slotsync.wait_for_failover_slot_change(standby_slot_name, last_token,
 *		timeout_ms): wait until the failover slots (or the named physical slot)
 *		differ from what last_token described, or the timeout passes; then
 *		report the new token and the state the standby checks before syncing.
 */
Datum
pg_slotsync_wait_for_failover_slot_change(PG_FUNCTION_ARGS)
{
	char	   *standby_slot = PG_ARGISNULL(0) ? NULL : NameStr(*PG_GETARG_NAME(0));
	bool		have_last = !PG_ARGISNULL(1);
	uint64		last_token = have_last ? (uint64) PG_GETARG_INT64(1) : 0;
	int			timeout_ms = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);
	SlotCopy   *slots;
	int			nslots;
	uint64		token;
	TimestampTz deadline;
	bool		in_recovery;

	check_caller_may_sync();
	if (timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_ms must not be negative")));

	slots = palloc(sizeof(SlotCopy) * Max(max_replication_slots, 1));

	/*
	 * Waiting for up to timeout_ms inside a SELECT would hold this
	 * backend's snapshot xmin all that time, over and over, holding back
	 * vacuum on the whole primary like a long-running query.  Nothing below
	 * reads a table (only shared memory and the marker files), and the
	 * result is built from shared memory too, so give the xmin up; the end
	 * of the transaction recomputes it anyway.
	 */
	InvalidateCatalogSnapshot();
	MyProc->xmin = InvalidTransactionId;

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			/* patterns may have changed; they decide what is a failover slot */
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		in_recovery = RecoveryInProgress();
		nslots = slot_copy_all(slots);
		token = compute_change_token(slots, nslots, standby_slot, in_recovery);
		if (!have_last || token != last_token ||
			GetCurrentTimestamp() >= deadline)
			break;

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 SLOT_WATCH_INTERVAL_MS,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	return watch_result(fcinfo, token, in_recovery, slots, nslots,
						standby_slot);
}
