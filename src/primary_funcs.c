/*-------------------------------------------------------------------------
 *
 * primary_funcs.c
 *		What a standby's sync worker asks the primary: the list of failover
 *		slots, and a call that blocks until that list changes.
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
 * slot_marker.c).  Reading a file per slot per scan would be wasteful, so the
 * waiting backend keeps the flags it read and reads them again only when a
 * flag was changed (the shared marker generation moved), when the set of
 * slots changed, or once a second.  A stale flag can only cause a spurious
 * or a late wake-up, bounded by that second; the list the standby acts on
 * comes from failover_slots(), which always reads the markers afresh.
 *
 * failover_slot_snapshot() hands the standby the serialized snapshot at a
 * slot's restart_lsn (see sync_decide.c for why the copy needs it).
 *
 * All need superuser or REPLICATION, as core's slot functions do.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "commands/dbcommands.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "replication/slot.h"
#include "slot_marker.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/snapmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_slotsync_failover_slots);
PG_FUNCTION_INFO_V1(pg_slotsync_wait_for_failover_slot_change);
PG_FUNCTION_INFO_V1(pg_slotsync_failover_slot_snapshot);

/* How often a waiting call looks at the slots. */
#define SLOT_WATCH_INTERVAL_MS		5

/* How long a waiting call trusts the failover flags it read. */
#define MARKER_CACHE_TTL_MS			1000

/* A copy of one slot's fields, taken under its spinlock. */
typedef struct SlotCopy
{
	NameData	name;
	NameData	plugin;
	Oid			database;
	bool		is_logical;
	ReplicationSlotPersistency persistency;
	bool		two_phase;
	XLogRecPtr	two_phase_at;
	XLogRecPtr	restart_lsn;
	XLogRecPtr	confirmed_flush;
	XLogRecPtr	invalidated_at;
	TransactionId catalog_xmin;
} SlotCopy;

/*
 * Copy every slot in use; returns the count.  "out" has room for
 * max_replication_slots entries.
 */
static int
copy_slots(SlotCopy *out)
{
	int			n = 0;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];

		if (!s->in_use)
			continue;
		SpinLockAcquire(&s->mutex);
		out[n].name = s->data.name;
		out[n].plugin = s->data.plugin;
		out[n].database = s->data.database;
		out[n].is_logical = SlotIsLogical(s);
		out[n].persistency = s->data.persistency;
		out[n].two_phase = s->data.two_phase;
		out[n].two_phase_at = s->data.two_phase_at;
		out[n].restart_lsn = s->data.restart_lsn;
		out[n].confirmed_flush = s->data.confirmed_flush;
		out[n].invalidated_at = s->data.invalidated_at;
		out[n].catalog_xmin = s->data.catalog_xmin;
		SpinLockRelease(&s->mutex);
		n++;
	}
	LWLockRelease(ReplicationSlotControlLock);
	return n;
}

static bool
slot_copy_invalidated(const SlotCopy *s)
{
	/* PostgreSQL 15 marks an invalidated slot this way (see slotfuncs.c) */
	return XLogRecPtrIsInvalid(s->restart_lsn) &&
		!XLogRecPtrIsInvalid(s->invalidated_at);
}

static void
check_caller_may_sync(void)
{
	if (!superuser() && !has_rolreplication(GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser or replication role to synchronize replication slots")));
}

/*
 * pg_slotsync.failover_slots(): every failover slot on this server, with
 * what a standby needs to copy it.  Temporary slots and slots still being
 * created are not failover slots (they cannot be resumed elsewhere).
 */
Datum
pg_slotsync_failover_slots(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SlotCopy   *slots;
	int			nslots;
	bool		in_recovery = RecoveryInProgress();

	check_caller_may_sync();
	InitMaterializedSRF(fcinfo, 0);

	slots = palloc(sizeof(SlotCopy) * Max(max_replication_slots, 1));
	nslots = copy_slots(slots);

	for (int i = 0; i < nslots; i++)
	{
		SlotCopy   *s = &slots[i];
		SlotMarker	marker;
		Datum		values[9];
		bool		nulls[9] = {0};
		char	   *dbname;

		if (!s->is_logical || s->persistency != RS_PERSISTENT)
			continue;
		slot_marker_read(NameStr(s->name), &marker);
		if (!slot_counts_as_failover(NameStr(s->name), true, s->persistency,
									 marker.flags, in_recovery))
			continue;

		/* a slot whose database was dropped meanwhile is going away too */
		dbname = get_database_name(s->database);
		if (dbname == NULL)
			continue;

		values[0] = NameGetDatum(&s->name);
		values[1] = NameGetDatum(&s->plugin);
		values[2] = CStringGetTextDatum(dbname);
		values[3] = BoolGetDatum(s->two_phase);
		if (XLogRecPtrIsInvalid(s->two_phase_at))
			nulls[4] = true;
		else
			values[4] = LSNGetDatum(s->two_phase_at);
		if (XLogRecPtrIsInvalid(s->restart_lsn))
			nulls[5] = true;
		else
			values[5] = LSNGetDatum(s->restart_lsn);
		if (XLogRecPtrIsInvalid(s->confirmed_flush))
			nulls[6] = true;
		else
			values[6] = LSNGetDatum(s->confirmed_flush);
		if (!TransactionIdIsValid(s->catalog_xmin))
			nulls[7] = true;
		else
			values[7] = TransactionIdGetDatum(s->catalog_xmin);
		values[8] = BoolGetDatum(slot_copy_invalidated(s));

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 values, nulls);
	}

	return (Datum) 0;
}

/*
 * The failover flags a waiting backend has read, in the order of the slot
 * array; valid while the names (in that order) hash the same.
 */
typedef struct MarkerCache
{
	int			nslots;
	uint32	   *flags;
	uint64		generation;
	uint64		names_hash;
	TimestampTz read_at;
} MarkerCache;

static uint64
slot_names_hash(const SlotCopy *slots, int nslots)
{
	uint64		h = 0;

	for (int i = 0; i < nslots; i++)
		h = hash_combine64(h, hash_bytes_extended((const unsigned char *) NameStr(slots[i].name),
												  strlen(NameStr(slots[i].name)),
												  slots[i].persistency));
	return h;
}

static void
marker_cache_refresh(MarkerCache *cache, const SlotCopy *slots, int nslots,
					 uint64 names_hash)
{
	cache->generation = pg_atomic_read_u64(&SlotSyncState->marker_generation);
	for (int i = 0; i < nslots; i++)
	{
		SlotMarker	marker;

		/* a slot dropped since the copy reads as "no marker": fine */
		slot_marker_read(NameStr(slots[i].name), &marker);
		cache->flags[i] = marker.flags;
	}
	cache->nslots = nslots;
	cache->names_hash = names_hash;
	cache->read_at = GetCurrentTimestamp();
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
					 const MarkerCache *cache, const char *standby_slot,
					 bool in_recovery)
{
	uint64		h = UINT64CONST(0x9E3779B97F4A7C15);

	for (int i = 0; i < nslots; i++)
	{
		const SlotCopy *s = &slots[i];

		if (standby_slot != NULL && !s->is_logical &&
			strcmp(NameStr(s->name), standby_slot) == 0)
		{
			/*
			 * Only its catalog_xmin: it tells the standby its feedback has
			 * arrived.  Its restart_lsn moves with every WAL flush of the
			 * standby, which would wake the standby for nothing.
			 */
			h = hash_combine64(h, s->catalog_xmin);
			continue;
		}
		if (!s->is_logical ||
			!slot_counts_as_failover(NameStr(s->name), true, s->persistency,
									 cache->flags[i],
									 in_recovery))
			continue;
		h = hash_combine64(h, hash_bytes_extended((const unsigned char *) NameStr(s->name),
												  strlen(NameStr(s->name)), 0));
		h = hash_lsn(h, s->restart_lsn);
		h = hash_lsn(h, s->confirmed_flush);
		h = hash_lsn(h, s->invalidated_at);
		h = hash_lsn(h, s->two_phase_at);
		h = hash_combine64(h, s->catalog_xmin);
		h = hash_combine64(h, s->two_phase);
	}
	return h;
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
	TupleDesc	tupdesc;
	SlotCopy   *slots;
	int			nslots;
	MarkerCache cache;
	uint64		token;
	TimestampTz deadline;
	Datum		values[6];
	bool		nulls[6] = {0};
	bool		in_recovery;

	check_caller_may_sync();
	if (timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_ms must not be negative")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	slots = palloc(sizeof(SlotCopy) * Max(max_replication_slots, 1));
	cache.flags = palloc(sizeof(uint32) * Max(max_replication_slots, 1));
	cache.nslots = -1;			/* forces a first read */
	cache.generation = 0;
	cache.names_hash = 0;
	cache.read_at = 0;

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
		uint64		names_hash;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			/* patterns may have changed; they decide what is a failover slot */
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		in_recovery = RecoveryInProgress();
		nslots = copy_slots(slots);
		names_hash = slot_names_hash(slots, nslots);
		if (cache.nslots != nslots || cache.names_hash != names_hash ||
			cache.generation != pg_atomic_read_u64(&SlotSyncState->marker_generation) ||
			TimestampDifferenceExceeds(cache.read_at, GetCurrentTimestamp(),
									   MARKER_CACHE_TTL_MS))
			marker_cache_refresh(&cache, slots, nslots, names_hash);

		token = compute_change_token(slots, nslots, &cache, standby_slot,
									 in_recovery);
		if (!have_last || token != last_token ||
			GetCurrentTimestamp() >= deadline)
			break;

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 SLOT_WATCH_INTERVAL_MS,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	/* the token, and the state of the standby's own physical slot */
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
		if (!XLogRecPtrIsInvalid(slots[i].restart_lsn))
		{
			values[4] = LSNGetDatum(slots[i].restart_lsn);
			nulls[4] = false;
		}
		if (TransactionIdIsValid(slots[i].catalog_xmin))
		{
			values[5] = TransactionIdGetDatum(slots[i].catalog_xmin);
			nulls[5] = false;
		}
	}

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * Read the serialized snapshot file at "lsn", or return NULL if there is
 * none.
 */
static bytea *
read_snapshot_file(XLogRecPtr lsn)
{
	char		path[MAXPGPATH];
	int			fd;
	struct stat st;
	bytea	   *result;
	int			nread;

	snprintf(path, sizeof(path), "pg_logical/snapshots/%X-%X.snap",
			 LSN_FORMAT_ARGS(lsn));
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ENOENT)
			return NULL;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	}
	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	if (st.st_size > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("file \"%s\" is too large", path)));
	result = (bytea *) palloc(st.st_size + VARHDRSZ);
	nread = read(fd, VARDATA(result), st.st_size);
	if (nread != st.st_size)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", path)));
	CloseTransientFile(fd);
	SET_VARSIZE(result, st.st_size + VARHDRSZ);
	return result;
}

static XLogRecPtr
slot_restart_lsn(const char *name, bool *found)
{
	ReplicationSlot *slot;
	XLogRecPtr	lsn = InvalidXLogRecPtr;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(name, false);
	*found = (slot != NULL);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		lsn = slot->data.restart_lsn;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return lsn;
}

/*
 * pg_slotsync.failover_slot_snapshot(slot_name): the slot's restart_lsn and
 * the serialized snapshot the server keeps at that LSN, if any.
 *
 * The standby installs this file so that decoding from its copy restores
 * the same snapshot the primary would (see sync_decide.c).  The answer must
 * be consistent: a file missing because the slot moved on and a checkpoint
 * removed it would read as "the primary has none here".  The server never
 * removes a snapshot file at or above the restart_lsn of any slot, so if the
 * slot's restart_lsn is the same before and after reading, the answer held
 * for that restart_lsn.  Otherwise we look again.
 */
Datum
pg_slotsync_failover_slot_snapshot(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;

	check_caller_may_sync();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("slot_name must not be null")));
	name = NameStr(*PG_GETARG_NAME(0));
	InitMaterializedSRF(fcinfo, 0);

	for (;;)
	{
		bool		found;
		XLogRecPtr	before;
		XLogRecPtr	after;
		bytea	   *snapshot = NULL;
		Datum		values[2];
		bool		nulls[2] = {false, false};

		CHECK_FOR_INTERRUPTS();
		before = slot_restart_lsn(name, &found);
		if (!found || XLogRecPtrIsInvalid(before))
			break;
		snapshot = read_snapshot_file(before);
		after = slot_restart_lsn(name, &found);
		if (!found)
			break;
		if (after != before)
			continue;

		values[0] = LSNGetDatum(before);
		if (snapshot != NULL)
			values[1] = PointerGetDatum(snapshot);
		else
			nulls[1] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 values, nulls);
		break;
	}

	return (Datum) 0;
}
