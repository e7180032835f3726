/*-------------------------------------------------------------------------
 *
 * sync_history.c
 *		Completing the standby's past for a copy of an old failover slot:
 *		WAL segments it never had and logical rewrite mapping files it
 *		deleted, fetched from the primary.
 *
 * Decoding from a copy that starts at its primary slot's restart_lsn R
 * needs, besides the serialized snapshot at R (snapshot_file.c), every WAL
 * segment from R on and every rewrite mapping file at or above R (those
 * replay wrote for catalogs rewritten by VACUUM FULL or CLUSTER).  From the
 * anchor's start on, our slots keep both on the standby (sync_anchor.c).
 * Before it, a standby built with pg_basebackup never had the WAL from
 * before its backup, and a standby without logical slots deleted every
 * mapping file at each restartpoint.  The primary still has both for its
 * own slot.  So for a slot older than the anchor, the copy is created at R
 * (reserving WAL and keeping mapping files from there on), marked
 * "history pending", and then:
 *
 *	1. every WAL segment from R's segment up to the oldest segment of the
 *	   standby's contiguous WAL (sync_history_local()) that the standby
 *	   lacks is fetched, checked page by page (magic, the page's address,
 *	   the timeline, and in the first page the system identifier, segment
 *	   and block size; a zero-filled tail after a segment switch is
 *	   accepted), and written under its final name only if no file of that
 *	   name exists: a segment the standby has is never overwritten;
 *	2. the first page of the standby's oldest own segment is compared with
 *	   the primary's: the fetched WAL and the standby's are one stream;
 *	3. every mapping file at or above R that the standby lacks is fetched
 *	   and written (its temporary name does not begin with "map-", which
 *	   the checkpointer would try to parse);
 *
 * and only then is the mark taken away (sync_decide.c decides; sync_apply.c
 * changes the marker).  A copy is never ready with its history pending.
 *
 * What cannot be fetched: WAL this server removed since it started
 * (walsenders refuse to read a segment at or below the last one removed,
 * whatever pg_wal holds then), more than pg_slotsync.max_wal_fetch, or WAL
 * the primary no longer has.  Such copies wait for their slot's consumer
 * to move past the anchor instead, and say why.
 *
 * Files are written with write_file_durably() (fsync'ed, renamed into
 * place, directory fsync'ed), so a crash leaves none half-written under a
 * name the server reads.  A fetched segment gets the archive status the
 * walreceiver would have given it, so it is not archived a second time.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "access/timeline.h"
#include "access/xlog.h"
#include "access/xlogarchive.h"
#include "access/xlog_internal.h"
#include "access/xlogrecovery.h"
#include "miscadmin.h"
#include "slot_marker.h"
#include "slot_sync.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/pg_lsn.h"

#define MAPPINGS_DIR		"pg_logical/mappings"
#define WAL_FETCH_CHUNK		(4 * 1024 * 1024)

/* The timeline a whole segment is read from: that of its last byte. */
static TimeLineID
segment_tli(XLogSegNo segno, List *history)
{
	XLogRecPtr	last;

	XLogSegNoOffsetToRecPtr(segno + 1, 0, wal_segment_size, last);
	return tliOfPointInHistory(last - 1, history);
}

static List *
replay_history(void)
{
	TimeLineID	tli;

	(void) GetXLogReplayRecPtr(&tli);
	return readTimeLineHistory(tli);
}

static bool
file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/*
 * What the standby has of its own past: the oldest LSN from which every WAL
 * segment up to the replay position is present, and the end of the last
 * segment this server removed since it started.
 */
void
sync_history_local(LocalHistory *h)
{
	List	   *history = replay_history();
	XLogRecPtr	replay = GetXLogReplayRecPtr(NULL);
	XLogSegNo	segno;
	XLogSegNo	removed = XLogGetLastRemovedSegno();
	char		path[MAXPGPATH];

	/* the segment of the last byte replayed: it exists */
	XLByteToPrevSeg(replay, segno, wal_segment_size);
	for (;;)
	{
		char		name[MAXFNAMELEN];

		XLogFileName(name, segment_tli(segno, history), segno,
					 wal_segment_size);
		snprintf(path, sizeof(path), XLOGDIR "/%s", name);
		if (segno == 0 || !file_exists(path))
			break;
		segno--;
	}
	/* segno is missing (or 0): the WAL present starts after it */
	XLogSegNoOffsetToRecPtr(segno + 1, 0, wal_segment_size, h->wal_from);
	h->removed_upto = InvalidXLogRecPtr;
	if (removed > 0)
		XLogSegNoOffsetToRecPtr(removed + 1, 0, wal_segment_size,
								h->removed_upto);
	h->known = true;
	list_free_deep(history);
}

/*
 * Is this a WAL segment of ours, as the primary sent it?  Says why not.
 */
static bool
segment_is_valid(const char *buf, XLogSegNo segno, TimeLineID tli,
				 char *problem, Size problemlen)
{
	XLogRecPtr	start;

	XLogSegNoOffsetToRecPtr(segno, 0, wal_segment_size, start);
	for (int off = 0; off < wal_segment_size; off += XLOG_BLCKSZ)
	{
		const XLogPageHeaderData *page = (const XLogPageHeaderData *) (buf + off);

		if (page->xlp_magic == 0 && off > 0)
		{
			/* after a segment switch, the rest is zeros */
			for (int i = off; i < wal_segment_size; i++)
				if (buf[i] != 0)
				{
					snprintf(problem, problemlen, "the zero-filled tail of the segment has data at offset %d", i);
					return false;
				}
			return true;
		}
		if (page->xlp_magic != XLOG_PAGE_MAGIC ||
			page->xlp_pageaddr != start + off || page->xlp_tli > tli ||
			page->xlp_tli == 0)
		{
			snprintf(problem, problemlen, "the page at offset %d has a wrong header", off);
			return false;
		}
		if (off == 0)
		{
			const XLogLongPageHeaderData *lh = (const XLogLongPageHeaderData *) buf;

			if (!(page->xlp_info & XLP_LONG_HEADER) ||
				lh->xlp_sysid != GetSystemIdentifier() ||
				lh->xlp_seg_size != wal_segment_size ||
				lh->xlp_xlog_blcksz != XLOG_BLCKSZ)
			{
				snprintf(problem, problemlen, "its first page is not of this cluster");
				return false;
			}
		}
	}
	return true;
}

/* Bytes [offset, offset + length) of a WAL segment file of the primary. */
static RemoteFailure
fetch_wal_part(PrimaryConn *conn, const char *name, int offset, int length,
			   char *dest, bool (*interrupted) (void), StringInfo errbuf)
{
	char		offset_text[16];
	char		length_text[16];
	const char *params[3] = {name, offset_text, length_text};
	RemoteResult *res;
	RemoteFailure failure;

	snprintf(offset_text, sizeof(offset_text), "%d", offset);
	snprintf(length_text, sizeof(length_text), "%d", length);
	failure = primary_query(conn,
							"SELECT pg_slotsync.wal_segment_part($1, $2::pg_catalog.int4, $3::pg_catalog.int4)",
							3, params, true, &res, interrupted, errbuf);
	if (failure != REMOTE_OK)
		return failure;
	if (res->nrows != 1 || res->ncols != 1 || res->values[0] == NULL ||
		res->lengths[0] != length)
	{
		appendStringInfo(errbuf, "the primary server sent %d bytes of WAL segment %s at offset %d, not %d",
						 res->nrows == 1 && res->ncols == 1 ? res->lengths[0] : -1,
						 name, offset, length);
		return REMOTE_ERROR;
	}
	memcpy(dest, res->values[0], length);
	return REMOTE_OK;
}

/*
 * Give a fetched segment the archive status the walreceiver gives the
 * segments it streams: the primary archives them, so "done", unless this
 * standby archives everything it has (archive_mode = always).  Without a
 * status, the segment would be archived again once it is removed after a
 * promotion, and an archive_command that refuses to overwrite (test ! -f)
 * would stop archiving for good.
 */
static void
mark_fetched_segment_archived(const char *name)
{
	if (XLogArchiveMode == ARCHIVE_MODE_ALWAYS)
		XLogArchiveNotify(name);
	else
		XLogArchiveForceDone(name);
}

/* Fetch, check and write one WAL segment the standby lacks. */
static RemoteFailure
fetch_segment(PrimaryConn *conn, XLogSegNo segno, List *history,
			  bool (*interrupted) (void), StringInfo errbuf)
{
	TimeLineID	tli = segment_tli(segno, history);
	char		name[MAXFNAMELEN];
	char		path[MAXPGPATH];
	char		tmppath[MAXPGPATH];
	char		problem[128];
	char	   *buf = palloc(wal_segment_size);
	RemoteFailure failure;

	XLogFileName(name, tli, segno, wal_segment_size);
	snprintf(path, sizeof(path), XLOGDIR "/%s", name);
	if (file_exists(path))
		return REMOTE_OK;

	for (int off = 0; off < wal_segment_size; off += WAL_FETCH_CHUNK)
	{
		int			len = Min(WAL_FETCH_CHUNK, wal_segment_size - off);

		failure = fetch_wal_part(conn, name, off, len, buf + off,
								 interrupted, errbuf);
		if (failure != REMOTE_OK)
			return failure;
	}
	if (!segment_is_valid(buf, segno, tli, problem, sizeof(problem)))
	{
		appendStringInfo(errbuf, "WAL segment %s from the primary server is not valid: %s",
						 name, problem);
		return REMOTE_ERROR;
	}

	/* never overwrite a segment the standby has */
	if (file_exists(path))
		return REMOTE_OK;
	snprintf(tmppath, sizeof(tmppath), XLOGDIR "/slotsync.%d.tmp", MyProcPid);
	write_file_durably(path, tmppath, buf, wal_segment_size);
	mark_fetched_segment_archived(name);
	pfree(buf);
	return REMOTE_OK;
}

/*
 * The first page of the standby's oldest own segment must be the primary's:
 * then the fetched WAL before it and the standby's are one stream.
 */
static RemoteFailure
check_continuity(PrimaryConn *conn, XLogRecPtr wal_from, List *history,
				 bool (*interrupted) (void), StringInfo errbuf)
{
	XLogSegNo	segno;
	char		name[MAXFNAMELEN];
	char		path[MAXPGPATH];
	char		theirs[XLOG_BLCKSZ];
	char		ours[XLOG_BLCKSZ];
	RemoteFailure failure;
	int			fd;

	XLByteToSeg(wal_from, segno, wal_segment_size);
	XLogFileName(name, segment_tli(segno, history), segno, wal_segment_size);
	failure = fetch_wal_part(conn, name, 0, XLOG_BLCKSZ, theirs, interrupted,
							 errbuf);
	if (failure != REMOTE_OK)
		return failure;

	snprintf(path, sizeof(path), XLOGDIR "/%s", name);
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0 || pg_pread(fd, ours, XLOG_BLCKSZ, 0) != XLOG_BLCKSZ)
	{
		if (fd >= 0)
			CloseTransientFile(fd);
		appendStringInfo(errbuf, "could not read WAL segment %s of the standby", name);
		return REMOTE_ERROR;
	}
	CloseTransientFile(fd);
	if (memcmp(ours, theirs, XLOG_BLCKSZ) != 0)
	{
		appendStringInfo(errbuf, "WAL segment %s differs between the primary and the standby", name);
		return REMOTE_ERROR;
	}
	return REMOTE_OK;
}

/* Fetch and write one mapping file the standby lacks. */
static RemoteFailure
fetch_mapping(PrimaryConn *conn, const char *name, bool (*interrupted) (void),
			  StringInfo errbuf)
{
	const char *params[1] = {name};
	RemoteResult *res;
	RemoteFailure failure;
	char		path[MAXPGPATH];
	char		tmppath[MAXPGPATH];

	snprintf(path, sizeof(path), MAPPINGS_DIR "/%s", name);
	if (file_exists(path))
		return REMOTE_OK;
	failure = primary_query(conn,
							"SELECT pg_slotsync.logical_mapping_file($1)",
							1, params, true, &res, interrupted, errbuf);
	if (failure != REMOTE_OK)
		return failure;
	if (res->nrows != 1 || res->ncols != 1 || res->values[0] == NULL)
	{
		appendStringInfo(errbuf, "the primary server sent no mapping file %s", name);
		return REMOTE_ERROR;
	}
	if (file_exists(path))
		return REMOTE_OK;
	/* not "map-...": the checkpointer parses every file named so */
	snprintf(tmppath, sizeof(tmppath), MAPPINGS_DIR "/slotsync.%d.tmp",
			 MyProcPid);
	write_file_durably(path, tmppath, res->values[0], res->lengths[0]);
	return REMOTE_OK;
}

/* The primary's mapping files at or above "from" that the standby lacks. */
static RemoteFailure
fetch_mappings(PrimaryConn *conn, XLogRecPtr from, bool (*interrupted) (void),
			   StringInfo errbuf, int *nfetched)
{
	char		from_text[32];
	const char *params[1] = {from_text};
	RemoteResult *res;
	RemoteFailure failure;

	snprintf(from_text, sizeof(from_text), "%X/%X", LSN_FORMAT_ARGS(from));
	failure = primary_query(conn,
							"SELECT file_name FROM pg_slotsync.logical_mapping_files($1::pg_catalog.pg_lsn)",
							1, params, false, &res, interrupted, errbuf);
	if (failure != REMOTE_OK)
		return failure;
	if (res->nrows > 0 && res->ncols != 1)
	{
		appendStringInfo(errbuf, "the primary server's list of mapping files has %d columns, expected 1",
						 res->ncols);
		return REMOTE_ERROR;
	}
	for (int row = 0; row < res->nrows; row++)
	{
		const char *name = res->values[row];

		/* only what the primary may send: its own canonical names */
		if (name == NULL || strncmp(name, "map-", 4) != 0 ||
			strchr(name, '/') != NULL || strlen(name) >= MAXFNAMELEN)
		{
			appendStringInfoString(errbuf, "the primary server sent an invalid mapping file name");
			return REMOTE_ERROR;
		}
		failure = fetch_mapping(conn, name, interrupted, errbuf);
		if (failure != REMOTE_OK)
			return failure;
		(*nfetched)++;
	}
	return REMOTE_OK;
}

/*
 * Complete the standby's history from "from" on (see the header comment).
 * The caller holds a copy at "from", so nothing fetched is removed again.
 */
RemoteFailure
sync_history_fetch(PrimaryConn *conn, XLogRecPtr from, const LocalHistory *h,
				   bool (*interrupted) (void), StringInfo errbuf)
{
	List	   *history = replay_history();
	XLogSegNo	first;
	XLogSegNo	upto;
	RemoteFailure failure = REMOTE_OK;
	int			nsegments = 0;
	int			nmappings = 0;

	XLByteToSeg(from, first, wal_segment_size);
	XLByteToSeg(h->wal_from, upto, wal_segment_size);
	for (XLogSegNo segno = first; segno < upto && failure == REMOTE_OK; segno++)
	{
		failure = fetch_segment(conn, segno, history, interrupted, errbuf);
		nsegments++;
	}
	if (failure == REMOTE_OK && nsegments > 0)
		failure = check_continuity(conn, h->wal_from, history, interrupted,
								   errbuf);
	if (failure == REMOTE_OK)
		failure = fetch_mappings(conn, from, interrupted, errbuf, &nmappings);
	list_free_deep(history);

	if (failure == REMOTE_OK && (nsegments > 0 || nmappings > 0))
		ereport(LOG,
				(errmsg("fetched %d WAL segments and %d logical rewrite mapping files from the primary server, from %X/%X on",
						nsegments, nmappings, LSN_FORMAT_ARGS(from))));
	return failure;
}
