/*-------------------------------------------------------------------------
 *
 * sync_apply.c
 *		Side effects of slot synchronization on the standby: reading what
 *		the standby has, and creating, advancing, making ready, invalidating
 *		and dropping synced copies.
 *
 * What is done, and when, is decided in sync_decide.c; this file only
 * carries it out, with the locking and ordering the server's own slot code
 * uses, and never talks to the primary.
 *
 * Synced copies that are not ready yet.  PostgreSQL 17 keeps them as
 * temporary slots owned by its worker.  A temporary slot stays "active" for
 * as long as its owner lives, and replaying DROP DATABASE on a standby fails
 * (taking the startup process, and so the standby, down) when an active slot
 * of that database exists; core's own comment calls it unlikely, but a slot
 * that never becomes ready on an idle primary makes it likely.  Ours are
 * persistent slots instead, inactive between cycles, marked "synced but not
 * ready" in our marker and carrying a placeholder output plugin
 * (SLOT_SYNC_NOT_READY_PLUGIN) so that nobody can decode from one: after a
 * promotion that raced with their removal, a consumer gets an error, never
 * a slot that silently skips changes.  They are debris once nobody syncs:
 * sync_remove_debris() drops them (and the anchor) at promotion, when a
 * server starts as a primary, and when sync stops.  Sync-ready copies get
 * the real plugin, then the "ready" marker; a crash between the two leaves
 * a copy that is not ready, never one that claims to be.
 *
 * Locking.  Every change to a copy happens with the copy acquired, as the
 * server's slot code does, so nobody else can use or drop it meanwhile.  A
 * copy is only created or changed while we hold a lock on its database
 * (sync_lock_database()), taken after the database was looked up and
 * checked again under the lock: replaying DROP DATABASE takes that lock
 * exclusively before dropping the database's slots, so a copy is never made
 * in a database that is being dropped.  The lock is released as soon as the
 * slot is done, and nothing here waits on the network while holding it.
 *
 * Ordering.  A new restart_lsn or catalog_xmin is written to the slot's
 * state file before the server relies on it: the file is saved first, and
 * only then is effective_catalog_xmin raised, as logical.c does for a
 * decoding slot; the WAL and xmin horizons are recomputed once per cycle
 * after that (sync_compute_horizons()), older until then.  WAL is reserved under
 * ReplicationSlotAllocationLock so that a concurrent restartpoint either
 * sees the reservation or removed nothing we need (checked afterwards).
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "access/xlog_internal.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "replication/slot.h"
#include "replication/walreceiver.h"
#include "slot_copy.h"
#include "slot_marker.h"
#include "slot_sync.h"
#include "snapshot_file.h"
#include "sync_remote.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/*
 * Set the restart_lsn of the slot we hold and make sure the WAL from there
 * is still present and now reserved.
 */
void
sync_reserve_wal(XLogRecPtr lsn)
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
 * What the standby has under this name.  With a cache entry, the marker is
 * read again only when some marker was written since (see
 * slot_marker_read_cached(); on a standby only the syncing process writes
 * markers of logical slots, and nobody can create a logical slot during
 * recovery, so a stale entry cannot make a stranger's slot look like ours).
 * With a slot index, the slot is looked for there first (see
 * slot_copy_named_hinted()).
 */
void
sync_read_local(const char *name, LocalSlot *local, MarkerCacheEntry *cache,
				int *slot_index)
{
	SlotCopy	slot;
	SlotMarker	marker;
	SlotMarkerStatus status;

	memset(local, 0, sizeof(*local));
	if (!slot_copy_named_hinted(name, &slot, slot_index))
		return;

	local->exists = true;
	local->is_logical = slot.is_logical;
	local->plugin = slot.plugin;
	local->database = slot.database;
	local->restart_lsn = slot.restart_lsn;
	local->confirmed_flush = slot.confirmed_flush;
	local->catalog_xmin = slot.catalog_xmin;
	local->two_phase = slot.two_phase;
	local->two_phase_at = slot.two_phase_at;
	local->invalidated = slot_copy_is_invalidated(&slot);

	if (cache != NULL)
	{
		status = slot_marker_read_cached(name, cache);
		marker = cache->marker;
	}
	else
		status = slot_marker_examine(name, &marker);

	/* only persistent slots carrying our marker are ours */
	local->synced = status == SLOT_MARKER_PRESENT &&
		slot.persistency == RS_PERSISTENT &&
		(marker.flags & SLOT_MARKER_SYNCED) != 0;
	local->ready = local->synced && (marker.flags & SLOT_MARKER_READY) != 0;
	local->incarnation = local->synced ? marker.incarnation : 0;
	local->history_pending = local->synced &&
		(marker.flags & SLOT_MARKER_HISTORY_PENDING) != 0;
}

/*
 * Lock a database against DROP DATABASE replay while we change its slots;
 * with a name (to create a copy there), also check it still exists now
 * that we hold the lock.
 */
void
sync_lock_database(Oid dboid, const char *dbname)
{
	LockSharedObject(DatabaseRelationId, dboid, 0, AccessShareLock);
	if (dbname != NULL &&
		!SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dboid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_DATABASE),
				 errmsg("database \"%s\" was dropped on the standby",
						dbname)));
}

void
sync_unlock_database(Oid dboid)
{
	UnlockSharedObject(DatabaseRelationId, dboid, 0, AccessShareLock);
}

/*
 * Create the local copy of a remote slot at "create_at", not ready yet.
 * The caller holds the database lock.
 */
void
sync_create_copy(const RemoteSlot *remote, Oid dboid, XLogRecPtr create_at,
				 bool history_pending)
{
	ReplicationSlot *slot;
	SlotMarker	marker;

	/* ephemeral until complete: an error drops it again */
	ReplicationSlotCreate(NameStr(remote->name), true, RS_EPHEMERAL,
						  remote->two_phase);
	slot = MyReplicationSlot;

	SpinLockAcquire(&slot->mutex);
	slot->data.database = dboid;
	namestrcpy(&slot->data.plugin, SLOT_SYNC_NOT_READY_PLUGIN);
	SpinLockRelease(&slot->mutex);

	sync_reserve_wal(create_at);

	SpinLockAcquire(&slot->mutex);
	slot->data.confirmed_flush = create_at;
	slot->data.two_phase_at = remote->two_phase_at;
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

	marker.flags = SLOT_MARKER_FAILOVER | SLOT_MARKER_SYNCED |
		(history_pending ? SLOT_MARKER_HISTORY_PENDING : 0);
	marker.incarnation = remote->incarnation;
	slot_marker_write_owned(NameStr(remote->name), &marker);
	ReplicationSlotPersist();
	ReplicationSlotRelease();

	sync_poke_walreceiver();
}

/* A copy's restart_lsn or catalog_xmin moved since the last computation. */
static bool horizons_pending = false;

/*
 * Compute the server's WAL and xmin horizons again if a copy's moved: once
 * per cycle, after the copies are saved.
 */
void
sync_compute_horizons(void)
{
	if (!horizons_pending)
		return;
	horizons_pending = false;
	ReplicationSlotsComputeRequiredXmin(false);
	ReplicationSlotsComputeRequiredLSN();
}

/*
 * Copy the remote slot's position into the local copy, installing the
 * primary's snapshot at the new restart_lsn if given; with make_ready, also
 * give the copy its real output plugin and mark it sync-ready.  Returns
 * whether the slot changed.
 */
bool
sync_update_copy(const RemoteSlot *remote, bool make_ready,
				 const char *snapshot, Size snapshot_len)
{
	ReplicationSlot *slot;
	bool		must_save;
	bool		changed;

	ReplicationSlotAcquire(NameStr(remote->name), true);
	slot = MyReplicationSlot;

	/* never backwards: the decision checked, this is the last word */
	if (remote->restart_lsn < slot->data.restart_lsn ||
		remote->confirmed_flush < slot->data.confirmed_flush)
		elog(ERROR, "refusing to move replication slot \"%s\" backwards",
			 NameStr(remote->name));

	if (snapshot != NULL)
		snapshot_file_install(remote->restart_lsn, snapshot, snapshot_len);

	SpinLockAcquire(&slot->mutex);

	/*
	 * two_phase can be switched on after a slot was created (a subscription
	 * with two_phase = on does so once its tables are synchronized), and
	 * two_phase_at says from where prepared transactions are decoded as
	 * such: both are copied, and saved, with the position.
	 */
	must_save = remote->restart_lsn != slot->data.restart_lsn ||
		remote->catalog_xmin != slot->data.catalog_xmin ||
		remote->two_phase != slot->data.two_phase ||
		remote->two_phase_at != slot->data.two_phase_at || make_ready ||
		slot->effective_catalog_xmin != remote->catalog_xmin;
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

	/*
	 * Only now may the server rely on the new values; the server-wide
	 * horizons are computed again once per cycle (sync_compute_horizons()),
	 * not per copy: each computation walks every slot, and until then the
	 * older horizons only keep more.
	 */
	if (must_save)
	{
		SpinLockAcquire(&slot->mutex);
		slot->effective_catalog_xmin = remote->catalog_xmin;
		SpinLockRelease(&slot->mutex);
		horizons_pending = true;
	}

	if (make_ready)
	{
		SlotMarker	marker;

		marker.flags = SLOT_MARKER_FAILOVER | SLOT_MARKER_SYNCED |
			SLOT_MARKER_READY;
		marker.incarnation = remote->incarnation;
		slot_marker_write_owned(NameStr(remote->name), &marker);
	}

	ReplicationSlotRelease();
	return changed;
}

/*
 * The copy is no longer sync-ready (see sync_decide.c): say so in its
 * marker first, so that a crash in between leaves a copy that is not ready,
 * then give it the placeholder plugin again.  The caller holds the
 * database lock.
 */
void
sync_demote_copy(const char *name)
{
	ReplicationSlot *slot;
	SlotMarker	marker;

	ReplicationSlotAcquire(name, true);
	slot = MyReplicationSlot;
	if (slot_marker_examine(name, &marker) == SLOT_MARKER_PRESENT &&
		(marker.flags & SLOT_MARKER_READY))
	{
		marker.flags &= ~SLOT_MARKER_READY;
		slot_marker_write_owned(name, &marker);
	}
	SpinLockAcquire(&slot->mutex);
	namestrcpy(&slot->data.plugin, SLOT_SYNC_NOT_READY_PLUGIN);
	SpinLockRelease(&slot->mutex);
	ReplicationSlotMarkDirty();
	ReplicationSlotSave();
	ReplicationSlotRelease();
}

/*
 * Demote every ready copy: the standby's settings no longer let the primary
 * keep their catalog rows ("why" says which).  During recovery the caller
 * must be in a transaction (database locks).  Returns how many.
 */
int
sync_demote_ready_copies(const char *why)
{
	SlotCopy   *slots;
	int			nslots;
	int			demoted = 0;

	slots = slot_copy_all_palloc(&nslots);
	for (int i = 0; i < nslots; i++)
	{
		const char *name = NameStr(slots[i].name);
		LocalSlot	local;

		if (!slots[i].is_logical || slots[i].active_pid != 0)
			continue;
		sync_read_local(name, &local, NULL, NULL);
		if (!local.ready)
			continue;
		sync_lock_database(slots[i].database, NULL);
		sync_demote_copy(name);
		sync_unlock_database(slots[i].database);
		slot_sync_status_mark(name, SYNC_STATE_NOT_READY,
							  SYNC_REASON_UNPROTECTED, why);
		ereport(LOG,
				(errmsg("replication slot \"%s\" is no longer sync-ready", name),
				 errdetail("The primary is not known to keep the catalog rows it needs, because %s.",
						   why)));
		demoted++;
	}
	pfree(slots);
	return demoted;
}

/*
 * Has replay moved to another timeline since WAL last streamed to this
 * standby (see sync_local_protection_lost())?  The timeline of the first
 * look counts as streamed, for a process that starts while nothing streams.
 */
static bool
replay_left_streamed_timeline(bool streaming)
{
	static TimeLineID streamed_tli = 0;
	TimeLineID	tli;

	(void) GetXLogReplayRecPtr(&tli);
	if (streaming || streamed_tli == 0)
	{
		streamed_tli = tli;
		return false;
	}
	return tli != streamed_tli;
}

/*
 * Demote every ready copy if the standby's settings no longer protect them
 * (sync_local_protection_lost()), once per change of the reason.  For the
 * worker, and for the launcher while nobody syncs.  Returns how many.
 */
int
sync_demote_if_unprotected(bool slot_name_changed)
{
	static char last_why[128] = "";
	char		why[128];
	bool		own_xact;
	int			demoted;
	bool		streaming = slot_sync_streaming();

	if (!sync_local_protection_lost(hot_standby_feedback, streaming,
									replay_left_streamed_timeline(streaming),
									PrimarySlotName, slot_name_changed,
									why, sizeof(why)))
	{
		last_why[0] = '\0';
		return 0;
	}
	if (strcmp(why, last_why) == 0)
		return 0;
	strlcpy(last_why, why, sizeof(last_why));

	own_xact = !IsTransactionState();
	if (own_xact)
		StartTransactionCommand();
	demoted = sync_demote_ready_copies(why);
	if (own_xact)
		CommitTransactionCommand();
	return demoted;
}

/*
 * The copy's WAL and mapping files are complete now (sync_history.c): take
 * the "history pending" mark away.
 */
void
sync_history_done(const char *name)
{
	SlotMarker	marker;

	ReplicationSlotAcquire(name, true);
	if (slot_marker_examine(name, &marker) == SLOT_MARKER_PRESENT &&
		(marker.flags & SLOT_MARKER_HISTORY_PENDING))
	{
		marker.flags &= ~SLOT_MARKER_HISTORY_PENDING;
		slot_marker_write_owned(name, &marker);
	}
	ReplicationSlotRelease();
}

/*
 * The primary invalidated its slot: so do we, the way the server does.
 */
void
sync_invalidate_copy(const char *name)
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

/*
 * Drop a copy (or the anchor); core's message when log_it.
 */
void
sync_drop_copy(const char *name, bool log_it)
{
	SlotCopy	slot;

	if (!slot_copy_named(name, &slot))
		return;
	ReplicationSlotDrop(name, true);
	if (log_it)
		ereport(LOG,
				(errmsg("dropped replication slot \"%s\" of database with OID %u",
						name, slot.database)));
}

/*
 * Drop every synced copy that is not sync-ready, and the anchor: what a
 * syncing process leaves that nobody may use and that would only pin WAL
 * and catalog rows once nobody syncs.  "why" says when (a phrase for the
 * log).  During recovery the caller must be in a transaction: each slot is
 * dropped under its database's lock (see the header comment).  Slots that
 * some process has acquired are left alone; returns how many were, so the
 * caller can come back.
 */
int
sync_remove_debris(const char *why)
{
	SlotCopy   *slots;
	int			nslots;
	int			busy = 0;
	bool		lock = RecoveryInProgress();

	slots = slot_copy_all_palloc(&nslots);
	for (int i = 0; i < nslots; i++)
	{
		const char *name = NameStr(slots[i].name);
		SlotMarker	marker;
		SlotCopy	now;

		if (!slots[i].is_logical ||
			slot_marker_examine(name, &marker) != SLOT_MARKER_PRESENT)
			continue;
		if (!(marker.flags & SLOT_MARKER_ANCHOR) &&
			!((marker.flags & SLOT_MARKER_SYNCED) &&
			  !(marker.flags & SLOT_MARKER_READY)))
			continue;

		if (lock)
			sync_lock_database(slots[i].database, NULL);
		if (slot_copy_named(name, &now) && now.active_pid != 0)
			busy++;
		else if (slot_copy_named(name, &now))
		{
			ReplicationSlotDrop(name, true);
			ereport(LOG,
					(errmsg("dropped replication slot \"%s\" of database with OID %u %s",
							name, slots[i].database, why),
					 (marker.flags & SLOT_MARKER_ANCHOR) ?
					 errdetail("It was the anchor of the slot sync worker.") :
					 errdetail("It was a synchronized copy that was not sync-ready.")));
		}
		if (lock)
			sync_unlock_database(slots[i].database);
	}
	pfree(slots);
	return busy;
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
