/*-------------------------------------------------------------------------
 *
 * primary_history.c
 *		What a standby fetches from the primary to make a copy of an old
 *		failover slot ready: WAL segments it never had, and logical rewrite
 *		mapping files it deleted.
 *
 * A standby built with pg_basebackup after the slots were created has no
 * WAL from before the backup, and a standby that held no logical slot has
 * deleted the mapping files replay wrote (restartpoints remove them all
 * then).  Decoding from a copy at the primary slot's restart_lsn needs both
 * (see sync_history.c).  The primary keeps both for its own slot: WAL from
 * the slot's restart_lsn, and mapping files at or above the oldest logical
 * slot's restart_lsn.  These functions hand them out:
 *
 *	- wal_segment_part(file_name, offset, length): bytes of a WAL segment
 *	  file in pg_wal;
 *	- logical_mapping_files(from_lsn): the mapping files at or above an LSN,
 *	  with their sizes;
 *	- logical_mapping_file(file_name): one mapping file.
 *
 * File names are accepted only in the server's own canonical form (24
 * hexadecimal digits for WAL; the rewrite mapping format, printed back to
 * the same string), so no name can reach outside pg_wal or
 * pg_logical/mappings.  Superuser or REPLICATION, as for streaming WAL.
 * A file that is gone (the slot moved on, a checkpoint removed it) is an
 * ERROR the standby reports and retries.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/rewriteheap.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"

PG_FUNCTION_INFO_V1(pg_slotsync_wal_segment_part);
PG_FUNCTION_INFO_V1(pg_slotsync_logical_mapping_files);
PG_FUNCTION_INFO_V1(pg_slotsync_logical_mapping_file);

#define MAPPINGS_DIR "pg_logical/mappings"

/*
 * Is this the canonical name of a logical rewrite mapping file?  Sets *lsn.
 */
static bool
mapping_file_name_ok(const char *name, XLogRecPtr *lsn)
{
	Oid			dboid;
	Oid			relid;
	uint32		hi;
	uint32		lo;
	TransactionId rewrite_xid;
	TransactionId create_xid;
	char		again[MAXPGPATH];

	if (strncmp(name, "map-", 4) != 0 ||
		sscanf(name, LOGICAL_REWRITE_FORMAT, &dboid, &relid, &hi, &lo,
			   &rewrite_xid, &create_xid) != 6)
		return false;
	snprintf(again, sizeof(again), LOGICAL_REWRITE_FORMAT,
			 dboid, relid, hi, lo, rewrite_xid, create_xid);
	if (strcmp(again, name) != 0)
		return false;
	*lsn = ((uint64) hi) << 32 | lo;
	return true;
}

/* Read "length" bytes at "offset" of a file into a new bytea. */
static bytea *
read_file_part(const char *path, off_t offset, int length)
{
	bytea	   *result = (bytea *) palloc(length + VARHDRSZ);
	int			fd;
	ssize_t		nread;

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	nread = pg_pread(fd, VARDATA(result), length, offset);
	if (nread < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", path)));
	CloseTransientFile(fd);
	SET_VARSIZE(result, nread + VARHDRSZ);
	return result;
}

/*
 * pg_slotsync.wal_segment_part(file_name text, "offset" integer,
 *		length integer) RETURNS bytea
 */
Datum
pg_slotsync_wal_segment_part(PG_FUNCTION_ARGS)
{
	char	   *name;
	int32		offset;
	int32		length;
	char		path[MAXPGPATH];

	check_caller_may_sync();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("file_name, offset and length must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	offset = PG_GETARG_INT32(1);
	length = PG_GETARG_INT32(2);
	if (!IsXLogFileName(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not the name of a WAL segment file", name)));
	if (offset < 0 || length < 0 || offset > wal_segment_size ||
		length > wal_segment_size - offset)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offset %d and length %d are outside a WAL segment of %d bytes",
						offset, length, wal_segment_size)));
	snprintf(path, sizeof(path), XLOGDIR "/%s", name);
	PG_RETURN_BYTEA_P(read_file_part(path, offset, length));
}

/*
 * pg_slotsync.logical_mapping_files(from_lsn pg_lsn) RETURNS SETOF
 *		(file_name text, lsn pg_lsn, size bigint)
 */
Datum
pg_slotsync_logical_mapping_files(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	XLogRecPtr	from;
	DIR		   *dir;
	struct dirent *de;

	check_caller_may_sync();
	from = PG_ARGISNULL(0) ? InvalidXLogRecPtr : PG_GETARG_LSN(0);
	InitMaterializedSRF(fcinfo, 0);

	dir = AllocateDir(MAPPINGS_DIR);
	while ((de = ReadDir(dir, MAPPINGS_DIR)) != NULL)
	{
		XLogRecPtr	lsn;
		char		path[MAXPGPATH];
		struct stat st;
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		if (!mapping_file_name_ok(de->d_name, &lsn) || lsn < from)
			continue;
		snprintf(path, sizeof(path), MAPPINGS_DIR "/%s", de->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;			/* removed meanwhile */
		values[0] = CStringGetTextDatum(de->d_name);
		values[1] = LSNGetDatum(lsn);
		values[2] = Int64GetDatum((int64) st.st_size);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 values, nulls);
	}
	FreeDir(dir);
	return (Datum) 0;
}

/*
 * pg_slotsync.logical_mapping_file(file_name text) RETURNS bytea
 */
Datum
pg_slotsync_logical_mapping_file(PG_FUNCTION_ARGS)
{
	char	   *name;
	XLogRecPtr	lsn;
	char		path[MAXPGPATH];
	struct stat st;

	check_caller_may_sync();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("file_name must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!mapping_file_name_ok(name, &lsn))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not the name of a logical rewrite mapping file",
						name)));
	snprintf(path, sizeof(path), MAPPINGS_DIR "/%s", name);
	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	if (st.st_size > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("file \"%s\" is too large", path)));
	PG_RETURN_BYTEA_P(read_file_part(path, 0, (int) st.st_size));
}
