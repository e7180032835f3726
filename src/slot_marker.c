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
 * Durability: the marker is written to a temporary file, fsync'ed, and
 * renamed over the old one with durable_rename(), which also fsyncs the
 * directory; a crash leaves either the old or the new marker.  A CRC guards
 * against a torn or damaged file, which we report rather than trust.
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
#include "storage/spin.h"

#define SLOT_MARKER_FILE		"pg_slotsync.marker"
#define SLOT_MARKER_MAGIC		0x5053594E	/* "PSYN" */
#define SLOT_MARKER_VERSION		1

/* The file's layout on disk. */
typedef struct SlotMarkerOnDisk
{
	uint32		magic;
	uint32		version;
	uint32		flags;
	pg_crc32c	checksum;		/* of the fields above */
} SlotMarkerOnDisk;

static pg_crc32c
marker_checksum(const SlotMarkerOnDisk *disk)
{
	pg_crc32c	crc;

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, disk, offsetof(SlotMarkerOnDisk, checksum));
	FIN_CRC32C(crc);
	return crc;
}

/*
 * Read the marker of the named slot.  Returns false, with all flags clear,
 * when the slot has none.  The caller must know the slot exists; a missing
 * directory reads as "no marker".
 */
bool
slot_marker_read(const char *slot_name, SlotMarker *marker)
{
	char		path[MAXPGPATH];
	SlotMarkerOnDisk disk;
	int			fd;
	int			nread;

	marker->flags = 0;
	snprintf(path, sizeof(path), "pg_replslot/%s/%s", slot_name,
			 SLOT_MARKER_FILE);

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ENOENT)
			return false;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	}

	nread = read(fd, &disk, sizeof(disk));
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

	if (nread != sizeof(disk) ||
		disk.magic != SLOT_MARKER_MAGIC ||
		disk.version != SLOT_MARKER_VERSION ||
		!EQ_CRC32C(disk.checksum, marker_checksum(&disk)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("pg_slotsync state of replication slot \"%s\" is corrupted",
						slot_name),
				 errdetail("File \"%s\" is not a valid pg_slotsync marker.",
						   path),
				 errhint("Set the slot's failover flag again with pg_slotsync.alter_replication_slot() to rewrite it.")));

	marker->flags = disk.flags;
	return true;
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

	snprintf(path, sizeof(path), "pg_replslot/%s/%s", slot_name,
			 SLOT_MARKER_FILE);
	snprintf(tmppath, sizeof(tmppath), "%s.tmp", path);

	memset(&disk, 0, sizeof(disk));
	disk.magic = SLOT_MARKER_MAGIC;
	disk.version = SLOT_MARKER_VERSION;
	disk.flags = marker->flags;
	disk.checksum = marker_checksum(&disk);

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
 * Set and clear flags in the marker of the named slot, whoever owns it.
 *
 * "check" sees the slot's identity and current marker while the slot cannot
 * be dropped or replaced, and may raise an error to refuse the change.
 * Raises "does not exist" if there is no such slot.  Returns true if the
 * marker changed.
 */
bool
slot_marker_update_named(const char *slot_name,
						 uint32 set_flags, uint32 clear_flags,
						 bool (*check) (const SlotIdentity *ident,
										const SlotMarker *current,
										void *arg),
						 void *arg)
{
	ReplicationSlot *slot;
	SlotIdentity ident;
	SlotMarker	current;
	SlotMarker	wanted;
	bool		changed = false;

	/* keeps the slot's directory from being created or renamed meanwhile */
	LWLockAcquire(ReplicationSlotAllocationLock, LW_SHARED);

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(slot_name, false);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		ident.name = slot->data.name;
		ident.is_logical = SlotIsLogical(slot);
		ident.persistency = slot->data.persistency;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);

	if (slot == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("replication slot \"%s\" does not exist", slot_name)));

	slot_marker_read(slot_name, &current);

	if (check == NULL || check(&ident, &current, arg))
	{
		wanted.flags = (current.flags | set_flags) & ~clear_flags;
		if (wanted.flags != current.flags)
		{
			slot_marker_write_file(slot_name, &wanted);
			changed = true;
		}
	}

	LWLockRelease(ReplicationSlotAllocationLock);

	return changed;
}

/*
 * Every slot in use, with what callers need to pick among them, copied in
 * one pass under ReplicationSlotControlLock so that the files (markers)
 * can be read afterwards without holding it.  palloc'd; *count entries.
 */
SlotIdentity *
list_slot_identities(int *count)
{
	SlotIdentity *slots = palloc(sizeof(SlotIdentity) * Max(max_replication_slots, 1));
	int			n = 0;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];

		if (!s->in_use)
			continue;
		SpinLockAcquire(&s->mutex);
		slots[n].name = s->data.name;
		slots[n].is_logical = SlotIsLogical(s);
		slots[n].persistency = s->data.persistency;
		SpinLockRelease(&s->mutex);
		n++;
	}
	LWLockRelease(ReplicationSlotControlLock);

	*count = n;
	return slots;
}
