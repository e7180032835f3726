/*-------------------------------------------------------------------------
 *
 * standby_gate_status.c
 *		pg_slotsync.gate_status(): the gate's state, for monitoring on the
 *		primary.
 *
 * One row:
 *
 *	configured			pg_slotsync.synchronized_standby_slots is not empty
 *						(as this session sees it)
 *	mechanisms			the ways of attaching to consumers that passed the
 *						self-check at startup (walsender, sql,
 *						shutdown_detection; see standby_gate.c)
 *	self_check			what failed in that check, NULL if nothing did
 *	attached, refused	consumers the gate attached to, and consumers a
 *						guard refused, since the server started
 *	waiting_walsenders,	consumers waiting for the standbys now
 *	waiting_backends
 *	waiting_slots		the slots they wait on, sorted, each once
 *	oldest_wait_start	when the longest current wait began
 *	failover_slot_moves	failover_slot_moves_read() (failover_slot_moves.h):
 *						how often a failover slot was reported moved
 *
 * Waiters come from the registry in shared memory (standby_gate_wait.c).
 * An entry counts only while its slot is still held by its pid: a consumer
 * that errored out of a wait may have left its entry behind.  We copy each
 * entry under its spinlock, then check the slots under
 * ReplicationSlotControlLock; the answer is a snapshot, as any view of
 * other processes is.
 *
 * Anyone may call it, as anyone may read pg_replication_slots: it shows
 * slot names and counts, no pids.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "failover_slot_moves.h"
#include "fmgr.h"
#include "funcapi.h"
#include "standby_gate.h"
#include "standby_gate_internal.h"
#include "storage/lwlock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_slotsync_gate_status);

#define GATE_STATUS_COLS	10

/* What the current waiters add up to. */
typedef struct WaiterSummary
{
	int			walsenders;
	int			backends;
	int			nslots;
	NameData   *slots;			/* sorted, distinct */
	TimestampTz oldest;			/* 0 if nobody waits */
} WaiterSummary;

static int
name_cmp(const void *a, const void *b)
{
	const NameData *name_a = (const NameData *) a;
	const NameData *name_b = (const NameData *) b;

	return strcmp(NameStr(*name_a), NameStr(*name_b));
}

/*
 * Is the slot named in "waiter" held by the waiter's pid?  Caller holds
 * ReplicationSlotControlLock.
 */
static bool
waiter_current(const GateWaiter *waiter)
{
	ReplicationSlot *slot = SearchNamedReplicationSlot(NameStr(waiter->slot),
													   false);
	pid_t		active_pid = 0;

	if (slot == NULL)
		return false;
	SpinLockAcquire(&slot->mutex);
	active_pid = slot->active_pid;
	SpinLockRelease(&slot->mutex);
	return active_pid == waiter->pid;
}

static void
summarize_waiters(WaiterSummary *sum)
{
	GateWaiter *copies = palloc(sizeof(GateWaiter) * GateState->nwaiters);
	int			ncopies = 0;

	memset(sum, 0, sizeof(*sum));
	for (int i = 0; i < GateState->nwaiters; i++)
	{
		GateWaiter *waiter = &GateState->waiters[i];

		SpinLockAcquire(&waiter->mutex);
		if (waiter->pid != 0)
			copies[ncopies++] = *waiter;
		SpinLockRelease(&waiter->mutex);
	}

	sum->slots = palloc(sizeof(NameData) * Max(ncopies, 1));
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < ncopies; i++)
	{
		if (!waiter_current(&copies[i]))
			continue;
		if (copies[i].walsender)
			sum->walsenders++;
		else
			sum->backends++;
		sum->slots[sum->nslots++] = copies[i].slot;
		if (sum->oldest == 0 || copies[i].since < sum->oldest)
			sum->oldest = copies[i].since;
	}
	LWLockRelease(ReplicationSlotControlLock);

	/* sort and keep each name once */
	if (sum->nslots > 1)
	{
		int			kept = 1;

		qsort(sum->slots, sum->nslots, sizeof(NameData), name_cmp);
		for (int i = 1; i < sum->nslots; i++)
		{
			if (strcmp(NameStr(sum->slots[i]),
					   NameStr(sum->slots[kept - 1])) != 0)
				sum->slots[kept++] = sum->slots[i];
		}
		sum->nslots = kept;
	}
	pfree(copies);
}

static Datum
mechanisms_array(uint32 mechanisms)
{
	Datum		names[lengthof(gate_mechanism_names)];
	int			n = 0;

	for (int i = 0; i < lengthof(gate_mechanism_names); i++)
		if (mechanisms & gate_mechanism_names[i].mask)
			names[n++] = CStringGetTextDatum(gate_mechanism_names[i].name);
	return PointerGetDatum(construct_array(names, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

static Datum
slots_array(const WaiterSummary *sum)
{
	Datum	   *names = palloc(sizeof(Datum) * Max(sum->nslots, 1));

	for (int i = 0; i < sum->nslots; i++)
		names[i] = NameGetDatum(&sum->slots[i]);
	return PointerGetDatum(construct_array(names, sum->nslots, NAMEOID,
										   NAMEDATALEN, false, TYPALIGN_CHAR));
}

/*
 * pg_slotsync.gate_status() RETURNS record
 */
Datum
pg_slotsync_gate_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[GATE_STATUS_COLS];
	bool		nulls[GATE_STATUS_COLS];
	WaiterSummary sum;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (GateState == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_slotsync must be loaded via \"shared_preload_libraries\"")));

	summarize_waiters(&sum);
	memset(nulls, 0, sizeof(nulls));

	values[0] = BoolGetDatum(standby_slots_config != NULL);
	values[1] = mechanisms_array(GateState->mechanisms);
	if (GateState->self_check_failure[0] != '\0')
		values[2] = CStringGetTextDatum(GateState->self_check_failure);
	else
		nulls[2] = true;
	values[3] = Int64GetDatum((int64) pg_atomic_read_u64(&GateState->attached));
	values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&GateState->refused));
	values[5] = Int32GetDatum(sum.walsenders);
	values[6] = Int32GetDatum(sum.backends);
	values[7] = slots_array(&sum);
	if (sum.oldest != 0)
		values[8] = TimestampTzGetDatum(sum.oldest);
	else
		nulls[8] = true;
	values[9] = Int64GetDatum((int64) failover_slot_moves_read());

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
