/*-------------------------------------------------------------------------
 *
 * sync_readiness.c
 *		pg_slotsync.wait_for_failover_ready(timeout, slots): wait until this
 *		standby could be promoted without losing a change for any (or any
 *		named) failover slot.
 *
 * A failover tool asks this before it promotes a standby, and a script
 * before a planned switchover.  "Ready" here is stronger than a ready row
 * in sync_status: every failover slot the primary has when the call starts
 * must have a sync-ready copy here (see sync_decide.c for what sync-ready
 * guarantees) that has caught up with where the primary's slot was at that
 * moment.  So the call first asks the primary, over a connection of its
 * own, for its failover slots and their positions; then it watches the
 * local copies (which the sync worker, or a manual sync, moves) until each
 * has reached its target or the timeout passes.
 *
 * Never vacuously ready: without a primary to ask (unreachable, another
 * cluster, misconfigured sync) the call cannot know the targets and returns
 * false, with a NOTICE saying why; the same on a server that is not (or no
 * longer) a standby.  A slot the primary has invalidated is not waited for
 * (there is nothing left to lose for it), and a NOTICE names it.  A named
 * slot that is not a failover slot on the primary makes the call return
 * false at once.  On timeout the NOTICE names every slot not ready and why.
 *
 * The copy must also be of the same incarnation as the primary's slot
 * (slot_marker.h): a copy left from a slot that was dropped and created
 * again under its name is not the slot the consumer uses.
 *
 * The call is cancellable, holds no lock while it waits, and closes its
 * connection before it waits, whatever way the fetch ends.  Like the core
 * slot functions it requires superuser or the REPLICATION attribute.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/slot.h"
#include "slot_sync.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_slotsync_wait_for_failover_ready);

/* how often the local copies are looked at while waiting */
#define READINESS_POLL_MS	50

/* One failover slot to wait for, as the primary had it at the call. */
typedef struct ReadyTarget
{
	NameData	name;
	uint64		incarnation;
	XLogRecPtr	confirmed_flush;
} ReadyTarget;

static bool
readiness_interrupted(void)
{
	return QueryCancelPending || ProcDiePending;
}

/*
 * Is the local copy of "t" ready and caught up?  If not, say why in "why".
 * The rule of this file; nothing else decides it.
 */
static bool
copy_is_ready(const ReadyTarget *t, const LocalSlot *copy,
			  char *why, Size whylen)
{
	SyncState	state;
	char		reason[256];

	if (!copy->exists || !copy->synced || !copy->is_logical)
	{
		snprintf(why, whylen, "the standby has no synchronized copy of it");
		return false;
	}
	if (copy->incarnation != t->incarnation)
	{
		snprintf(why, whylen, "the copy is of an earlier slot of that name");
		return false;
	}
	if (copy->invalidated || !copy->ready)
	{
		if (slot_sync_status_lookup(NameStr(t->name), &state, NULL, reason,
									sizeof(reason), NULL) && reason[0])
			snprintf(why, whylen, "the copy is not sync-ready: %s", reason);
		else
			snprintf(why, whylen, "the copy is not sync-ready");
		return false;
	}
	if (copy->confirmed_flush < t->confirmed_flush)
	{
		snprintf(why, whylen,
				 "the copy's confirmed_flush_lsn %X/%X is behind the primary's %X/%X",
				 LSN_FORMAT_ARGS(copy->confirmed_flush),
				 LSN_FORMAT_ARGS(t->confirmed_flush));
		return false;
	}
	return true;
}

/* The names in a text[] argument, or NULL for "every slot". */
static char **
requested_names(ArrayType *arr, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **names;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, n);
	names = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("slot names must not be null")));
		names[i] = TextDatumGetCString(elems[i]);
	}
	return names;
}

/*
 * Ask the primary for its failover slots; false, with "why" set, if that
 * cannot be done.  The connection is closed whatever happens.
 */
static bool
fetch_primary_slots(RemoteSlot **rows, int *nrows, StringInfo why)
{
	SyncSession session;
	SyncComplaint complaint;
	PrimaryInfo info;
	StringInfoData err;
	RemoteFailure failure = REMOTE_OK;
	bool		ok = false;

	if (!slot_sync_validate_local(&complaint))
	{
		appendStringInfoString(why, complaint.message);
		return false;
	}
	sync_session_init(&session, CurrentMemoryContext,
					  "pg_slotsync readiness check", readiness_interrupted);
	initStringInfo(&err);
	PG_TRY();
	{
		if (!sync_session_connect(&session,
								  "pg_slotsync wait_for_failover_ready",
								  &complaint))
			appendStringInfoString(why, complaint.message);
		else if ((failure = primary_fetch(session.conn, PrimarySlotName,
										  false, 0, 0, &info, rows, nrows,
										  readiness_interrupted,
										  &err)) != REMOTE_OK)
		{
			slot_sync_complain_remote(&complaint, failure,
									  "fetch failover slots from the primary server",
									  err.data);
			appendStringInfoString(why, complaint.message);
		}
		else if (!slot_sync_validate_primary(&info, &complaint))
			appendStringInfoString(why, complaint.message);
		else
			ok = true;
	}
	PG_FINALLY();
	{
		sync_session_disconnect(&session);
	}
	PG_END_TRY();
	CHECK_FOR_INTERRUPTS();
	return ok;
}

/*
 * The slots to wait for: the primary's failover slots, or the named ones.
 * Returns false, with "why", if a named slot is not a failover slot there.
 * Invalidated slots are left out, and a NOTICE names them.
 */
static bool
choose_targets(const RemoteSlot *rows, int nrows, char **names, int nnames,
			   ReadyTarget **targets, int *ntargets, StringInfo why)
{
	*targets = palloc(sizeof(ReadyTarget) * Max(nrows, 1));
	*ntargets = 0;
	for (int i = 0; names != NULL && i < nnames; i++)
	{
		int			k;

		for (k = 0; k < nrows; k++)
			if (strcmp(NameStr(rows[k].name), names[i]) == 0)
				break;
		if (k == nrows)
		{
			appendStringInfo(why, "replication slot \"%s\" is not a failover slot on the primary server",
							 names[i]);
			return false;
		}
	}

	for (int k = 0; k < nrows; k++)
	{
		bool		wanted = (names == NULL);
		ReadyTarget *t;

		for (int i = 0; !wanted && i < nnames; i++)
			wanted = strcmp(NameStr(rows[k].name), names[i]) == 0;
		if (!wanted)
			continue;
		if (rows[k].invalidated)
		{
			ereport(NOTICE,
					(errmsg("not waiting for replication slot \"%s\"",
							NameStr(rows[k].name)),
					 errdetail("The slot is invalidated on the primary server.")));
			continue;
		}
		t = &(*targets)[(*ntargets)++];
		t->name = rows[k].name;
		t->incarnation = rows[k].incarnation;
		t->confirmed_flush = rows[k].confirmed_flush;
	}
	return true;
}

/* Are all targets ready?  "laggards" says which are not, and why. */
static bool
all_targets_ready(const ReadyTarget *targets, int ntargets,
				  StringInfo laggards)
{
	resetStringInfo(laggards);
	for (int i = 0; i < ntargets; i++)
	{
		LocalSlot	copy;
		char		why[512];

		sync_read_local(NameStr(targets[i].name), &copy, NULL, NULL);
		if (!copy_is_ready(&targets[i], &copy, why, sizeof(why)))
			appendStringInfo(laggards, "%sreplication slot \"%s\": %s",
							 laggards->len ? "\n" : "",
							 NameStr(targets[i].name), why);
	}
	return laggards->len == 0;
}

static Datum
not_ready(const char *message, const char *detail)
{
	ereport(NOTICE,
			(errmsg_internal("%s", message),
			 detail ? errdetail_internal("%s", detail) : 0));
	return BoolGetDatum(false);
}

Datum
pg_slotsync_wait_for_failover_ready(PG_FUNCTION_ARGS)
{
	TimestampTz deadline;
	char	  **names = NULL;
	int			nnames = 0;
	RemoteSlot *rows = NULL;
	int			nrows = 0;
	ReadyTarget *targets;
	int			ntargets;
	StringInfoData why;

	CheckSlotPermissions();
	deadline = slot_sync_deadline(PG_ARGISNULL(0) ? NULL :
								  PG_GETARG_INTERVAL_P(0));
	if (!PG_ARGISNULL(1))
		names = requested_names(PG_GETARG_ARRAYTYPE_P(1), &nnames);

	if (!RecoveryInProgress())
		return not_ready("this server is not a standby", NULL);

	initStringInfo(&why);
	if (!fetch_primary_slots(&rows, &nrows, &why))
		return not_ready("cannot tell whether the failover slots are ready",
						 why.data);
	if (!choose_targets(rows, nrows, names, nnames, &targets, &ntargets, &why))
		return not_ready("cannot wait for a slot that is not a failover slot",
						 why.data);

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (!RecoveryInProgress())
			return not_ready("this server is no longer a standby", NULL);
		if (all_targets_ready(targets, ntargets, &why))
			PG_RETURN_BOOL(true);
		if (deadline != 0 && GetCurrentTimestamp() >= deadline)
			return not_ready("timed out waiting for failover slots to become ready",
							 why.data);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 READINESS_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
