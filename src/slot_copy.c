/*-------------------------------------------------------------------------
 *
 * slot_copy.c
 *		Copies of the server's replication slots, for code that must look at
 *		them without holding locks while it reads files or talks to a peer.
 *
 * Every slot lives in ReplicationSlotCtl, in shared memory.  Slots come and
 * go under ReplicationSlotControlLock (exclusive), and a slot's fields
 * change under its own spinlock.  So a copy taken with the lock held
 * shared, each slot's fields under its spinlock, is a consistent list of the
 * slots that existed at one moment, and each entry is a consistent picture
 * of its slot.  Callers then read marker files, query the catalogs, compare
 * or sort at leisure, knowing that the real slot may have moved or vanished
 * since: whatever they decide from a copy, they check again where it
 * matters (acquiring the slot, or under ReplicationSlotAllocationLock).
 *
 * This is the only place that walks the slot array; the whole extension
 * goes through these functions.
 *
 * Finding a slot by name: the server's own search walks the array, which
 * for a standby deciding thousands of copies in a cycle makes that cycle
 * quadratic.  A caller that looks up the same names again and again (the
 * sync session, for every slot it decides) keeps where it last found each
 * one, and slot_copy_named_hinted() checks that entry (in use, same name,
 * under the same lock) before walking the array: a stale hint costs one
 * comparison and can never name the wrong slot.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "replication/slot.h"
#include "slot_copy.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

/* Copy one slot that is in use; caller holds ReplicationSlotControlLock. */
static void
copy_one(ReplicationSlot *s, SlotCopy *out)
{
	SpinLockAcquire(&s->mutex);
	out->name = s->data.name;
	out->plugin = s->data.plugin;
	out->database = s->data.database;
	out->is_logical = SlotIsLogical(s);
	out->persistency = s->data.persistency;
	out->active_pid = s->active_pid;
	out->two_phase = s->data.two_phase;
	out->two_phase_at = s->data.two_phase_at;
	out->restart_lsn = s->data.restart_lsn;
	out->confirmed_flush = s->data.confirmed_flush;
	out->invalidated_at = s->data.invalidated_at;
	out->catalog_xmin = s->data.catalog_xmin;
	SpinLockRelease(&s->mutex);
}

/*
 * Copy every slot in use into "out", which has room for
 * max_replication_slots entries; returns how many.
 */
int
slot_copy_all(SlotCopy *out)
{
	int			n = 0;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];

		if (s->in_use)
			copy_one(s, &out[n++]);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return n;
}

/* The same, into a palloc'd array. */
SlotCopy *
slot_copy_all_palloc(int *count)
{
	SlotCopy   *slots = palloc(sizeof(SlotCopy) * Max(max_replication_slots, 1));

	*count = slot_copy_all(slots);
	return slots;
}

/*
 * Copy the slot at index "i" of the slot array (0 .. max_replication_slots
 * - 1); false if that entry is not in use.
 */
bool
slot_copy_at(int i, SlotCopy *out)
{
	ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];
	bool		in_use;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	in_use = s->in_use;
	if (in_use)
		copy_one(s, out);
	LWLockRelease(ReplicationSlotControlLock);
	return in_use;
}

/* Copy the named slot; false if there is none. */
bool
slot_copy_named(const char *name, SlotCopy *out)
{
	return slot_copy_named_hinted(name, out, NULL);
}

/*
 * The same, looking first at index *hint of the slot array, and setting
 * *hint to where the slot is (-1 if nowhere); see the header comment.
 */
bool
slot_copy_named_hinted(const char *name, SlotCopy *out, int *hint)
{
	ReplicationSlot *s = NULL;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	if (hint != NULL && *hint >= 0 && *hint < max_replication_slots)
	{
		s = &ReplicationSlotCtl->replication_slots[*hint];
		if (!s->in_use || strcmp(NameStr(s->data.name), name) != 0)
			s = NULL;
	}
	if (s == NULL)
		s = SearchNamedReplicationSlot(name, false);
	if (s != NULL && out != NULL)
		copy_one(s, out);
	LWLockRelease(ReplicationSlotControlLock);
	if (hint != NULL)
		*hint = s ? (int) (s - ReplicationSlotCtl->replication_slots) : -1;
	return s != NULL;
}

/*
 * PostgreSQL 15 marks an invalidated slot by clearing restart_lsn and
 * keeping where it was in invalidated_at (see slotfuncs.c).
 */
bool
slot_copy_is_invalidated(const SlotCopy *slot)
{
	return XLogRecPtrIsInvalid(slot->restart_lsn) &&
		!XLogRecPtrIsInvalid(slot->invalidated_at);
}

/*
 * How many logical slots the server has that are not invalidated; cheap
 * enough to ask every few milliseconds (no copy is made).  The sync cycle
 * looks at every copy again when this drops: a copy was dropped, or this
 * server's own checkpoint invalidated it.
 */
int
slot_count_live_logical(void)
{
	int			n = 0;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];
		bool		invalidated;

		if (!s->in_use || !SlotIsLogical(s))
			continue;
		SpinLockAcquire(&s->mutex);
		invalidated = XLogRecPtrIsInvalid(s->data.restart_lsn) &&
			!XLogRecPtrIsInvalid(s->data.invalidated_at);
		SpinLockRelease(&s->mutex);
		if (!invalidated)
			n++;
	}
	LWLockRelease(ReplicationSlotControlLock);
	return n;
}

/* How many slots are in use. */
int
slot_count_in_use(void)
{
	int			n = 0;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < max_replication_slots; i++)
		if (ReplicationSlotCtl->replication_slots[i].in_use)
			n++;
	LWLockRelease(ReplicationSlotControlLock);
	return n;
}
