/*-------------------------------------------------------------------------
 *
 * slot_funcs.c
 *		SQL functions that mark logical slots as failover slots, and the
 *		function behind the pg_slotsync.replication_slots view.
 *
 * create_logical_replication_slot() is PostgreSQL 17's
 * pg_create_logical_replication_slot() with its failover argument, built
 * from the same internal steps as PostgreSQL 15's version: the slot is
 * created ephemeral, the decoding context finds its start point, and only
 * then is the slot made persistent.  The failover marker (slot_marker.c) is
 * written while the slot is still ephemeral, so a crash or error at any
 * point leaves either no slot at all or a slot with its flag; never a
 * persistent slot that silently lost it.
 *
 * alter_replication_slot() is PostgreSQL 17's ALTER_REPLICATION_SLOT
 * (FAILOVER) as a function.  Core must acquire the slot to alter it, so it
 * refuses while a consumer is streaming from it; our flag is not part of the
 * slot, so we change it without acquiring the slot, under the lock that
 * keeps the slot from being dropped or replaced meanwhile.  A running
 * walsender notices through the marker generation counter.
 *
 * Both keep core's rules: superuser or REPLICATION, no failover for
 * temporary or physical slots, none on a standby (a standby's failover slots
 * are the synchronized ones, which only the sync worker may touch).
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "access/xlogutils.h"
#include "failover_slot_moves.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "slot_marker.h"
#include "slot_sync.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_slotsync_create_logical_replication_slot);
PG_FUNCTION_INFO_V1(pg_slotsync_alter_replication_slot);
PG_FUNCTION_INFO_V1(pg_slotsync_slot_info);

/*
 * Fetch a required argument, refusing NULL with a message naming it.
 */
static void
require_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
}

/*
 * Slot and plugin names arrive as text so that an over-long name is an
 * error rather than silently truncated, as the name type would do.
 */
static char *
slot_name_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *name;

	require_arg(fcinfo, argno, "slot_name");
	name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	ReplicationSlotValidateName(name, ERROR);
	return name;
}

static char *
plugin_name_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *plugin;

	require_arg(fcinfo, argno, "plugin");
	plugin = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (plugin[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("output plugin name must not be empty")));
	if (strlen(plugin) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("output plugin name \"%s\" is too long", plugin),
				 errdetail("Output plugin names are at most %d characters long.",
						   NAMEDATALEN - 1)));
	return plugin;
}

/*
 * The slot create_logical_replication_slot() is building, if any.
 *
 * A failed top-level statement releases (and so drops) a half-built slot in
 * PostgresMain's error recovery, but a failure inside a subtransaction (a
 * savepoint, a PL/pgSQL exception block) does not: in PostgreSQL 15 the
 * ephemeral slot would stay acquired by the session, in no one's view.  Our
 * subtransaction-abort callback drops it, so a refused call leaves nothing
 * behind however it was made.
 */
static NameData slot_being_created;
static SubTransactionId slot_being_created_subxid = InvalidSubTransactionId;

void
slot_funcs_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							SubTransactionId parentSubid, void *arg)
{
	bool		temporary;

	if (event != SUBXACT_EVENT_ABORT_SUB ||
		slot_being_created_subxid != mySubid)
		return;
	slot_being_created_subxid = InvalidSubTransactionId;

	/* LWLocks are released by now, so the slot can be dropped safely */
	if (MyReplicationSlot == NULL ||
		strcmp(NameStr(MyReplicationSlot->data.name),
			   NameStr(slot_being_created)) != 0)
		return;
	temporary = (MyReplicationSlot->data.persistency == RS_TEMPORARY);
	ReplicationSlotRelease();	/* drops an ephemeral slot */
	if (temporary)
		ReplicationSlotDrop(NameStr(slot_being_created), true);
}

/*
 * pg_slotsync.create_logical_replication_slot(slot_name, plugin, temporary,
 *		twophase, failover) RETURNS (slot_name name, lsn pg_lsn)
 */
Datum
pg_slotsync_create_logical_replication_slot(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *plugin;
	bool		temporary;
	bool		two_phase;
	bool		failover;
	LogicalDecodingContext *ctx;
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	HeapTuple	tuple;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	CheckSlotPermissions();

	name = slot_name_arg(fcinfo, 0);
	plugin = plugin_name_arg(fcinfo, 1);
	require_arg(fcinfo, 2, "temporary");
	require_arg(fcinfo, 3, "twophase");
	require_arg(fcinfo, 4, "failover");
	temporary = PG_GETARG_BOOL(2);
	two_phase = PG_GETARG_BOOL(3);
	failover = PG_GETARG_BOOL(4);

	if (failover && temporary)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot enable failover for a temporary replication slot")));
	if (failover && RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot enable failover for a replication slot created on the standby")));

	CheckLogicalDecodingRequirements();

	/*
	 * Ephemeral until complete: an error anywhere below drops it again,
	 * directory, marker and all.  Temporary slots are dropped on error too.
	 */
	namestrcpy(&slot_being_created, name);
	slot_being_created_subxid = GetCurrentSubTransactionId();
	ReplicationSlotCreate(name, true,
						  temporary ? RS_TEMPORARY : RS_EPHEMERAL, two_phase);

	ctx = CreateInitDecodingContext(plugin, NIL,
									false,	/* catalog-only snapshot */
									InvalidXLogRecPtr,
									XL_ROUTINE(.page_read = read_local_xlog_page,
											   .segment_open = wal_segment_open,
											   .segment_close = wal_segment_close),
									NULL, NULL, NULL);
	DecodingContextFindStartpoint(ctx);
	FreeDecodingContext(ctx);

	if (failover)
	{
		SlotMarker	marker;

		marker.flags = SLOT_MARKER_FAILOVER;
		marker.incarnation = slot_marker_new_incarnation();
		slot_marker_write_owned(name, &marker);
	}

	values[0] = NameGetDatum(&MyReplicationSlot->data.name);
	values[1] = LSNGetDatum(MyReplicationSlot->data.confirmed_flush);
	tuple = heap_form_tuple(tupdesc, values, nulls);

	if (!temporary)
		ReplicationSlotPersist();
	ReplicationSlotRelease();
	slot_being_created_subxid = InvalidSubTransactionId;
	if (failover)
		failover_slot_moved();	/* a new failover slot, for watchers */

	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

/* What alter_replication_slot() was asked, for the check callback. */
typedef struct AlterRequest
{
	bool		failover;
} AlterRequest;

/*
 * Refuse what core refuses, seeing the slot while it cannot vanish.  A
 * corrupt marker is rewritten: setting the flag again is the documented
 * remedy (see slot_marker.c).
 */
static bool
check_alter_failover(const SlotCopy *slot, const SlotMarker *current,
					 SlotMarkerStatus status, void *arg)
{
	AlterRequest *req = (AlterRequest *) arg;

	if (!slot->is_logical)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot use %s with a physical replication slot",
						"pg_slotsync.alter_replication_slot()")));

	if (slot->persistency == RS_EPHEMERAL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot alter replication slot \"%s\"",
						NameStr(slot->name)),
				 errdetail("The replication slot is still being created.")));

	if (req->failover && slot->persistency == RS_TEMPORARY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot enable failover for a temporary replication slot")));

	if (status == SLOT_MARKER_CORRUPT)
		ereport(LOG,
				(errmsg("rewriting the corrupted pg_slotsync state of replication slot \"%s\"",
						NameStr(slot->name)),
				 errdetail("The slot gets a new incarnation id; standbys synchronize it afresh.")));
	return true;
}

/*
 * pg_slotsync.alter_replication_slot(slot_name, failover) RETURNS void
 */
Datum
pg_slotsync_alter_replication_slot(PG_FUNCTION_ARGS)
{
	char	   *name;
	AlterRequest req;

	CheckSlotPermissions();

	name = slot_name_arg(fcinfo, 0);
	require_arg(fcinfo, 1, "failover");
	req.failover = PG_GETARG_BOOL(1);

	if (RecoveryInProgress())
	{
		SlotMarker	marker;

		/* same order of complaints as core's ReplicationSlotAlter() */
		if (SearchNamedReplicationSlot(name, true) != NULL &&
			slot_marker_examine(name, &marker) == SLOT_MARKER_PRESENT &&
			(marker.flags & SLOT_MARKER_SYNCED))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot alter replication slot \"%s\"", name),
					 errdetail("This replication slot is being synchronized from the primary server.")));
		if (req.failover)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot enable failover for a replication slot on the standby")));
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot alter replication slot \"%s\"", name),
				 errdetail("Failover flags can only be changed on the primary server.")));
	}

	if (slot_marker_update_named(name,
								 req.failover ? SLOT_MARKER_FAILOVER : 0,
								 req.failover ? 0 : SLOT_MARKER_FAILOVER,
								 req.failover, check_alter_failover, &req))
		failover_slot_moved();	/* a slot became, or stopped being, one */

	PG_RETURN_VOID();
}

/*
 * The sync columns of a synced slot (values/nulls 3 to 5): from the syncing
 * process if it knows the slot, else from the slot's own marker, as
 * sync_reported_state() says: the slot has the last word on readiness, and
 * a ready copy nobody vouched for lately is stale.
 */
static void
put_sync_state(const char *name, bool ready, Datum *values, bool *nulls)
{
	SyncState	state;
	SyncReason	code = SYNC_REASON_NONE;
	char		reason[256];
	TimestampTz last_sync;

	if (slot_sync_status_lookup(name, &state, &code, reason, sizeof(reason),
								&last_sync))
	{
		if (reason[0] != '\0')
		{
			values[4] = CStringGetTextDatum(reason);
			nulls[4] = false;
		}
		if (last_sync != 0)
		{
			values[5] = TimestampTzGetDatum(last_sync);
			nulls[5] = false;
		}
	}
	else
		state = ready ? SYNC_STATE_READY : SYNC_STATE_NOT_READY;
	state = sync_reported_state(state, ready, worker_status_recent_sync(),
								&code);
	values[3] = CStringGetTextDatum(sync_state_name(state));
	nulls[3] = false;
}

/*
 * pg_slotsync.slot_info() RETURNS SETOF (slot_name name, failover bool,
 *		synced bool): our per-slot state, joined to pg_replication_slots by
 *		the view pg_slotsync.replication_slots.
 */
Datum
pg_slotsync_slot_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SlotCopy   *slots;
	int			nslots;
	bool		in_recovery = RecoveryInProgress();

	InitMaterializedSRF(fcinfo, 0);

	/* take a consistent list first; read the files without the lock */
	slots = slot_copy_all_palloc(&nslots);

	for (int i = 0; i < nslots; i++)
	{
		SlotMarker	marker;
		Datum		values[6];
		bool		nulls[6] = {false, false, false, true, true, true};
		const char *name = NameStr(slots[i].name);

		values[0] = NameGetDatum(&slots[i].name);
		if (slot_marker_examine(name, &marker) == SLOT_MARKER_CORRUPT)
		{
			/* we cannot tell what it is; say so, and how to repair it */
			nulls[1] = nulls[2] = true;
			values[4] = CStringGetTextDatum("the pg_slotsync state of this slot is corrupted; set its failover flag again with pg_slotsync.alter_replication_slot()");
			nulls[4] = false;
		}
		else
		{
			values[1] = BoolGetDatum(slot_counts_as_failover(name,
															 slots[i].is_logical,
															 slots[i].persistency,
															 marker.flags,
															 in_recovery));
			values[2] = BoolGetDatum((marker.flags & SLOT_MARKER_SYNCED) != 0);
			if (marker.flags & SLOT_MARKER_SYNCED)
				put_sync_state(name, (marker.flags & SLOT_MARKER_READY) != 0,
							   values, nulls);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 values, nulls);
	}

	return (Datum) 0;
}
