/*-------------------------------------------------------------------------
 *
 * slot_marker.c
 *		pg_slotsync's per-slot state, stored inside the slot's own directory.
 *
 * PostgreSQL 15 has no failover or synced flag in a replication slot, and
 * an extension cannot add fields to the slot's state file.  We keep our own
 * small file, pg_replslot/<slot>/pg_slotsync.marker, beside core's "state".
 *
 * Why there: the file has to live and die with one incarnation of the slot.
 * The server creates a slot's directory under a temporary name and renames
 * it into place, and drops a slot by renaming its directory to "<slot>.tmp"
 * and removing it whole (StartupReplicationSlots finishes that job after a
 * crash).  Core only ever reads and writes "state" in there, and ignores
 * other files.  So whatever we put in the directory vanishes with every way
 * of dropping the slot (SQL, the replication protocol's DROP_REPLICATION_SLOT,
 * DROP SUBSCRIPTION, DROP DATABASE replay, a temporary slot's end), a new
 * slot of the same name starts without it, and it survives restarts and
 * crashes exactly as the slot does.  No hook, no catalog, nothing to clean.
 *
 * Races: creating and dropping a slot both hold ReplicationSlotAllocationLock
 * exclusively while they create or rename the directory.  We hold it shared
 * while we look the slot up and write our file, so the slot we checked is the
 * slot whose directory we write into; nobody can rename it away under us.  A
 * slot that this backend owns (just created, still ephemeral) cannot be
 * dropped by anyone else, so writing its marker needs no lock.
 *
 * Incarnation: a failover slot gets a random 64-bit id in its marker the
 * first time it becomes a failover slot on the primary (at creation, when
 * flagged, or, for slots that are failover slots by name pattern or were
 * flagged by an older version, when first listed for a standby).  Synced
 * copies carry their remote slot's id, so a standby can tell "the same slot,
 * moved" from "a slot dropped and created again under the same name", and a
 * promoted standby's slots keep the id of the slot they copy.
 *
 * Writers of a slot it does not own read the marker, change it and write it
 * back under our marker lock, so two such updates (an alter and an
 * incarnation being assigned) cannot lose each other's change.
 *
 * Durability: the marker is written to a temporary file, fsync'ed, and
 * renamed over the old one with durable_rename(), which also fsyncs the
 * directory; a crash leaves either the old or the new marker.  A CRC guards
 * against a torn or damaged file, which we report rather than trust: a
 * corrupt marker reads as "no flags", is reported by whoever lists slots
 * (as a WARNING, skipping that slot only), and is rewritten by
 * pg_slotsync.alter_replication_slot().  Version 1 markers (no incarnation)
 * are still read; every write is version 2.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "pg_slotsync.h"
#include "port/pg_crc32c.h"
#include "replication/slot.h"
#include "slot_marker.h"
#include "storage/fd.h"
#include "storage/lwlock.h"

#define SLOT_MARKER_FILE		"pg_slotsync.marker"
#define SLOT_MARKER_MAGIC		0x5053594E	/* "PSYN" */
#define SLOT_MARKER_VERSION_1	1
#define SLOT_MARKER_VERSION		2

/* Version 1 on disk: flags only. */
typedef struct SlotMarkerOnDiskV1
{
	uint32		magic;
	uint32		version;
	uint32		flags;
	pg_crc32c	checksum;		/* of the fields above */
} SlotMarkerOnDiskV1;

/* Version 2 on disk, what we write. */
typedef struct SlotMarkerOnDisk
{
	uint32		magic;
	uint32		version;
	uint32		flags;
	uint32		reserved;		/* zero */
	uint64		incarnation;
	pg_crc32c	checksum;		/* of the fields above */
} SlotMarkerOnDisk;

static pg_crc32c
marker_checksum(const void *data, Size len)
{
	pg_crc32c	crc;

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, data, len);
	FIN_CRC32C(crc);
	return crc;
}

static void
marker_path(char *path, const char *slot_name)
{
	snprintf(path, MAXPGPATH, "pg_replslot/%s/%s", slot_name,
			 SLOT_MARKER_FILE);
}

/* Parse what was read; false if it is not a valid marker of any version. */
static bool
marker_parse(const char *buf, int nread, SlotMarker *marker)
{
	SlotMarkerOnDisk v2;
	SlotMarkerOnDiskV1 v1;

	if (nread == sizeof(v2))
	{
		memcpy(&v2, buf, sizeof(v2));
		if (v2.magic != SLOT_MARKER_MAGIC ||
			v2.version != SLOT_MARKER_VERSION ||
			!EQ_CRC32C(v2.checksum,
					   marker_checksum(&v2, offsetof(SlotMarkerOnDisk, checksum))))
			return false;
		marker->flags = v2.flags;
		marker->incarnation = v2.incarnation;
		return true;
	}
	if (nread == sizeof(v1))
	{
		memcpy(&v1, buf, sizeof(v1));
		if (v1.magic != SLOT_MARKER_MAGIC ||
			v1.version != SLOT_MARKER_VERSION_1 ||
			!EQ_CRC32C(v1.checksum,
					   marker_checksum(&v1, offsetof(SlotMarkerOnDiskV1, checksum))))
			return false;
		marker->flags = v1.flags;
		marker->incarnation = 0;
		return true;
	}
	return false;
}

/*
 * Read the marker of the named slot, whatever state it is in.  A missing
 * file (or directory: the caller must know the slot exists) is ABSENT; a
 * file that is not a valid marker is CORRUPT; either way the flags are
 * clear.  Only a failure to read at all is an ERROR.
 */
SlotMarkerStatus
slot_marker_examine(const char *slot_name, SlotMarker *marker)
{
	char		path[MAXPGPATH];
	char		buf[sizeof(SlotMarkerOnDisk) + 1];
	int			fd;
	int			nread;

	memset(marker, 0, sizeof(*marker));
	marker_path(path, slot_name);

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ENOENT)
			return SLOT_MARKER_ABSENT;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	}

	/* one byte more than the largest version tells a too-long file */
	nread = read(fd, buf, sizeof(buf));
	if (nread < 0)
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", path)));
	}
	CloseTransientFile(fd);

	if (!marker_parse(buf, nread, marker))
	{
		memset(marker, 0, sizeof(*marker));
		return SLOT_MARKER_CORRUPT;
	}
	return SLOT_MARKER_PRESENT;
}

/*
 * Report a corrupt marker at elevel, with what to do about it.
 */
void
slot_marker_report_corrupt(const char *slot_name, int elevel)
{
	char		path[MAXPGPATH];

	marker_path(path, slot_name);
	ereport(elevel,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("pg_slotsync state of replication slot \"%s\" is corrupted",
					slot_name),
			 errdetail("File \"%s\" is not a valid pg_slotsync marker.",
					   path),
			 errhint("Set the slot's failover flag again with pg_slotsync.alter_replication_slot() to rewrite it.")));
}

/*
 * Read the marker of the named slot.  Returns false, with all flags clear,
 * when the slot has none; a corrupt marker is an ERROR.  For callers that
 * act on one slot; callers that list many use slot_marker_examine() and
 * skip a corrupt one.
 */
bool
slot_marker_read(const char *slot_name, SlotMarker *marker)
{
	SlotMarkerStatus status = slot_marker_examine(slot_name, marker);

	if (status == SLOT_MARKER_CORRUPT)
		slot_marker_report_corrupt(slot_name, ERROR);
	return status == SLOT_MARKER_PRESENT;
}

/*
 * Read the marker through a caller's cache entry: the file is read again
 * only when some marker was written since the entry was filled (every
 * write moves the shared marker generation).  The generation is read before
 * the file, so a write that races with the read makes the next call read
 * again.  The caller keeps one entry per slot name, and must reset it
 * (valid = false) when the name it stands for changes.  A marker that
 * vanished with a dropped slot is not noticed until the next write
 * anywhere; callers use the cache only where that is harmless.
 */
SlotMarkerStatus
slot_marker_read_cached(const char *slot_name, MarkerCacheEntry *cache)
{
	uint64		generation = pg_atomic_read_u64(&SlotSyncState->marker_generation);

	if (!cache->valid || cache->generation != generation)
	{
		cache->valid = false;
		cache->status = slot_marker_examine(slot_name, &cache->marker);
		cache->generation = generation;
		cache->valid = true;
	}
	return cache->status;
}

/* A new random incarnation id, never 0. */
uint64
slot_marker_new_incarnation(void)
{
	uint64		id = 0;

	while (id == 0)
	{
		if (!pg_strong_random(&id, sizeof(id)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random replication slot incarnation id")));
	}
	return id;
}

/*
 * Write "data" to "path" so that a crash leaves either the old file or the
 * whole new one: write a temporary file, fsync it, rename it into place and
 * fsync the directory.  Used for our markers and for the serialized
 * snapshots a standby installs (sync_apply.c).
 */
void
write_file_durably(const char *path, const char *tmppath,
				   const void *data, Size len)
{
	int			fd;

	fd = OpenTransientFile(tmppath, O_CREAT | O_TRUNC | O_WRONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmppath)));

	errno = 0;
	if (write(fd, data, len) != (ssize_t) len)
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		unlink(tmppath);
		/* a short write without an error means the disk is full */
		errno = save_errno ? save_errno : ENOSPC;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmppath)));
	}

	if (pg_fsync(fd) != 0)
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		unlink(tmppath);
		errno = save_errno;
		ereport(data_sync_elevel(ERROR),
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", tmppath)));
	}

	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", tmppath)));

	durable_rename(tmppath, path, ERROR);
}

/*
 * Write the marker durably.  The caller guarantees the slot's directory
 * cannot be renamed away meanwhile (see the header comment).
 */
static void
slot_marker_write_file(const char *slot_name, const SlotMarker *marker)
{
	char		path[MAXPGPATH];
	char		tmppath[MAXPGPATH];
	SlotMarkerOnDisk disk;

	marker_path(path, slot_name);
	snprintf(tmppath, sizeof(tmppath), "%s.tmp", path);

	memset(&disk, 0, sizeof(disk));
	disk.magic = SLOT_MARKER_MAGIC;
	disk.version = SLOT_MARKER_VERSION;
	disk.flags = marker->flags;
	disk.incarnation = marker->incarnation;
	disk.checksum = marker_checksum(&disk, offsetof(SlotMarkerOnDisk, checksum));

	write_file_durably(path, tmppath, &disk, sizeof(disk));

	pg_atomic_fetch_add_u64(&SlotSyncState->marker_generation, 1);
}

/*
 * Write the marker of a slot this backend owns (MyReplicationSlot).
 */
void
slot_marker_write_owned(const char *slot_name, const SlotMarker *marker)
{
	Assert(MyReplicationSlot != NULL &&
		   strcmp(NameStr(MyReplicationSlot->data.name), slot_name) == 0);

	slot_marker_write_file(slot_name, marker);
}

/*
 * Give the named slot an incarnation id if its marker has none, keeping its
 * flags; returns the id, or 0 if the slot is gone or its marker corrupt.
 * For a primary listing its failover slots: slots that are failover slots
 * by name pattern, or were flagged by version 1.0, have none yet.
 */
uint64
slot_marker_ensure_incarnation(const char *slot_name)
{
	SlotCopy	slot;
	SlotMarker	marker;
	SlotMarkerStatus status;

	LWLockAcquire(ReplicationSlotAllocationLock, LW_SHARED);
	LWLockAcquire(SlotSyncState->marker_lock, LW_EXCLUSIVE);
	if (!slot_copy_named(slot_name, &slot))
		marker.incarnation = 0;
	else
	{
		status = slot_marker_examine(slot_name, &marker);
		if (status == SLOT_MARKER_CORRUPT)
			marker.incarnation = 0;
		else if (marker.incarnation == 0)
		{
			marker.incarnation = slot_marker_new_incarnation();
			slot_marker_write_file(slot_name, &marker);
		}
	}
	LWLockRelease(SlotSyncState->marker_lock);
	LWLockRelease(ReplicationSlotAllocationLock);
	return marker.incarnation;
}

/*
 * Set and clear flags in the marker of the named slot, whoever owns it, and
 * with ensure_incarnation give it an incarnation id if it has none.
 *
 * "check" sees the slot, its current marker and the marker's status while
 * the slot cannot be dropped or replaced, and may raise an error to refuse
 * the change or return false to skip it.  A corrupt marker is rewritten
 * only if "check" accepts it (it reads as no flags and no incarnation).
 * Raises "does not exist" if there is no such slot.  Returns true if the
 * marker changed.
 */
bool
slot_marker_update_named(const char *slot_name,
						 uint32 set_flags, uint32 clear_flags,
						 bool ensure_incarnation,
						 SlotMarkerCheck check, void *arg)
{
	SlotCopy	slot;
	SlotMarker	current;
	SlotMarker	wanted;
	SlotMarkerStatus status;
	bool		found;
	bool		changed = false;

	/* keeps the slot's directory from being created or renamed meanwhile */
	LWLockAcquire(ReplicationSlotAllocationLock, LW_SHARED);
	/* ... and other writers of markers out of our read-modify-write */
	LWLockAcquire(SlotSyncState->marker_lock, LW_EXCLUSIVE);

	found = slot_copy_named(slot_name, &slot);
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("replication slot \"%s\" does not exist", slot_name)));

	status = slot_marker_examine(slot_name, &current);

	if (check != NULL ? check(&slot, &current, status, arg) :
		status != SLOT_MARKER_CORRUPT)
	{
		wanted.flags = (current.flags | set_flags) & ~clear_flags;
		wanted.incarnation = current.incarnation;
		if (ensure_incarnation && wanted.incarnation == 0)
			wanted.incarnation = slot_marker_new_incarnation();
		if (status == SLOT_MARKER_CORRUPT ||
			wanted.flags != current.flags ||
			wanted.incarnation != current.incarnation)
		{
			slot_marker_write_file(slot_name, &wanted);
			changed = true;
		}
	}

	LWLockRelease(SlotSyncState->marker_lock);
	LWLockRelease(ReplicationSlotAllocationLock);

	return changed;
}
