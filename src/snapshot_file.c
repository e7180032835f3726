/*-------------------------------------------------------------------------
 *
 * snapshot_file.c
 *		The logical decoding snapshots the server serializes at
 *		pg_logical/snapshots/<LSN>.snap, as pg_slotsync moves them from a
 *		primary to its standbys.
 *
 * Why we move them: a synced copy is only ready when decoding from its
 * restart_lsn after promotion reaches a consistent snapshot no later than
 * its confirmed position, exactly as decoding from the primary's slot
 * would.  The primary's slot guarantees that with the snapshot it
 * serialized at restart_lsn; the standby gets that very file (see
 * sync_decide.c).  PostgreSQL 15 cannot decode during recovery at all, so
 * the standby cannot rebuild the snapshot itself the way PostgreSQL 17 does.
 *
 * The file is private to snapbuild.c, but its first part is fixed for every
 * version: magic, CRC-32C, version, total length, then the version's data.
 * The CRC covers everything from the version on.  We never interpret the
 * data; we check what the server would check when it restores the file
 * (magic, version 4 as in PostgreSQL 15, the length, the CRC) before we
 * install it, so that a damaged transfer leaves the copy not ready instead
 * of failing the first decoding after promotion.
 *
 * Installing: the caller holds a slot whose restart_lsn is at or below the
 * file's LSN, so no checkpoint removes the file again (the server removes
 * snapshot files below the oldest logical slot's restart_lsn).  The file is
 * written durably under a temporary name and renamed into place; a file
 * already there is left alone (it is the same snapshot: one LSN, one
 * serialization, on the primary as on its physical standby).
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
#include "port/pg_crc32c.h"
#include "slot_marker.h"
#include "snapshot_file.h"
#include "storage/fd.h"
#include "utils/memutils.h"

/* The version-independent head of a serialized snapshot (snapbuild.c) */
#define SNAPSHOT_MAGIC				0x51A1E001
#define SNAPSHOT_VERSION			4	/* PostgreSQL 15's */
#define SNAPSHOT_OFFSET_MAGIC		0
#define SNAPSHOT_OFFSET_CHECKSUM	4
#define SNAPSHOT_OFFSET_VERSION		8	/* the checksum covers from here */
#define SNAPSHOT_OFFSET_LENGTH		12
#define SNAPSHOT_HEADER_SIZE		16

void
snapshot_file_path(char *path, XLogRecPtr lsn)
{
	snprintf(path, MAXPGPATH, "pg_logical/snapshots/%X-%X.snap",
			 LSN_FORMAT_ARGS(lsn));
}

bool
snapshot_file_exists(XLogRecPtr lsn)
{
	char		path[MAXPGPATH];
	struct stat st;

	snapshot_file_path(path, lsn);
	return stat(path, &st) == 0;
}

static uint32
read_uint32(const char *data, Size offset)
{
	uint32		value;

	memcpy(&value, data + offset, sizeof(value));
	return value;
}

/*
 * Is this a serialized snapshot the server would restore?  If not, says
 * why in "problem".
 */
bool
snapshot_data_check(const char *data, Size len, char *problem,
					Size problemlen)
{
	pg_crc32c	crc;

	if (len < SNAPSHOT_HEADER_SIZE)
	{
		snprintf(problem, problemlen, "it is %zu bytes long, shorter than its header",
				 len);
		return false;
	}
	if (read_uint32(data, SNAPSHOT_OFFSET_MAGIC) != SNAPSHOT_MAGIC)
	{
		snprintf(problem, problemlen, "it has magic number %u instead of %u",
				 read_uint32(data, SNAPSHOT_OFFSET_MAGIC), SNAPSHOT_MAGIC);
		return false;
	}
	if (read_uint32(data, SNAPSHOT_OFFSET_VERSION) != SNAPSHOT_VERSION)
	{
		snprintf(problem, problemlen, "it has version %u instead of %u",
				 read_uint32(data, SNAPSHOT_OFFSET_VERSION), SNAPSHOT_VERSION);
		return false;
	}
	if (read_uint32(data, SNAPSHOT_OFFSET_LENGTH) != len)
	{
		snprintf(problem, problemlen, "it says it is %u bytes long but is %zu",
				 read_uint32(data, SNAPSHOT_OFFSET_LENGTH), len);
		return false;
	}
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, data + SNAPSHOT_OFFSET_VERSION,
				len - SNAPSHOT_OFFSET_VERSION);
	FIN_CRC32C(crc);
	if (!EQ_CRC32C(crc, read_uint32(data, SNAPSHOT_OFFSET_CHECKSUM)))
	{
		snprintf(problem, problemlen, "its checksum is %u, should be %u",
				 crc, read_uint32(data, SNAPSHOT_OFFSET_CHECKSUM));
		return false;
	}
	return true;
}

/*
 * The serialized snapshot at "lsn" as a bytea, or NULL if there is none.
 */
bytea *
snapshot_file_read(XLogRecPtr lsn)
{
	char		path[MAXPGPATH];
	int			fd;
	struct stat st;
	bytea	   *result;
	ssize_t		nread;

	snapshot_file_path(path, lsn);
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ENOENT)
			return NULL;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	}
	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	if (st.st_size > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("file \"%s\" is too large", path)));
	result = (bytea *) palloc(st.st_size + VARHDRSZ);
	nread = read(fd, VARDATA(result), st.st_size);
	if (nread != st.st_size)
	{
		if (nread < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", path)));
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("could not read file \"%s\": read %zd of %zu",
						path, nread, (Size) st.st_size)));
	}
	CloseTransientFile(fd);
	SET_VARSIZE(result, st.st_size + VARHDRSZ);
	return result;
}

/*
 * Install a serialized snapshot received from the primary at "lsn" (see
 * the header comment for why the caller's slot keeps it).  An invalid one
 * is an ERROR and writes nothing.
 */
void
snapshot_file_install(XLogRecPtr lsn, const char *data, Size len)
{
	char		path[MAXPGPATH];
	char		tmppath[MAXPGPATH];
	char		problem[128];

	if (!snapshot_data_check(data, len, problem, sizeof(problem)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("serialized snapshot at %X/%X received from the primary server is not valid",
						LSN_FORMAT_ARGS(lsn)),
				 errdetail("The snapshot was not installed because %s.", problem)));

	if (snapshot_file_exists(lsn))
		return;

	snapshot_file_path(path, lsn);
	snprintf(tmppath, sizeof(tmppath), "%s.%d.tmp", path, MyProcPid);
	write_file_durably(path, tmppath, data, len);
}
