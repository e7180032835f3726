/*-------------------------------------------------------------------------
 *
 * sync_apply.c
 *		Side effects of slot synchronization on the standby: creating,
 *		advancing, invalidating and dropping synced slots, installing the
 *		primary's serialized snapshots, and the anchor slot.
 *
 * What is decided is in sync_decide.c; this file only carries it out, with
 * the locking and ordering the server's own slot code uses.
 *
 * Synced slots that are not ready yet.  PostgreSQL 17 keeps them as
 * temporary slots owned by its worker.  A temporary slot stays "active" for
 * as long as its owner lives, and replaying DROP DATABASE on a standby fails
 * (taking the startup process, and so the standby, down) when an active slot
 * of that database exists; core's own comment calls it unlikely, but a slot
 * that never becomes ready on an idle primary makes it likely.  Ours are
 * persistent slots instead, inactive between cycles, marked "synced but not
 * ready" in our marker and carrying a placeholder output plugin
 * (SLOT_SYNC_NOT_READY_PLUGIN) so that nobody can decode from one: after a
 * promotion that raced with their removal, a consumer gets an error, never
 * a slot that silently skips changes.  The worker drops them on promotion
 * and when sync is turned off; so does the launcher, should the worker be
 * gone.  Sync-ready slots get the real plugin, then the "ready" marker.
 *
 * The anchor.  Decoding from a copied restart_lsn needs, besides WAL, the
 * logical rewrite mapping files that replay writes in pg_logical/mappings,
 * and the server removes those at every restartpoint below the oldest local
 * logical slot's restart_lsn, or all of them when there is no local logical
 * slot.  So a copy may only start at an LSN from which some local logical
 * slot has protected everything since: sync_protected_from().  The anchor
 * is a logical slot (of template1, which cannot be dropped) that the
 * syncing process creates when it starts, at the replay position of that
 * moment, and moves forward as the slots it covers move.  Like not-ready
 * copies it is persistent and inactive between cycles (an active slot that a
 * restartpoint invalidates gets its holder terminated), and it is dropped
 * at promotion and when sync stops.  Every failover slot created on the
 * primary while we run has
 * its restart_lsn above it, so it can be copied at its own restart_lsn and
 * be ready at once, without waiting for activity on the primary.  (Core
 * reserves from the standby's redo pointer and waits for the primary's slot
 * to pass it.)  The anchor never decodes and holds no catalog_xmin.
 *
 * Ordering.  A new restart_lsn or catalog_xmin is written to the slot's
 * state file before the server relies on it: the file is saved first, and
 * only then are effective_catalog_xmin raised and the WAL and xmin horizons
 * recomputed, as logical.c does for a decoding slot.  WAL is reserved under
 * ReplicationSlotAllocationLock so that a concurrent restartpoint either
 * sees the reservation or removed nothing we need (checked afterwards).
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogrecovery.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "replication/slot.h"
#include "replication/walreceiver.h"
#include "slot_marker.h"
#include "slot_sync.h"
#include "storage/fd.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

/*
 * Is there an anchor, ours by its marker?  Asked of the slots themselves,
 * not remembered: a user may drop it, or a restartpoint invalidate it.
 */
static bool
anchor_exists(void)
{
	SlotMarker	marker;

	if (SearchNamedReplicationSlot(SLOT_SYNC_ANCHOR_NAME, true) == NULL)
		return false;
	slot_marker_read(SLOT_SYNC_ANCHOR_NAME, &marker);
	return (marker.flags & SLOT_MARKER_ANCHOR) != 0;
}

/*
 * Set the restart_lsn of the slot we hold and make sure the WAL from there
 * is still present and now reserved.
 */
static void
reserve_wal_at(XLogRecPtr lsn)
{
	ReplicationSlot *slot = MyReplicationSlot;
	XLogSegNo	segno;

	LWLockAcquire(ReplicationSlotAllocationLock, LW_EXCLUSIVE);
	SpinLockAcquire(&slot->mutex);
	slot->data.restart_lsn = lsn;
	SpinLockRelease(&slot->mutex);
	ReplicationSlotsComputeRequiredLSN();

	XLByteToSeg(lsn, segno, wal_segment_size);
	if (XLogGetLastRemovedSegno() >= segno)
	{
		LWLockRelease(ReplicationSlotAllocationLock);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("WAL at %X/%X needed by replication slot \"%s\" has been removed from the standby",
						LSN_FORMAT_ARGS(lsn), NameStr(slot->data.name))));
	}
	LWLockRelease(ReplicationSlotAllocationLock);
}

/*
 * Create or move forward the anchor slot (see the header comment).  "upto"
 * is how far it may move: no further than any slot it must still cover.
 */
void
sync_anchor_ensure(XLogRecPtr upto)
{
	XLogRecPtr	replay = GetXLogReplayRecPtr(NULL);

	if (XLogRecPtrIsInvalid(upto) || upto > replay)
		upto = replay;

	if (!anchor_exists())
	{
		SlotMarker	marker = {.flags = SLOT_MARKER_ANCHOR};

		/* someone else's slot of that name: do without an anchor */
		if (SearchNamedReplicationSlot(SLOT_SYNC_ANCHOR_NAME, true) != NULL)
			return;

		ReplicationSlotCreate(SLOT_SYNC_ANCHOR_NAME, true, RS_EPHEMERAL, false);

		/*
		 * A logical slot is one with a database; the anchor never decodes,
		 * so any database that cannot be dropped will do (the manual
		 * function's backend may be connected to another one).
		 */
		SpinLockAcquire(&MyReplicationSlot->mutex);
		MyReplicationSlot->data.database = Template1DbOid;
		SpinLockRelease(&MyReplicationSlot->mutex);
		reserve_wal_at(replay);
		slot_marker_write_owned(SLOT_SYNC_ANCHOR_NAME, &marker);
		ReplicationSlotPersist();
		ReplicationSlotRelease();
		return;
	}

	ReplicationSlotAcquire(SLOT_SYNC_ANCHOR_NAME, true);
	if (XLogRecPtrIsInvalid(MyReplicationSlot->data.restart_lsn))
	{
		/*
		 * Invalidated (max_slot_wal_keep_size on this standby): it has not
		 * protected anything since, so it starts afresh from here.
		 */
		ReplicationSlotRelease();
		ReplicationSlotDrop(SLOT_SYNC_ANCHOR_NAME, true);
		sync_anchor_ensure(replay);
		return;
	}
	if (upto > MyReplicationSlot->data.restart_lsn)
	{
		SpinLockAcquire(&MyReplicationSlot->mutex);
		MyReplicationSlot->data.restart_lsn = upto;
		SpinLockRelease(&MyReplicationSlot->mutex);
		/* on disk at the next checkpoint: an older value only keeps more */
		ReplicationSlotMarkDirty();
		ReplicationSlotsComputeRequiredLSN();
	}
	ReplicationSlotRelease();
}

void
sync_anchor_drop(void)
{
	if (anchor_exists())
		ReplicationSlotDrop(SLOT_SYNC_ANCHOR_NAME, true);
}

/*
 * The oldest LSN from which local logical slots have protected WAL and
 * decoding files continuously; invalid if there is no such slot.
 */
XLogRecPtr
sync_protected_from(void)
{
	return ReplicationSlotsComputeLogicalRestartLSN();
}

/*
 * What the standby has under this name.  With a cache, the marker file is
 * read again only when some marker was written since (markers of synced
 * slots are only written by the syncing process, and a slot dropped and
 * created again by sync writes a new one).
 */
void
sync_read_local(const char *name, LocalSlot *local, MarkerCacheEntry *cache)
{
	ReplicationSlot *slot;
	SlotMarker	marker;

	memset(local, 0, sizeof(*local));

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(name, false);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		local->exists = true;
		local->is_logical = SlotIsLogical(slot);
		local->database = slot->data.database;
		local->restart_lsn = slot->data.restart_lsn;
		local->confirmed_flush = slot->data.confirmed_flush;
		local->catalog_xmin = slot->data.catalog_xmin;
		local->two_phase = slot->data.two_phase;
		local->two_phase_at = slot->data.two_phase_at;
		local->invalidated = XLogRecPtrIsInvalid(slot->data.restart_lsn) &&
			!XLogRecPtrIsInvalid(slot->data.invalidated_at);
		local->synced = (slot->data.persistency == RS_PERSISTENT);
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);

	if (!local->exists)
		return;

	/* only persistent slots carrying our marker are ours */
	if (cache != NULL && cache->valid &&
		cache->generation == pg_atomic_read_u64(&SlotSyncState->marker_generation))
		marker.flags = cache->flags;
	else
	{
		uint64		generation = pg_atomic_read_u64(&SlotSyncState->marker_generation);

		slot_marker_read(name, &marker);
		if (cache != NULL)
		{
			cache->valid = true;
			cache->generation = generation;
			cache->flags = marker.flags;
		}
	}
	local->synced = local->synced && (marker.flags & SLOT_MARKER_SYNCED) != 0;
	local->ready = local->synced && (marker.flags & SLOT_MARKER_READY) != 0;
}

/*
 * Create the local copy of a remote slot, not ready yet.
 */
void
sync_create_slot(const RemoteSlot *remote, Oid dboid)
{
	ReplicationSlot *slot;
	XLogRecPtr	protected_from;
	XLogRecPtr	start;
	SlotMarker	marker = {.flags = SLOT_MARKER_FAILOVER | SLOT_MARKER_SYNCED};

	/* ephemeral until complete: an error drops it again */
	ReplicationSlotCreate(NameStr(remote->name), true, RS_EPHEMERAL,
						  remote->two_phase);
	slot = MyReplicationSlot;

	SpinLockAcquire(&slot->mutex);
	slot->data.database = dboid;
	namestrcpy(&slot->data.plugin, SLOT_SYNC_NOT_READY_PLUGIN);
	SpinLockRelease(&slot->mutex);

	/*
	 * Start at the remote restart_lsn when local slots protect everything
	 * from there; else as early as they protect (the copy then waits for
	 * the remote slot to pass that point).
	 */
	protected_from = sync_protected_from();
	if (XLogRecPtrIsInvalid(protected_from))
		protected_from = GetXLogReplayRecPtr(NULL);
	start = Max(remote->restart_lsn, protected_from);
	reserve_wal_at(start);

	SpinLockAcquire(&slot->mutex);
	slot->data.confirmed_flush = start;
	SpinLockRelease(&slot->mutex);

	/*
	 * The remote catalog_xmin: rows it needs are held by the primary's slot
	 * until our feedback holds them (see sync_decide.c).  Pinning it locally
	 * makes the standby report it through hot_standby_feedback.
	 */
	LWLockAcquire(ReplicationSlotControlLock, LW_EXCLUSIVE);
	LWLockAcquire(ProcArrayLock, LW_EXCLUSIVE);
	SpinLockAcquire(&slot->mutex);
	slot->effective_catalog_xmin = remote->catalog_xmin;
	slot->data.catalog_xmin = remote->catalog_xmin;
	SpinLockRelease(&slot->mutex);
	ReplicationSlotsComputeRequiredXmin(true);
	LWLockRelease(ProcArrayLock);
	LWLockRelease(ReplicationSlotControlLock);

	slot_marker_write_owned(NameStr(remote->name), &marker);
	ReplicationSlotPersist();
	ReplicationSlotRelease();

	sync_poke_walreceiver();
}

bool
sync_snapshot_exists(XLogRecPtr lsn)
{
	char		path[MAXPGPATH];
	struct stat st;

	snprintf(path, sizeof(path), "pg_logical/snapshots/%X-%X.snap",
			 LSN_FORMAT_ARGS(lsn));
	return stat(path, &st) == 0;
}

/*
 * Install the primary's serialized snapshot at "lsn".  The caller holds a
 * slot whose restart_lsn is at or below lsn, so a restartpoint cannot remove
 * the file again.  We check the header only; the server checks the CRC when
 * it reads the file.
 */
static void
install_snapshot(XLogRecPtr lsn, const char *data, Size len)
{
	char		path[MAXPGPATH];
	char		tmppath[MAXPGPATH];
	uint32		magic;
	uint32		version;

	if (len < 16)
		elog(ERROR, "serialized snapshot at %X/%X from the primary is too short",
			 LSN_FORMAT_ARGS(lsn));
	memcpy(&magic, data, sizeof(magic));
	memcpy(&version, data + 8, sizeof(version));
	if (magic != 0x51A1E001 || version != 4)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("serialized snapshot at %X/%X from the primary has an unexpected format",
						LSN_FORMAT_ARGS(lsn))));

	if (sync_snapshot_exists(lsn))
		return;

	snprintf(path, sizeof(path), "pg_logical/snapshots/%X-%X.snap",
			 LSN_FORMAT_ARGS(lsn));
	snprintf(tmppath, sizeof(tmppath), "pg_logical/snapshots/%X-%X.snap.%d.tmp",
			 LSN_FORMAT_ARGS(lsn), MyProcPid);

	write_file_durably(path, tmppath, data, len);
}

/*
 * Copy the remote slot's position into the local copy; with make_ready,
 * also give it its real output plugin and mark it sync-ready.  Returns
 * whether the slot changed.
 */
bool
sync_update_slot(const RemoteSlot *remote, bool make_ready,
				 const char *snapshot, Size snapshot_len)
{
	ReplicationSlot *slot;
	bool		must_save;
	bool		changed;

	ReplicationSlotAcquire(NameStr(remote->name), true);
	slot = MyReplicationSlot;

	if (snapshot != NULL)
		install_snapshot(remote->restart_lsn, snapshot, snapshot_len);

	SpinLockAcquire(&slot->mutex);
	/* never backwards: the decision checked, this is the last word */
	Assert(remote->restart_lsn >= slot->data.restart_lsn);
	/*
	 * two_phase can be switched on after a slot was created (a subscription
	 * with two_phase = on does so once its tables are synchronized), and
	 * two_phase_at says from where prepared transactions are decoded as
	 * such: both are copied, and saved, with the position.
	 */
	must_save = remote->restart_lsn != slot->data.restart_lsn ||
		remote->catalog_xmin != slot->data.catalog_xmin ||
		remote->two_phase != slot->data.two_phase ||
		remote->two_phase_at != slot->data.two_phase_at || make_ready;
	changed = must_save || remote->confirmed_flush != slot->data.confirmed_flush;
	slot->data.restart_lsn = remote->restart_lsn;
	slot->data.confirmed_flush = remote->confirmed_flush;
	slot->data.catalog_xmin = remote->catalog_xmin;
	slot->data.two_phase = remote->two_phase;
	slot->data.two_phase_at = remote->two_phase_at;
	if (make_ready)
		slot->data.plugin = remote->plugin;
	SpinLockRelease(&slot->mutex);

	ReplicationSlotMarkDirty();
	if (must_save)
		ReplicationSlotSave();

	/* only now may the server rely on the new values */
	SpinLockAcquire(&slot->mutex);
	slot->effective_catalog_xmin = remote->catalog_xmin;
	SpinLockRelease(&slot->mutex);
	ReplicationSlotsComputeRequiredXmin(false);
	ReplicationSlotsComputeRequiredLSN();

	if (make_ready)
	{
		SlotMarker	marker = {.flags = SLOT_MARKER_FAILOVER |
		SLOT_MARKER_SYNCED | SLOT_MARKER_READY};

		slot_marker_write_owned(NameStr(remote->name), &marker);
	}

	ReplicationSlotRelease();
	return changed;
}

/*
 * The primary invalidated its slot: so do we, the way the server does.
 */
void
sync_invalidate_slot(const char *name)
{
	ReplicationSlot *slot;

	ReplicationSlotAcquire(name, true);
	slot = MyReplicationSlot;
	SpinLockAcquire(&slot->mutex);
	slot->data.invalidated_at = slot->data.restart_lsn;
	slot->data.restart_lsn = InvalidXLogRecPtr;
	SpinLockRelease(&slot->mutex);
	ReplicationSlotMarkDirty();
	ReplicationSlotSave();
	ReplicationSlotRelease();
	ReplicationSlotsComputeRequiredLSN();
}

void
sync_drop_slot(const char *name, bool log_it)
{
	Oid			dboid = InvalidOid;
	ReplicationSlot *slot;

	slot = SearchNamedReplicationSlot(name, true);
	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	dboid = slot->data.database;
	SpinLockRelease(&slot->mutex);

	ReplicationSlotDrop(name, true);
	if (log_it)
		ereport(LOG,
				(errmsg("dropped replication slot \"%s\" of database with OID %u",
						name, dboid)));
}

/*
 * Drop every synced slot that is not sync-ready (on promotion, or when
 * sync stops).  Returns how many.
 */
int
sync_drop_not_ready_slots(void)
{
	SlotIdentity *slots;
	int			nslots;
	int			dropped = 0;

	slots = list_slot_identities(&nslots);
	for (int i = 0; i < nslots; i++)
	{
		LocalSlot	local;

		if (!slots[i].is_logical)
			continue;
		sync_read_local(NameStr(slots[i].name), &local, NULL);
		if (local.exists && local.synced && !local.ready)
		{
			sync_drop_slot(NameStr(slots[i].name), true);
			dropped++;
		}
	}
	pfree(slots);
	return dropped;
}

/*
 * Ask the walreceiver to send hot_standby_feedback now rather than at its
 * next status interval: it does so right after reloading its configuration,
 * which SIGHUP makes it do (harmlessly).  At most once a second.
 */
void
sync_poke_walreceiver(void)
{
	static TimestampTz last_poke = 0;
	TimestampTz now = GetCurrentTimestamp();
	pid_t		pid;

	if (!TimestampDifferenceExceeds(last_poke, now, 1000))
		return;
	last_poke = now;

	SpinLockAcquire(&WalRcv->mutex);
	pid = WalRcv->pid;
	SpinLockRelease(&WalRcv->mutex);
	if (pid != 0)
		kill(pid, SIGHUP);
}

/*
 * How many logical slots this server has; cheap enough to ask every few
 * milliseconds.  The worker notices that a synced slot was dropped on the
 * standby (by a user, or by DROP DATABASE replay) when this goes down.
 */
int
sync_count_logical_slots(void)
{
	int			n = 0;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];

		if (s->in_use && SlotIsLogical(s))
			n++;
	}
	LWLockRelease(ReplicationSlotControlLock);
	return n;
}
