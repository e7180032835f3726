/*-------------------------------------------------------------------------
 *
 * sync_views.c
 *		What a standby says about its copies and its syncing process:
 *		pg_slotsync.sync_status, pg_slotsync.sync_worker and
 *		pg_slotsync.failover_readiness().
 *
 * Each view reads the syncing process's records (sync_status.c,
 * worker_status.c) and the copies themselves, and shows what holds now,
 * not what held at the last cycle: a copy the last cycle called ready is
 * shown not ready if it has been demoted since, and stale if nobody has
 * vouched for it within pg_slotsync.stale_after (the rule is
 * sync_reported_state() in sync_decide.c).  So "anything not ready" is a
 * complete alert: a standby whose worker is stopped, misconfigured or cut
 * off from its primary does not look healthy.
 *
 * failover_readiness() is the one question a failover tool asks: a summary
 * row (slot_name NULL) that is ready only if this server is a standby, a
 * syncing process completed a cycle within pg_slotsync.stale_after and is
 * not failing now (a worker that knows it cannot sync says so at once, even
 * while its copies are still recent enough to be shown ready), and every
 * failover slot the primary listed has a ready copy; then one row per slot,
 * with how far its copy is behind the primary's slot.  A standby that never
 * synced is not ready: readiness is never vacuous.
 *
 * Its wal_flushed column says whether this standby has flushed the WAL up
 * to where each slot's consumer has confirmed (the primary's slot as last
 * seen), which is what pg_slotsync.synchronized_standby_slots on the
 * primary makes sure of for the standbys it lists.  When it is false, a
 * consumer has received changes this standby does not have: after a
 * promotion its consumer would hold changes the new primary never had.
 * The copy is still ready in the sense of sync_decide.c (decoding from it
 * yields every change after its position); the column tells a failover
 * tool that the gate does not cover this standby, or not yet.
 *
 * The worker's last error may name the primary's host; like
 * pg_stat_wal_receiver's conninfo, it is shown only to members of
 * pg_read_all_stats, in the sync_worker view and wherever a reason quotes
 * it (error_for_viewer()).
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlogrecovery.h"
#include "replication/walreceiver.h"
#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "slot_copy.h"
#include "slot_sync.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/numeric.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_slotsync_sync_status);
PG_FUNCTION_INFO_V1(pg_slotsync_sync_status_1_1);
PG_FUNCTION_INFO_V1(pg_slotsync_sync_worker_status);
PG_FUNCTION_INFO_V1(pg_slotsync_failover_readiness);

/* One slot's state as the views show it. */
typedef struct ShownSlot
{
	SyncState	state;
	SyncReason	code;
	char		reason[256];
	bool		has_copy;
	XLogRecPtr	copy_confirmed_flush;
} ShownSlot;


/*
 * The worker's last error as this viewer may see it: it can name the
 * primary's host, so only members of pg_read_all_stats get the text (see
 * the header comment); others are told where it is.
 */
static const char *
error_for_viewer(const WorkerStatus *worker)
{
	if (worker->last_error[0] == '\0')
		return "";
	if (has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS))
		return worker->last_error;
	return "the error is shown to members of pg_read_all_stats";
}

/*
 * What holds now for a recorded entry (see the header comment).
 */
static void
shown_slot(const SyncStatusEntry *e, bool recent_sync,
		   const WorkerStatus *worker, ShownSlot *out)
{
	LocalSlot	local;

	sync_read_local(NameStr(e->name), &local, NULL, NULL);
	out->has_copy = local.exists && local.synced;
	out->copy_confirmed_flush = local.confirmed_flush;
	out->code = e->reason_code;
	strlcpy(out->reason, e->reason, sizeof(out->reason));

	/*
	 * This standby's own checkpoint may have invalidated the copy since the
	 * worker last looked at it (max_slot_wal_keep_size on the
	 * standby): such a copy has lost its WAL and is never shown ready.
	 */
	if (out->has_copy && local.invalidated &&
		(e->state == SYNC_STATE_READY || e->state == SYNC_STATE_STALE))
	{
		out->state = SYNC_STATE_NOT_READY;
		out->code = SYNC_REASON_LOCAL_INVALIDATED;
		strlcpy(out->reason, "the standby's copy was invalidated on the standby only",
				sizeof(out->reason));
		return;
	}
	out->state = sync_reported_state(e->state, local.ready, recent_sync,
									 &out->code);
	if (out->code == e->reason_code)
		return;
	if (out->code == SYNC_REASON_NO_RECENT_SYNC)
		snprintf(out->reason, sizeof(out->reason),
				 "no slot synchronization has confirmed the copy since %s%s%s",
				 worker->last_sync ? timestamptz_to_str(worker->last_sync) : "the server started",
				 worker->last_error[0] ? ": " : "", error_for_viewer(worker));
	else if (out->code == SYNC_REASON_UNPROTECTED)
		strlcpy(out->reason, "the copy is no longer sync-ready",
				sizeof(out->reason));
}

static Datum
text_or_null(const char *s, bool *isnull)
{
	*isnull = (s == NULL || s[0] == '\0');
	return *isnull ? (Datum) 0 : CStringGetTextDatum(s);
}

/*
 * The rows of pg_slotsync.sync_status: one per failover slot the syncing
 * process knows from the primary.  Version 1.0 of the extension's SQL has
 * no incarnation column.
 */
static Datum
sync_status_rows(FunctionCallInfo fcinfo, bool with_incarnation)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkerStatus worker;
	bool		recent = worker_status_recent_sync();
	SyncStatusEntry *entries;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	worker_status_read(&worker);
	entries = slot_sync_status_copy(&n);

	for (int i = 0; i < n; i++)
	{
		SyncStatusEntry *e = &entries[i];
		ShownSlot	shown;
		Datum		values[10];
		bool		nulls[10] = {0};
		int			c = 0;

		shown_slot(e, recent, &worker, &shown);
		values[c++] = NameGetDatum(&e->name);
		values[c++] = CStringGetTextDatum(NameStr(e->database));
		if (with_incarnation)
		{
			nulls[c] = e->incarnation == 0;
			values[c++] = Int64GetDatum((int64) e->incarnation);
		}
		values[c++] = CStringGetTextDatum(sync_state_name(shown.state));
		values[c] = text_or_null(sync_reason_name(shown.code), &nulls[c]);
		c++;
		values[c] = text_or_null(shown.reason, &nulls[c]);
		c++;
		nulls[c] = XLogRecPtrIsInvalid(e->remote_restart_lsn);
		values[c++] = LSNGetDatum(e->remote_restart_lsn);
		nulls[c] = XLogRecPtrIsInvalid(e->remote_confirmed_flush);
		values[c++] = LSNGetDatum(e->remote_confirmed_flush);
		nulls[c] = !TransactionIdIsValid(e->remote_catalog_xmin);
		values[c++] = TransactionIdGetDatum(e->remote_catalog_xmin);
		nulls[c] = e->last_sync == 0;
		values[c++] = TimestampTzGetDatum(e->last_sync);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 values, nulls);
	}
	return (Datum) 0;
}

Datum
pg_slotsync_sync_status(PG_FUNCTION_ARGS)
{
	return sync_status_rows(fcinfo, false);
}

Datum
pg_slotsync_sync_status_1_1(PG_FUNCTION_ARGS)
{
	return sync_status_rows(fcinfo, true);
}

/*
 * The syncing process's state in one word (see pg_slotsync.sync_worker).
 */
static const char *
worker_state_name(const WorkerStatus *w, bool recent)
{
	if (!RecoveryInProgress())
		return "not_a_standby";
	if (w->pid == 0)
		return pg_slotsync_sync_enabled ? "starting" : "off";
	switch (w->phase)
	{
		case WORKER_PHASE_NONE:
		case WORKER_PHASE_STARTING:
			return "starting";
		case WORKER_PHASE_MISCONFIGURED:
			return "misconfigured";
		case WORKER_PHASE_DISCONNECTED:
			return "disconnected";
		case WORKER_PHASE_SYNCING:
			return recent ? "syncing" : "stalled";
	}
	return "unknown";
}

/*
 * pg_slotsync.sync_worker: the syncing process, one row.
 */
Datum
pg_slotsync_sync_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	WorkerStatus w;
	Datum		values[11];
	bool		nulls[11] = {0};
	bool		recent = worker_status_recent_sync();
	bool		may_see_error =
		has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	worker_status_read(&w);

	nulls[0] = w.pid == 0;
	values[0] = Int32GetDatum(w.pid);
	values[1] = text_or_null(w.pid == 0 ? NULL : w.manual ? "manual" : "worker",
							 &nulls[1]);
	values[2] = CStringGetTextDatum(worker_state_name(&w, recent));
	nulls[3] = w.pid == 0 || w.started_at == 0;
	values[3] = TimestampTzGetDatum(w.started_at);
	nulls[4] = w.last_sync == 0;
	values[4] = TimestampTzGetDatum(w.last_sync);
	values[5] = Int64GetDatum((int64) w.cycles);
	values[6] = Int64GetDatum((int64) w.errors);
	values[7] = text_or_null(may_see_error ? w.last_error : NULL, &nulls[7]);
	nulls[8] = w.last_error_time == 0;
	values[8] = TimestampTzGetDatum(w.last_error_time);
	nulls[9] = w.primary_sysid == 0;
	values[9] = Int64GetDatum((int64) w.primary_sysid);
	nulls[10] = w.cycles == 0;
	values[10] = Int32GetDatum(w.last_examined);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * LSN distance as numeric, like pg_wal_lsn_diff(), never negative; also
 * for pg_slotsync.stale_slots (sync_stale.c).
 */
Datum
lsn_distance(XLogRecPtr ahead, XLogRecPtr behind)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), INT64_FORMAT,
			 (int64) (ahead >= behind ? ahead - behind : 0));
	return DirectFunctionCall3(numeric_in, CStringGetDatum(buf),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

/*
 * The summary row of failover_readiness() (see the header comment).
 */
static void
put_summary(ReturnSetInfo *rsinfo, const WorkerStatus *w, bool recent,
			int nslots, int nready, const char *laggards, XLogRecPtr max_lag,
			bool all_flushed)
{
	Datum		values[8];
	bool		nulls[8] = {true, false, false, false, false, false, false, false};
	const char *code = NULL;
	char		reason[512];

	reason[0] = '\0';
	if (!RecoveryInProgress())
	{
		code = "not_a_standby";
		strlcpy(reason, "this server is not a standby", sizeof(reason));
	}
	else if (w->last_sync == 0)
	{
		code = "never_synced";
		snprintf(reason, sizeof(reason), "slot synchronization has not completed a cycle%s%s",
				 w->last_error[0] ? ": " : "", error_for_viewer(w));
	}
	else if (w->pid != 0 && (w->phase == WORKER_PHASE_MISCONFIGURED ||
							 w->phase == WORKER_PHASE_DISCONNECTED))
	{
		code = "sync_failing";
		snprintf(reason, sizeof(reason), "slot synchronization is failing: %s",
				 error_for_viewer(w));
	}
	else if (!recent)
	{
		code = "no_recent_sync";
		snprintf(reason, sizeof(reason), "slot synchronization has not completed a cycle within pg_slotsync.stale_after%s%s",
				 w->last_error[0] ? ": " : "", error_for_viewer(w));
	}
	else if (nready < nslots)
	{
		code = "slots_not_ready";
		snprintf(reason, sizeof(reason), "%d of %d failover slots are not ready: %s",
				 nslots - nready, nslots, laggards);
	}

	values[1] = BoolGetDatum(code == NULL);
	values[2] = CStringGetTextDatum(worker_state_name(w, recent));
	values[3] = text_or_null(code, &nulls[3]);
	values[4] = text_or_null(reason, &nulls[4]);
	values[5] = lsn_distance(max_lag, 0);
	nulls[6] = w->last_sync == 0;
	values[6] = TimestampTzGetDatum(w->last_sync);
	nulls[7] = !RecoveryInProgress() || w->last_sync == 0;
	values[7] = BoolGetDatum(all_flushed);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * pg_slotsync.failover_readiness(): is this standby failover-safe, and if
 * not, why; a summary row, then a row per failover slot.
 */
Datum
pg_slotsync_failover_readiness(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkerStatus w;
	bool		recent = worker_status_recent_sync();
	SyncStatusEntry *entries;
	int			n;
	int			nready = 0;
	XLogRecPtr	max_lag = 0;
	StringInfoData laggards;
	XLogRecPtr	flushed = Max(GetWalRcvFlushRecPtr(NULL, NULL),
							  GetXLogReplayRecPtr(NULL));
	bool		all_flushed = true;

	InitMaterializedSRF(fcinfo, 0);
	worker_status_read(&w);
	entries = RecoveryInProgress() ? slot_sync_status_copy(&n) : NULL;
	if (entries == NULL)
		n = 0;
	initStringInfo(&laggards);

	for (int i = 0; i < n; i++)
	{
		SyncStatusEntry *e = &entries[i];
		ShownSlot	shown;
		Datum		values[8];
		bool		nulls[8] = {0};
		XLogRecPtr	lag = 0;
		bool		wal_flushed = e->remote_confirmed_flush <= flushed;

		shown_slot(e, recent, &w, &shown);
		if (shown.state == SYNC_STATE_READY)
			nready++;
		else
			appendStringInfo(&laggards, "%s%s (%s)", laggards.len ? ", " : "",
							 NameStr(e->name), sync_state_name(shown.state));
		if (shown.has_copy && e->remote_confirmed_flush > shown.copy_confirmed_flush)
			lag = e->remote_confirmed_flush - shown.copy_confirmed_flush;
		max_lag = Max(max_lag, lag);

		values[0] = NameGetDatum(&e->name);
		values[1] = BoolGetDatum(shown.state == SYNC_STATE_READY);
		values[2] = CStringGetTextDatum(sync_state_name(shown.state));
		values[3] = text_or_null(sync_reason_name(shown.code), &nulls[3]);
		values[4] = text_or_null(shown.reason, &nulls[4]);
		nulls[5] = !shown.has_copy;
		values[5] = lsn_distance(lag, 0);
		nulls[6] = e->last_sync == 0;
		values[6] = TimestampTzGetDatum(e->last_sync);
		values[7] = BoolGetDatum(wal_flushed);
		all_flushed = all_flushed && wal_flushed;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	put_summary(rsinfo, &w, recent, n, nready, laggards.data, max_lag,
				all_flushed);
	return (Datum) 0;
}
