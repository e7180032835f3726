/*-------------------------------------------------------------------------
 *
 * standby_gate.c
 *		The gate of pg_slotsync.synchronized_standby_slots: holding back
 *		consumers of failover slots until the listed standbys have the WAL
 *		(PostgreSQL 17's synchronized_standby_slots, on PostgreSQL 15).
 *		This file: its shared memory, the self-check at startup and its log
 *		line, and installing the hooks.
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
 * not empty: logical walsenders streaming such a slot, and the SQL
 * functions pg_logical_slot_get_changes/peek_changes (text and binary) and
 * pg_replication_slot_advance.  Creating or copying a slot does not.
 *
 * How, in one sentence: PostgreSQL 15 has no hook for this, so we gate the
 * one thing every consumer does before it can see anything, reading WAL, by
 * replacing the page_read callback of its decoding context's reader
 * (standby_gate_read.c); attaching to walsenders and to the SQL functions is
 * in standby_gate_walsender.c and standby_gate_sql.c, each with a guard
 * that refuses a consumer of a failover slot the gate could not attach to.
 * The gate never fails open without saying so: a consumer it cannot hold
 * back is refused, with a message.
 *
 * The self-check: at startup (in the postmaster, when our shared memory is
 * created) we check every internal layout the gate relies on that can be
 * checked without a consumer:
 *
 *	- the decoding context search (standby_gate_context.c) finds a context
 *	  built the way core builds one: the walsender and SQL mechanisms need it;
 *	- libpq's method table is complete: the walsender mechanism replaces
 *	  entries of a copy of it;
 *	- our mirror of the ProcSignal array has the real one's size: walsender
 *	  shutdown detection needs it (standby_gate_shutdown.c).
 *
 * One log line then says whether the gate is active (the setting is set)
 * and which mechanisms are ready, at LOG, or at WARNING with what failed
 * and what that means.  What can only be checked on a consumer (that a
 * walsender sends CopyBothResponse through libpq, that the SQL functions
 * invalidate the caches, that a context is found) is checked at first use,
 * by the guards.  pg_slotsync.gate_status() reports the same, with counts
 * of consumers attached and refused, and who waits now.
 *
 * Shared memory: GateShared (standby_gate_internal.h), sized and created
 * through pg_slotsync.c's single shmem_request/shmem_startup pair.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "libpq/libpq.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "standby_gate.h"
#include "standby_gate_internal.h"
#include "storage/shmem.h"
#include "utils/guc.h"

GateShared *GateState = NULL;

int			gate_debug_skip_attach = GATE_SKIP_NONE;

static const struct config_enum_entry skip_attach_options[] = {
	{"none", GATE_SKIP_NONE, false},
	{"walsender", GATE_SKIP_WALSENDER, false},
	{"sql", GATE_SKIP_SQL, false},
	{"sql_reader", GATE_SKIP_SQL_READER, false},
	{"sql_callback", GATE_SKIP_SQL_CALLBACK, false},
	{NULL, 0, false}
};

Size
standby_gate_shmem_size(void)
{
	return add_size(offsetof(GateShared, waiters),
					mul_size(MaxBackends, sizeof(GateWaiter)));
}

void
gate_count_attached(void)
{
	if (GateState != NULL)
		pg_atomic_fetch_add_u64(&GateState->attached, 1);
}

void
gate_count_refused(void)
{
	if (GateState != NULL)
		pg_atomic_fetch_add_u64(&GateState->refused, 1);
}

/* Names of the mechanisms, in the log line and in gate_status() */
const GateMechanismName gate_mechanism_names[3] = {
	{GATE_MECH_WALSENDER, "walsender"},
	{GATE_MECH_SQL, "sql"},
	{GATE_MECH_SHUTDOWN, "shutdown_detection"}
};

static bool
comm_methods_complete(void)
{
	const PQcommMethods *m = PqCommMethods;

	return m != NULL && m->comm_reset != NULL && m->flush != NULL &&
		m->flush_if_writable != NULL && m->is_send_pending != NULL &&
		m->putmessage != NULL && m->putmessage_noblock != NULL;
}

static void
append_failure(StringInfo failures, const char *failure)
{
	if (failures->len > 0)
		appendStringInfoChar(failures, ' ');
	appendStringInfoString(failures, failure);
}

/*
 * Check the layouts, record the result in shared memory and say it in one
 * line.  In the postmaster, once per creation of shared memory.
 */
static void
gate_self_check(void)
{
	StringInfoData failures;
	StringInfoData names;
	uint32		mechanisms = 0;
	bool		context_ok = gate_context_self_test();

	initStringInfo(&failures);
	if (!context_ok)
		append_failure(&failures, "A logical decoding context built as core builds one was not found in memory.");
	else
	{
		mechanisms |= GATE_MECH_SQL;
		if (comm_methods_complete())
			mechanisms |= GATE_MECH_WALSENDER;
		else
			append_failure(&failures, "libpq's method table is incomplete.");
	}
	if (gate_procsignal_layout_ok())
		mechanisms |= GATE_MECH_SHUTDOWN;
	else
		append_failure(&failures, "The ProcSignal array does not have PostgreSQL 15's layout.");

	GateState->mechanisms = mechanisms;
	strlcpy(GateState->self_check_failure, failures.data,
			sizeof(GateState->self_check_failure));

	initStringInfo(&names);
	for (int i = 0; i < lengthof(gate_mechanism_names); i++)
	{
		if (!(mechanisms & gate_mechanism_names[i].mask))
			continue;
		if (names.len > 0)
			appendStringInfoString(&names, ", ");
		appendStringInfoString(&names, gate_mechanism_names[i].name);
	}

	ereport(failures.len > 0 ? WARNING : LOG,
			(errmsg("pg_slotsync standby gate %s; mechanisms ready: %s",
					standby_slots_config != NULL ? "active" : "inactive (parameter \"" STANDBY_SLOTS_GUC_NAME "\" is empty)",
					names.len > 0 ? names.data : "none"),
			 failures.len > 0 ?
			 errdetail("%s While parameter \"%s\" is set, consumers of failover slots the gate cannot attach to are refused, and a walsender held back at shutdown waits for its client to disconnect.",
					   failures.data, STANDBY_SLOTS_GUC_NAME) : 0));
	pfree(failures.data);
	pfree(names.data);
}

/*
 * Called from pg_slotsync.c's shmem_startup hook, with AddinShmemInitLock
 * held.
 */
void
standby_gate_shmem_init(void)
{
	bool		found;

	GateState = ShmemInitStruct("pg_slotsync standby gate",
								standby_gate_shmem_size(), &found);
	if (found)
		return;

	ConditionVariableInit(&GateState->standby_confirmed_cv);
	GateState->mechanisms = 0;
	GateState->self_check_failure[0] = '\0';
	pg_atomic_init_u64(&GateState->attached, 0);
	pg_atomic_init_u64(&GateState->refused, 0);
	GateState->nwaiters = MaxBackends;
	for (int i = 0; i < MaxBackends; i++)
	{
		SpinLockInit(&GateState->waiters[i].mutex);
		GateState->waiters[i].pid = 0;
	}

	if (!IsUnderPostmaster)
		gate_self_check();
}

/*
 * Called from _PG_init: the developer setting, and the hooks through which
 * we meet walsenders and the SQL decoding functions.
 */
void
standby_gate_install_hooks(void)
{
	DefineCustomEnumVariable("pg_slotsync.debug_gate_skip_attach",
							 "Developer setting: makes one way the gate attaches to consumers fail, to test the guard behind it.",
							 "For tests only. \"none\" (the default) in production.",
							 &gate_debug_skip_attach,
							 GATE_SKIP_NONE,
							 skip_attach_options,
							 PGC_SUSET,
							 GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);

	gate_walsender_install();
	gate_sql_install();
}
