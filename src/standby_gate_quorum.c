/*-------------------------------------------------------------------------
 *
 * standby_gate_quorum.c
 *		Have the standbys listed in pg_slotsync.synchronized_standby_slots
 *		confirmed a WAL position?  And if not, why not?
 *
 * A standby confirms WAL through its physical slot on the primary: the
 * walsender serving it moves the slot's restart_lsn to the flush position
 * the standby reports.  A position is confirmed when the listed slots
 * satisfy the setting's rule (see standby_slots_guc.c): for FIRST n, the
 * first n usable slots in list order all have restart_lsn at or past it;
 * for ANY n, at least n slots do.  A plain list is FIRST n over all of
 * them, which is PostgreSQL 17's rule.
 *
 * Each listed slot is in one of these states, read from shared memory under
 * ReplicationSlotControlLock (so slots cannot come or go meanwhile) and the
 * slot's spinlock:
 *
 *	missing			no slot of that name
 *	logical			a logical slot, which a standby cannot be behind
 *	invalidated		the slot lost its WAL (max_slot_wal_keep_size); in
 *					PostgreSQL 15 that is restart_lsn invalid and
 *					invalidated_at set
 *	ok				a physical slot; it may be active (a standby is
 *					connected, active_pid set) or not, and at any position
 *
 * A slot is usable if it is ok and either active or already past the
 * position.  "Problem" slots are the others: missing, logical, invalidated,
 * or inactive and behind.  Problems are reported only when they are why we
 * wait, that is when fewer than n slots are usable: with ANY 1 (a, b) and a
 * down, consumers follow b without a word about a.  For a plain list any
 * problem slot blocks, so every problem is reported, as in core.
 *
 * Reports use core's messages with the setting's name replaced.  While a
 * walsender is stopping they are ERRORs (as in core: a walsender must not
 * wait at shutdown for a standby that cannot come), otherwise WARNINGs, at
 * most one a minute per slot and process, not one per check as in core.
 *
 * The answer is cached per process: once a position is confirmed, the
 * lowest restart_lsn that counted for it (the n-th highest for ANY) is
 * confirmed too, and everything below it needs no look at the slots.  A
 * change of the setting empties the cache.  This is what keeps the gate
 * cheap when standbys keep up: most checks are one comparison.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pg_slotsync.h"
#include "replication/slot.h"
#include "standby_gate.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

/* Listed slot states (StandbySlot.state) */
#define SS_OK			0
#define SS_MISSING		1
#define SS_LOGICAL		2
#define SS_INVALIDATED	3

/* At most one warning per slot and process in this many milliseconds. */
#define WARNING_INTERVAL_MS		60000

/* Everything up to here is confirmed, for this generation of the setting. */
static XLogRecPtr confirmed_upto = InvalidXLogRecPtr;
static uint64 confirmed_generation = 0;

/*
 * Fill in the state, activity and restart_lsn of every listed slot.
 */
static void
read_listed_slots(StandbySlotsConfig *config)
{
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < config->nslots; i++)
	{
		StandbySlot *ss = &config->slots[i];
		ReplicationSlot *slot;
		XLogRecPtr	invalidated_at;

		ss->active = false;
		ss->restart_lsn = InvalidXLogRecPtr;

		slot = SearchNamedReplicationSlot(NameStr(ss->name), false);
		if (slot == NULL)
		{
			ss->state = SS_MISSING;
			continue;
		}

		SpinLockAcquire(&slot->mutex);
		ss->state = SlotIsLogical(slot) ? SS_LOGICAL : SS_OK;
		ss->restart_lsn = slot->data.restart_lsn;
		invalidated_at = slot->data.invalidated_at;
		ss->active = slot->active_pid != 0;
		SpinLockRelease(&slot->mutex);

		if (ss->state == SS_OK && XLogRecPtrIsInvalid(ss->restart_lsn) &&
			!XLogRecPtrIsInvalid(invalidated_at))
			ss->state = SS_INVALIDATED;
	}
	LWLockRelease(ReplicationSlotControlLock);
}

static bool
slot_has(const StandbySlot *ss, XLogRecPtr target)
{
	return ss->state == SS_OK && !XLogRecPtrIsInvalid(ss->restart_lsn) &&
		ss->restart_lsn >= target;
}

static bool
slot_usable(const StandbySlot *ss, XLogRecPtr target)
{
	return ss->state == SS_OK && (ss->active || slot_has(ss, target));
}

/*
 * Say why we wait on this slot.  Returns only if elevel < ERROR.
 */
static void
report_problem(StandbySlot *ss, int elevel)
{
	const char *name = NameStr(ss->name);

	if (elevel < ERROR)
	{
		TimestampTz now = GetCurrentTimestamp();

		if (ss->last_warning != 0 &&
			!TimestampDifferenceExceeds(ss->last_warning, now,
										WARNING_INTERVAL_MS))
			return;
		ss->last_warning = now;
	}

	switch (ss->state)
	{
		case SS_MISSING:
			ereport(elevel,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("replication slot \"%s\" specified in parameter \"%s\" does not exist",
							name, STANDBY_SLOTS_GUC_NAME),
					 errdetail("Logical replication is waiting on the standby associated with replication slot \"%s\".",
							   name),
					 errhint("Create the replication slot \"%s\" or amend parameter \"%s\".",
							 name, STANDBY_SLOTS_GUC_NAME)));
			break;
		case SS_LOGICAL:
			ereport(elevel,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cannot specify logical replication slot \"%s\" in parameter \"%s\"",
							name, STANDBY_SLOTS_GUC_NAME),
					 errdetail("Logical replication is waiting for correction on replication slot \"%s\".",
							   name),
					 errhint("Remove the logical replication slot \"%s\" from parameter \"%s\".",
							 name, STANDBY_SLOTS_GUC_NAME)));
			break;
		case SS_INVALIDATED:
			ereport(elevel,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("physical replication slot \"%s\" specified in parameter \"%s\" has been invalidated",
							name, STANDBY_SLOTS_GUC_NAME),
					 errdetail("Logical replication is waiting on the standby associated with replication slot \"%s\".",
							   name),
					 errhint("Drop and recreate the replication slot \"%s\", or amend parameter \"%s\".",
							 name, STANDBY_SLOTS_GUC_NAME)));
			break;
		default:
			ereport(elevel,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("replication slot \"%s\" specified in parameter \"%s\" does not have active_pid",
							name, STANDBY_SLOTS_GUC_NAME),
					 errdetail("Logical replication is waiting on the standby associated with replication slot \"%s\".",
							   name),
					 errhint("Start the standby associated with the replication slot \"%s\", or amend parameter \"%s\".",
							 name, STANDBY_SLOTS_GUC_NAME)));
			break;
	}
}

/*
 * FIRST n: the first n usable slots in list order must all have "target";
 * then everything up to the lowest restart_lsn among them is confirmed
 * (*upto).
 */
static bool
first_n_confirmed(StandbySlotsConfig *config, XLogRecPtr target, int usable,
				  XLogRecPtr *upto)
{
	bool		confirmed = usable >= config->num_required;
	int			chosen = 0;

	for (int i = 0; i < config->nslots && chosen < config->num_required; i++)
	{
		StandbySlot *ss = &config->slots[i];

		if (!slot_usable(ss, target))
			continue;
		chosen++;
		if (!slot_has(ss, target))
			confirmed = false;
		else if (XLogRecPtrIsInvalid(*upto) || ss->restart_lsn < *upto)
			*upto = ss->restart_lsn;
	}
	return confirmed;
}

/*
 * ANY n: any n slots must have "target"; then everything up to the n-th
 * highest restart_lsn among them is confirmed (*upto).
 */
static bool
any_n_confirmed(StandbySlotsConfig *config, XLogRecPtr target,
				XLogRecPtr *upto)
{
	for (int i = 0; i < config->nslots; i++)
	{
		StandbySlot *ss = &config->slots[i];
		int			higher = 0;
		int			as_high = 0;

		if (!slot_has(ss, target))
			continue;
		for (int j = 0; j < config->nslots; j++)
		{
			if (!slot_has(&config->slots[j], target))
				continue;
			if (config->slots[j].restart_lsn > ss->restart_lsn)
				higher++;
			else if (config->slots[j].restart_lsn == ss->restart_lsn)
				as_high++;
		}
		if (higher < config->num_required &&
			higher + as_high >= config->num_required)
		{
			*upto = ss->restart_lsn;
			return true;
		}
	}
	return false;
}

/*
 * Have the listed standbys confirmed "target"?  If not, and if problem slots
 * are the reason, report them at elevel (ERROR does not return).  Without a
 * list, everything is confirmed.
 */
bool
standby_slots_confirmed(XLogRecPtr target, int elevel)
{
	StandbySlotsConfig *config = standby_slots_config;
	int			usable = 0;
	bool		confirmed;
	XLogRecPtr	upto = InvalidXLogRecPtr;

	if (config == NULL)
		return true;

	if (confirmed_generation != standby_slots_generation)
	{
		confirmed_generation = standby_slots_generation;
		confirmed_upto = InvalidXLogRecPtr;
	}
	if (!XLogRecPtrIsInvalid(confirmed_upto) && confirmed_upto >= target)
		return true;

	read_listed_slots(config);

	for (int i = 0; i < config->nslots; i++)
		if (slot_usable(&config->slots[i], target))
			usable++;

	if (config->method == STANDBY_SLOTS_FIRST)
		confirmed = first_n_confirmed(config, target, usable, &upto);
	else
		confirmed = any_n_confirmed(config, target, &upto);

	if (confirmed)
	{
		if (XLogRecPtrIsInvalid(confirmed_upto) || upto > confirmed_upto)
			confirmed_upto = upto;
		return true;
	}

	if (usable < config->num_required)
	{
		for (int i = 0; i < config->nslots; i++)
			if (!slot_usable(&config->slots[i], target))
				report_problem(&config->slots[i], elevel);
	}
	return false;
}

/*
 * Everything up to the returned position is confirmed (Invalid if nothing
 * is known to be).  Valid after standby_slots_confirmed() returned true.
 */
XLogRecPtr
standby_slots_confirmed_upto(void)
{
	if (confirmed_generation != standby_slots_generation)
		return InvalidXLogRecPtr;
	return confirmed_upto;
}
