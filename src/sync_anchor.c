/*-------------------------------------------------------------------------
 *
 * sync_anchor.c
 *		The anchor: a logical slot the syncing process keeps on the standby
 *		so that synced copies can start at their primary slot's own
 *		restart_lsn, and so be ready without waiting for the primary.
 *
 * Decoding from a copied restart_lsn needs, besides WAL, the logical
 * rewrite mapping files that replay writes in pg_logical/mappings, and the
 * server removes those at every restartpoint below the oldest local logical
 * slot's restart_lsn, or all of them when there is no local logical slot.
 * So a copy may only start at an LSN from which some slot of ours has
 * protected everything since: sync_protected_from(), the anchor's
 * restart_lsn.
 *
 * The anchor (SLOT_SYNC_ANCHOR_NAME, of template1, which cannot be dropped,
 * marked SLOT_MARKER_ANCHOR) is created by the syncing process when it
 * starts, at the replay position of that moment, and moved forward as the
 * slots it covers move: never past the replay position read before the
 * primary listed its slots (so every slot created on the primary after that
 * read lies above it), and never past the restart_lsn of a remote slot at
 * or above it, whose copy may still have to start there
 * (sync_anchor_target()).  Remote slots below the anchor were older than
 * it; their copies wait, and do not hold the anchor back.
 *
 * Like not-ready copies it is persistent and inactive between cycles (an
 * active slot that a restartpoint invalidates gets its holder terminated),
 * it never decodes and holds no catalog_xmin, and it is dropped at
 * promotion and when sync stops.  Only the anchor counts as protection:
 * a logical slot that sync did not create (say, a leftover of when this
 * server was a primary) says nothing about which mapping files were kept
 * here, and copies only ever start at or above the anchor anyway.  If the
 * anchor is invalidated (max_slot_wal_keep_size on this standby), it has
 * not protected anything since and starts afresh.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlogrecovery.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "slot_copy.h"
#include "slot_marker.h"
#include "slot_sync.h"
#include "utils/builtins.h"

/*
 * The anchor, if there is one and it is ours (by its marker); a user may
 * drop it, or a restartpoint invalidate it, so we always look.
 */
static bool
anchor_copy(SlotCopy *anchor)
{
	SlotMarker	marker;

	if (!slot_copy_named(SLOT_SYNC_ANCHOR_NAME, anchor))
		return false;
	return slot_marker_examine(SLOT_SYNC_ANCHOR_NAME, &marker) ==
		SLOT_MARKER_PRESENT && (marker.flags & SLOT_MARKER_ANCHOR) != 0;
}

static void
anchor_create(XLogRecPtr at)
{
	SlotMarker	marker = {.flags = SLOT_MARKER_ANCHOR};

	ReplicationSlotCreate(SLOT_SYNC_ANCHOR_NAME, true, RS_EPHEMERAL, false);

	/*
	 * A logical slot is one with a database; the anchor never decodes, so
	 * any database that cannot be dropped will do (the manual function's
	 * backend may be connected to another one).  It carries the placeholder
	 * plugin of not-ready copies: nobody can decode from it either, and
	 * without the library both are found by that plugin.
	 */
	SpinLockAcquire(&MyReplicationSlot->mutex);
	MyReplicationSlot->data.database = Template1DbOid;
	namestrcpy(&MyReplicationSlot->data.plugin, SLOT_SYNC_NOT_READY_PLUGIN);
	SpinLockRelease(&MyReplicationSlot->mutex);
	sync_reserve_wal(at);
	slot_marker_write_owned(SLOT_SYNC_ANCHOR_NAME, &marker);
	ReplicationSlotPersist();
	ReplicationSlotRelease();
}

/*
 * Create or move forward the anchor slot.  "upto" is how far it may move
 * (sync_anchor_target()).
 */
void
sync_anchor_ensure(XLogRecPtr upto)
{
	XLogRecPtr	replay = GetXLogReplayRecPtr(NULL);
	SlotCopy	anchor;

	if (XLogRecPtrIsInvalid(upto) || upto > replay)
		upto = replay;

	if (!anchor_copy(&anchor))
	{
		/* someone else's slot of that name: do without an anchor */
		if (slot_copy_named(SLOT_SYNC_ANCHOR_NAME, &anchor))
			return;
		anchor_create(replay);
		return;
	}

	if (slot_copy_is_invalidated(&anchor))
	{
		ReplicationSlotDrop(SLOT_SYNC_ANCHOR_NAME, true);
		anchor_create(replay);
		return;
	}

	if (upto <= anchor.restart_lsn)
		return;

	ReplicationSlotAcquire(SLOT_SYNC_ANCHOR_NAME, true);
	SpinLockAcquire(&MyReplicationSlot->mutex);
	MyReplicationSlot->data.restart_lsn = upto;
	SpinLockRelease(&MyReplicationSlot->mutex);
	/* on disk at the next checkpoint: an older value only keeps more */
	ReplicationSlotMarkDirty();
	ReplicationSlotsComputeRequiredLSN();
	ReplicationSlotRelease();
}

/*
 * How far the anchor may move: up to "replay_before" (the replay position
 * read before the primary listed its slots), but not past any valid remote
 * restart_lsn at or above the anchor's current position "floor".
 */
XLogRecPtr
sync_anchor_target(XLogRecPtr floor, XLogRecPtr replay_before,
				   const RemoteSlot *slots, int nslots)
{
	XLogRecPtr	upto = replay_before;

	for (int i = 0; i < nslots; i++)
	{
		XLogRecPtr	r = slots[i].restart_lsn;

		if (!XLogRecPtrIsInvalid(r) && !slots[i].invalidated &&
			(XLogRecPtrIsInvalid(floor) || r >= floor) && r < upto)
			upto = r;
	}
	return upto;
}

void
sync_anchor_drop(bool log_it)
{
	SlotCopy	anchor;

	if (!anchor_copy(&anchor))
		return;
	ReplicationSlotDrop(SLOT_SYNC_ANCHOR_NAME, true);
	if (log_it)
		ereport(LOG,
				(errmsg("dropped replication slot \"%s\" of database with OID %u",
						SLOT_SYNC_ANCHOR_NAME, anchor.database)));
}

/*
 * The lowest LSN from which our slots have kept all WAL and decoding files
 * continuously: the anchor's restart_lsn; invalid without an anchor.
 */
XLogRecPtr
sync_protected_from(void)
{
	SlotCopy	anchor;

	if (!anchor_copy(&anchor) || slot_copy_is_invalidated(&anchor))
		return InvalidXLogRecPtr;
	return anchor.restart_lsn;
}
