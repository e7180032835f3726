/*-------------------------------------------------------------------------
 *
 * sync_remote_queries.c
 *		The standby's other questions to its primary: a generic query (the
 *		history fetch's, sync_history.c) and the serialized snapshots of a
 *		cycle's slots.
 *
 * Both go through remote_run_checked() (sync_remote.c) and so through
 * remote_reply.c's checks: a generic query's values are copied out of
 * libpq row by row, at most QUERY_MAX_BYTES in all; a snapshot reply must
 * answer exactly the slots asked, in the order asked, each with a restart
 * LSN and the file's bytes (or none), before anything reaches the caller.
 * What the bytes hold is checked where they are installed
 * (snapshot_file.c).
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "slot_sync.h"
#include "sync_remote_int.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* ---------------------------------------------------------------------
 * A generic query
 * ---------------------------------------------------------------------
 */

/* Most a generic query's result may hold, values and all. */
#define QUERY_MAX_BYTES		(256 * 1024 * 1024)

/* A generic result being copied out of libpq, row by row. */
typedef struct QueryCopy
{
	RemoteResult *r;
	int			allocated;		/* rows there is room for */
	Size		bytes;
} QueryCopy;

static bool
take_query_row(void *arg, const ReplyRow *row)
{
	QueryCopy  *q = (QueryCopy *) arg;
	RemoteResult *r = q->r;
	int			ncols = PQnfields(row->res);

	if (r->nrows == 0 && r->ncols == 0)
		r->ncols = ncols;
	if (ncols != r->ncols)
	{
		appendStringInfo(row->err, "row %d has %d columns, not %d",
						 row->rowno, ncols, r->ncols);
		return false;
	}
	if (r->nrows == q->allocated)
	{
		q->allocated = Max(16, q->allocated * 2);
		r->values = repalloc(r->values,
							 sizeof(char *) * q->allocated * Max(ncols, 1));
		r->lengths = repalloc(r->lengths,
							  sizeof(int) * q->allocated * Max(ncols, 1));
	}
	for (int col = 0; col < ncols; col++)
	{
		int			i = r->nrows * ncols + col;
		int			len;

		r->values[i] = NULL;
		r->lengths[i] = 0;
		if (PQgetisnull(row->res, row->tuple, col))
			continue;
		len = PQgetlength(row->res, row->tuple, col);
		q->bytes += len + 1;
		if (q->bytes > QUERY_MAX_BYTES)
		{
			appendStringInfo(row->err, "more than %d MB",
							 QUERY_MAX_BYTES / (1024 * 1024));
			return false;
		}
		r->values[i] = palloc(len + 1);
		memcpy(r->values[i], PQgetvalue(row->res, row->tuple, col), len);
		r->values[i][len] = '\0';
		r->lengths[i] = len;
	}
	r->nrows++;
	return true;
}

/*
 * Run one statement with text parameters, and copy its result into palloc'd
 * memory: rows of (value, length, isnull), binary values with "binary".
 * The values are the caller's to check; we bound their total size.
 */
RemoteFailure
primary_query(PrimaryConn *pc, const char *sql, int nparams,
			  const char *const *params, bool binary, RemoteResult **result,
			  bool (*interrupted) (void), StringInfo errbuf)
{
	QueryCopy	q = {0};
	ReplyStatement statement = {
		"a query", NULL, 0, 0, MAX_BACKENDS, take_query_row, &q
	};
	StringInfoData err;
	RemoteFailure failure;

	if (!remote_usable(pc, errbuf))
		return REMOTE_ERROR;
	q.r = palloc0(sizeof(RemoteResult));
	q.r->values = palloc0(sizeof(char *));
	q.r->lengths = palloc0(sizeof(int));
	initStringInfo(&err);
	failure = remote_outcome(pc, reply_run_params(pc->conn, sql, nparams,
												  params, binary, &statement,
												  interrupted, &err),
							 &err, errbuf);
	if (failure == REMOTE_OK)
		*result = q.r;
	return failure;
}

/* ---------------------------------------------------------------------
 * Serialized snapshots
 * ---------------------------------------------------------------------
 */

/* The slots asked about, and where the answer for each goes. */
typedef struct SnapshotAnswers
{
	const RemoteSlot *const *slots;
	RemoteSnapshot *out;
	int			nslots;
	int			next;			/* rows come in the order asked */
} SnapshotAnswers;

static bool
take_snapshot(void *arg, const ReplyRow *row)
{
	SnapshotAnswers *answers = (SnapshotAnswers *) arg;
	NameData	name;
	RemoteSnapshot *snap = NULL;

	if (!reply_slot_name(row, 0, &name))
		return false;
	/* the rows come in the order asked, less those of vanished slots */
	for (int i = answers->next; i < answers->nslots; i++)
	{
		if (strcmp(NameStr(answers->slots[i]->name), NameStr(name)) == 0)
		{
			snap = &answers->out[i];
			answers->next = i + 1;
			break;
		}
	}
	if (snap == NULL)
	{
		appendStringInfo(row->err,
						 "row %d: replication slot \"%s\" was not asked for, or not in this place",
						 row->rowno, NameStr(name));
		return false;
	}
	snap->slot_found = true;
	if (!reply_lsn(row, 1, &snap->restart_lsn))
		return false;
	return reply_isnull(row, 2) || reply_bytea(row, 2, &snap->data, &snap->len);
}

/*
 * The primary's serialized snapshots at the current restart_lsn of each of
 * the given slots, in one round trip.  out[i] answers slots[i]: a slot the
 * primary no longer has reads as !slot_found.  The files are palloc'd in
 * the current memory context.
 */
RemoteFailure
primary_fetch_snapshots(PrimaryConn *pc, const RemoteSlot *const *slots,
						int nslots, RemoteSnapshot *out,
						bool (*interrupted) (void), StringInfo errbuf)
{
	static const ReplyColumn columns[] = {
		{"slot_name", NAMEOID, false, false},
		{"restart_lsn", LSNOID, false, false},
		{"snapshot", BYTEAOID, true, false}
	};
	SnapshotAnswers answers = {slots, out, nslots, 0};
	ReplyStatement statement = {
		"pg_slotsync.failover_slot_snapshots()", columns, lengthof(columns),
		0, nslots, take_snapshot, &answers
	};
	StringInfoData sql;
	RemoteFailure failure;

	memset(out, 0, sizeof(RemoteSnapshot) * nslots);
	if (nslots == 0)
		return REMOTE_OK;

	initStringInfo(&sql);
	appendStringInfoString(&sql,
						   "SELECT slot_name, restart_lsn, snapshot "
						   "FROM pg_slotsync.failover_slot_snapshots(ARRAY[");
	for (int i = 0; i < nslots; i++)
	{
		const char *name = NameStr(slots[i]->name);
		char	   *lit = PQescapeLiteral(pc->conn, name, strlen(name));

		if (lit == NULL)
		{
			appendStringInfoString(errbuf, remote_text(PQerrorMessage(pc->conn)));
			pfree(sql.data);
			return REMOTE_ERROR;
		}
		appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "", lit);
		PQfreemem(lit);
	}
	appendStringInfoString(&sql, "]::pg_catalog.name[])");

	failure = remote_run_checked(pc, sql.data, &statement, 1, interrupted, NULL,
						  errbuf);
	pfree(sql.data);
	if (failure != REMOTE_OK)
		memset(out, 0, sizeof(RemoteSnapshot) * nslots);
	return failure;
}
