/*-------------------------------------------------------------------------
 *
 * primary_funcs.c
 *		What a standby's sync worker reads on the primary: the failover
 *		slots, and the serialized snapshots at their restart_lsn.
 *
 * failover_slots() lists every failover slot (slot_counts_as_failover():
 * its flag, or a name pattern; never a synced copy that is not ready, nor
 * the anchor of a server that synchronized before it was promoted) with
 * what a standby copies.  Each is listed with its incarnation id (see
 * slot_marker.h); a slot that has none yet (a failover slot by pattern, or
 * one flagged by version 1.0) gets one the first time it is listed, so
 * that every copy a standby makes knows which slot it is of.  A slot whose
 * marker is corrupt is left out with a WARNING (at most one a minute per
 * session): the other slots keep syncing, and
 * pg_slotsync.alter_replication_slot() rewrites the marker.
 *
 * failover_slot_snapshots() hands the standby the serialized snapshot at
 * each slot's restart_lsn (see sync_decide.c for why the copy needs it).
 * The answer must be consistent: a file missing because the slot moved on
 * and a checkpoint removed it would read as "the primary has none here".
 * The server never removes a snapshot file at or above the restart_lsn of
 * any slot, so if the slot's restart_lsn is the same before and after
 * reading, the answer held for that restart_lsn.  Otherwise we look again.
 *
 * All need superuser or REPLICATION, as core's slot functions do.  The
 * long-poll is in primary_watch.c.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "replication/slot.h"
#include "slot_copy.h"
#include "slot_marker.h"
#include "snapshot_file.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_slotsync_failover_slots);
PG_FUNCTION_INFO_V1(pg_slotsync_failover_slots_1_1);
PG_FUNCTION_INFO_V1(pg_slotsync_failover_slot_snapshot);
PG_FUNCTION_INFO_V1(pg_slotsync_failover_slot_snapshots);

/* At most one warning about corrupt markers per session in this time. */
#define CORRUPT_WARNING_INTERVAL_MS 60000

void
check_caller_may_sync(void)
{
	if (!superuser() && !has_rolreplication(GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser or replication role to synchronize replication slots")));
}

/*
 * The marker of a slot being listed; a corrupt one reads as no marker, with
 * a WARNING now and then.
 */
static void
listed_slot_marker(const char *name, SlotMarker *marker)
{
	static TimestampTz last_warning = 0;

	if (slot_marker_examine(name, marker) != SLOT_MARKER_CORRUPT)
		return;
	if (last_warning == 0 ||
		TimestampDifferenceExceeds(last_warning, GetCurrentTimestamp(),
								   CORRUPT_WARNING_INTERVAL_MS))
	{
		last_warning = GetCurrentTimestamp();
		slot_marker_report_corrupt(name, WARNING);
	}
}

/* One row of failover_slots(); version 1.0 has no incarnation column. */
static void
put_failover_slot(ReturnSetInfo *rsinfo, const SlotCopy *s,
				  const char *dbname, uint64 incarnation,
				  bool with_incarnation)
{
	Datum		values[10];
	bool		nulls[10] = {0};
	int			c = 0;

	values[c++] = NameGetDatum(&s->name);
	values[c++] = NameGetDatum(&s->plugin);
	values[c++] = CStringGetTextDatum(dbname);
	values[c++] = BoolGetDatum(s->two_phase);
	nulls[c] = XLogRecPtrIsInvalid(s->two_phase_at);
	values[c++] = LSNGetDatum(s->two_phase_at);
	nulls[c] = XLogRecPtrIsInvalid(s->restart_lsn);
	values[c++] = LSNGetDatum(s->restart_lsn);
	nulls[c] = XLogRecPtrIsInvalid(s->confirmed_flush);
	values[c++] = LSNGetDatum(s->confirmed_flush);
	nulls[c] = !TransactionIdIsValid(s->catalog_xmin);
	values[c++] = TransactionIdGetDatum(s->catalog_xmin);
	values[c++] = BoolGetDatum(slot_copy_is_invalidated(s));
	/* last, so that a standby that reads 1.0's columns still can */
	if (with_incarnation)
	{
		nulls[c] = incarnation == 0;
		values[c++] = Int64GetDatum((int64) incarnation);
	}

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * pg_slotsync.failover_slots(): every failover slot on this server, with
 * what a standby needs to copy it.
 */
static Datum
failover_slots(FunctionCallInfo fcinfo, bool with_incarnation)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SlotCopy   *slots;
	int			nslots;
	bool		in_recovery = RecoveryInProgress();

	check_caller_may_sync();
	InitMaterializedSRF(fcinfo, 0);

	slots = slot_copy_all_palloc(&nslots);
	for (int i = 0; i < nslots; i++)
	{
		SlotCopy   *s = &slots[i];
		const char *name = NameStr(s->name);
		SlotMarker	marker;
		char	   *dbname;

		if (!s->is_logical || s->persistency != RS_PERSISTENT)
			continue;
		listed_slot_marker(name, &marker);
		if (!slot_counts_as_failover(name, true, s->persistency,
									 marker.flags, in_recovery))
			continue;

		/* a slot whose database was dropped meanwhile is going away too */
		dbname = get_database_name(s->database);
		if (dbname == NULL)
			continue;

		if (with_incarnation && marker.incarnation == 0 && !in_recovery)
		{
			marker.incarnation = slot_marker_ensure_incarnation(name);
			if (marker.incarnation == 0)
				continue;		/* dropped meanwhile */
		}
		put_failover_slot(rsinfo, s, dbname, marker.incarnation,
						  with_incarnation);
	}
	return (Datum) 0;
}

Datum
pg_slotsync_failover_slots(PG_FUNCTION_ARGS)
{
	return failover_slots(fcinfo, false);
}

Datum
pg_slotsync_failover_slots_1_1(PG_FUNCTION_ARGS)
{
	return failover_slots(fcinfo, true);
}

static XLogRecPtr
slot_restart_lsn(const char *name, bool *found)
{
	SlotCopy	slot;

	*found = slot_copy_named(name, &slot);
	return *found ? slot.restart_lsn : InvalidXLogRecPtr;
}

/*
 * Put one row (slot_name, restart_lsn, snapshot) for the named slot, read
 * consistently (see the header comment); nothing if there is no such slot
 * or it holds no WAL.
 */
static void
put_slot_snapshot(ReturnSetInfo *rsinfo, Name name, bool with_name)
{
	for (;;)
	{
		bool		found;
		XLogRecPtr	before;
		XLogRecPtr	after;
		bytea	   *snapshot;
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		int			c = 0;

		CHECK_FOR_INTERRUPTS();
		before = slot_restart_lsn(NameStr(*name), &found);
		if (!found || XLogRecPtrIsInvalid(before))
			return;
		snapshot = snapshot_file_read(before);
		after = slot_restart_lsn(NameStr(*name), &found);
		if (!found)
			return;
		if (after != before)
			continue;

		if (with_name)
			values[c++] = NameGetDatum(name);
		values[c++] = LSNGetDatum(before);
		nulls[c] = snapshot == NULL;
		values[c++] = PointerGetDatum(snapshot);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 values, nulls);
		return;
	}
}

/*
 * pg_slotsync.failover_slot_snapshot(slot_name) (version 1.0): the slot's
 * restart_lsn and the serialized snapshot there, if any.
 */
Datum
pg_slotsync_failover_slot_snapshot(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	check_caller_may_sync();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("slot_name must not be null")));
	InitMaterializedSRF(fcinfo, 0);
	put_slot_snapshot(rsinfo, PG_GETARG_NAME(0), false);
	return (Datum) 0;
}

/*
 * pg_slotsync.failover_slot_snapshots(slot_names name[]): the same for many
 * slots at once, one row per slot that exists, in the order asked.
 */
Datum
pg_slotsync_failover_slot_snapshots(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *names;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			nelems;

	check_caller_may_sync();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("slot_names must not be null")));
	names = PG_GETARG_ARRAYTYPE_P(0);
	deconstruct_array(names, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR,
					  &elems, &elem_nulls, &nelems);
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < nelems; i++)
	{
		if (!elem_nulls[i])
			put_slot_snapshot(rsinfo, DatumGetName(elems[i]), true);
	}
	return (Datum) 0;
}
