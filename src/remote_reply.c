/*-------------------------------------------------------------------------
 *
 * remote_reply.c
 *		Running a query on the primary and reading the reply as what it is:
 *		input from the network, which may come from anything that answers
 *		the sync connection's address.
 *
 * The standby trusts its primary for the WAL it replays, as every physical
 * standby does, and for the failover slots it lists.  It does not trust
 * the bytes of a reply to have the shape the query asked for: a peer that
 * is not pg_slotsync (a wrong address, a proxy, something hostile) can
 * answer with any number of columns of any type, NULLs, garbage text, a
 * name longer than a name, an endless stream of rows.  Reading such a reply
 * with PQgetvalue() and friends as if it were right crashed the standby's
 * worker, and the postmaster then reinitialized the whole standby, in a
 * loop.  So every reply goes through here:
 *
 *	- each statement's result must be rows (PGRES_TUPLES_OK), with exactly
 *	  the columns expected, of exactly the type OIDs expected, in text
 *	  format; there must be one result per statement, no more, no fewer;
 *	- NULL only where the statement allows it, no zero byte inside a value;
 *	- at least min_rows and at most max_rows rows;
 *	- each row goes to the statement's row taker, which parses every value
 *	  it uses strictly (reply_lsn() and friends, remote_values.c) before
 *	  storing any.
 *
 * A statement given no columns (a generic query whose result its caller
 * checks, possibly in binary format) skips the shape, NULL and zero-byte
 * checks; its rows still come one at a time, bounded.
 *
 * The first problem refuses the whole reply with a message naming the
 * statement, the column, the row and (escaped, cut short) the value: one
 * bad row must not make the caller act on the others, since a slot missing
 * from a list means "dropped on the primary".
 *
 * Rows are read one at a time (libpq's single-row mode) and handed over at
 * once, so what libpq holds is one row however many come (one row is one
 * protocol message, which libpq must buffer whole: up to 1 GB, its own
 * limit), and what the row takers keep is bounded by max_rows.  After a
 * refused reply the rest of it is read and thrown away, so that the
 * connection stays usable, up to DRAIN_MAX_ROWS rows; beyond that, or on an
 * interruption, the connection is declared broken and the caller drops it.
 *
 * The values of the columns marked in_hash are folded into a hash of the
 * reply's content, with which sync_remote.c recognizes a reply that says
 * nothing new.
 *
 * Text that comes from the peer (error messages, notices, bad values) is
 * appended to log messages only through append_remote_text(): control
 * characters are escaped, so that a newline cannot start a forged log line,
 * bytes that are not valid in the server encoding are escaped too, and the
 * text is cut at a length.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "remote_reply.h"
#include "storage/latch.h"
#include "utils/builtins.h"

/* How often a wait wakes up to ask whether to give up. */
#define REMOTE_POLL_MS 50

/* Rows of a refused reply read and thrown away before giving up on it. */
#define DRAIN_MAX_ROWS 100000

/*
 * Wait until the socket is ready for "events" or the latch is set; returns
 * false if the caller asked to give up.
 */
bool
reply_wait_socket(PGconn *conn, int events, bool (*interrupted) (void))
{
	int			rc;

	rc = WaitLatchOrSocket(MyLatch,
						   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | events,
						   PQsocket(conn), REMOTE_POLL_MS, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	return interrupted == NULL || !interrupted();
}

/*
 * Append peer text, escaped: printable ASCII as it is, control characters
 * as \n, \r, \t or \xNN, and bytes above 127 as they are only when the whole
 * text is valid in the server encoding (else as \xNN).  At most maxlen
 * bytes of the text are used; "..." marks a cut.
 */
void
append_remote_text(StringInfo buf, const char *str, int maxlen)
{
	int			len = strlen(str);
	bool		cut = len > maxlen;
	bool		valid;

	if (cut)
		len = maxlen;
	valid = pg_verifymbstr(str, len, true);
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) str[i];

		if (c == '\n')
			appendStringInfoString(buf, "\\n");
		else if (c == '\r')
			appendStringInfoString(buf, "\\r");
		else if (c == '\t')
			appendStringInfoString(buf, "\\t");
		else if (c == '\\')
			appendStringInfoString(buf, "\\\\");
		else if (c < 0x20 || c == 0x7f || (c > 0x7f && !valid))
			appendStringInfo(buf, "\\x%02x", c);
		else
			appendStringInfoChar(buf, c);
	}
	if (cut)
		appendStringInfoString(buf, "...");
}

/* Peer text, escaped and without its trailing newline, palloc'd. */
char *
remote_text(const char *str)
{
	StringInfoData buf;
	char	   *copy = pstrdup(str ? str : "");

	initStringInfo(&buf);
	append_remote_text(&buf, pchomp(copy), 1000);
	pfree(copy);
	return buf.data;
}

/* ---------------------------------------------------------------------
 * Running a query
 * ---------------------------------------------------------------------
 */

/* Where reply_run() is in the reply. */
typedef struct ReplyState
{
	const ReplyStatement *statements;
	int			nstatements;
	int			current;		/* statement the next result belongs to */
	int			rows;			/* rows of the current statement so far */
	bool		shape_checked;
	bool		refused;		/* a problem found; reading the rest */
	int			drained;		/* rows read after that */
	uint64		hash;
	StringInfo	err;
} ReplyState;

static void
refuse(ReplyState *st, const char *fmt,...) pg_attribute_printf(2, 3);

static void
refuse(ReplyState *st, const char *fmt,...)
{
	const char *what = st->current < st->nstatements ?
	st->statements[st->current].what : "the query";

	if (st->refused)
		return;
	st->refused = true;
	appendStringInfo(st->err, "malformed reply to %s: ", what);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(st->err, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(st->err, needed);
	}
}

/* The RowDescription: column count, types, text format. */
static bool
check_shape(ReplyState *st, const PGresult *res)
{
	const ReplyStatement *s = &st->statements[st->current];

	if (s->columns == NULL)
		return true;
	if (PQnfields(res) != s->ncolumns)
	{
		refuse(st, "%d columns instead of %d", PQnfields(res), s->ncolumns);
		return false;
	}
	for (int c = 0; c < s->ncolumns; c++)
	{
		if (PQftype(res, c) != s->columns[c].type)
		{
			refuse(st, "column \"%s\" has type OID %u instead of %u",
				   s->columns[c].name, PQftype(res, c), s->columns[c].type);
			return false;
		}
		if (PQfformat(res, c) != 0)
		{
			refuse(st, "column \"%s\" is not in text format",
				   s->columns[c].name);
			return false;
		}
	}
	return true;
}

/* NULLs, zero bytes, then the row taker; folds the row into the hash. */
static void
take_row(ReplyState *st, const PGresult *res, int tuple)
{
	const ReplyStatement *s = &st->statements[st->current];
	StringInfoData why;
	ReplyRow	row;

	for (int c = 0; s->columns != NULL && c < s->ncolumns; c++)
	{
		const char *v = PQgetvalue(res, tuple, c);

		if (PQgetisnull(res, tuple, c))
		{
			if (!s->columns[c].nullable)
			{
				refuse(st, "column \"%s\" of row %d is null",
					   s->columns[c].name, st->rows);
				return;
			}
			v = NULL;
		}
		else if ((int) strlen(v) != PQgetlength(res, tuple, c))
		{
			refuse(st, "column \"%s\" of row %d contains a zero byte",
				   s->columns[c].name, st->rows);
			return;
		}
		if (s->columns[c].in_hash)
			st->hash = hash_combine64(st->hash, v == NULL ? 0 :
									  hash_bytes_extended((const unsigned char *) v,
														  strlen(v), c + 1));
	}

	initStringInfo(&why);
	row.statement = s;
	row.res = res;
	row.tuple = tuple;
	row.rowno = st->rows;
	row.err = &why;
	if (!s->take_row(s->arg, &row))
		refuse(st, "%s", why.data);
	pfree(why.data);
}

/*
 * One result of the reply.  Returns false when reading must stop at once
 * (the connection is then broken).
 */
static bool
take_result(ReplyState *st, PGresult *res)
{
	ExecStatusType status = PQresultStatus(res);
	bool		last = (status == PGRES_TUPLES_OK);

	if (st->current >= st->nstatements)
	{
		refuse(st, "more results than statements");
		return ++st->drained <= DRAIN_MAX_ROWS;
	}
	if (status != PGRES_SINGLE_TUPLE && status != PGRES_TUPLES_OK)
	{
		refuse(st, "a result that is not rows");
		last = true;
	}
	else if (!st->refused && !st->shape_checked)
		st->shape_checked = check_shape(st, res);

	for (int i = 0; i < PQntuples(res); i++)
	{
		if (st->refused)
			st->drained++;
		else if (++st->rows > st->statements[st->current].max_rows)
			refuse(st, "more than %d row%s",
				   st->statements[st->current].max_rows,
				   st->statements[st->current].max_rows == 1 ? "" : "s");
		else
			take_row(st, res, i);
	}

	if (last)
	{
		if (!st->refused && st->rows < st->statements[st->current].min_rows)
			refuse(st, "%d rows instead of at least %d", st->rows,
				   st->statements[st->current].min_rows);
		st->current++;
		st->rows = 0;
		st->shape_checked = false;
	}
	return st->drained <= DRAIN_MAX_ROWS;
}

/* The server's error, as "SQLSTATE:message" (message escaped). */
static void
server_error(StringInfo err, const PGresult *res)
{
	const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (sqlstate != NULL && strlen(sqlstate) == 5 &&
		strspn(sqlstate, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 5)
		appendStringInfo(err, "%s:", sqlstate);
	appendStringInfoString(err, remote_text(msg ? msg : PQresultErrorMessage(res)));
}

/*
 * Read the reply to what was just sent; see reply_run().
 */
static ReplyOutcome
read_reply(PGconn *conn, const ReplyStatement *statements, int nstatements,
		   bool (*interrupted) (void), uint64 *hash, StringInfo err)
{
	ReplyState	st;
	bool		server_failed = false;

	memset(&st, 0, sizeof(st));
	st.statements = statements;
	st.nstatements = nstatements;
	st.err = err;

	if (!PQsetSingleRowMode(conn))
	{
		appendStringInfoString(err, "could not read the reply row by row");
		return REPLY_BROKEN;
	}

	for (;;)
	{
		PGresult   *res;
		bool		go_on;

		while (PQisBusy(conn))
		{
			if (!reply_wait_socket(conn, WL_SOCKET_READABLE, interrupted))
			{
				resetStringInfo(err);
				appendStringInfoString(err, "interrupted");
				return REPLY_INTERRUPTED;
			}
			if (!PQconsumeInput(conn))
			{
				resetStringInfo(err);
				appendStringInfoString(err, remote_text(PQerrorMessage(conn)));
				return REPLY_BROKEN;
			}
		}
		res = PQgetResult(conn);
		if (res == NULL)
			break;
		if (PQresultStatus(res) == PGRES_FATAL_ERROR && !server_failed)
		{
			/* the server's own error says more than any shape problem */
			server_failed = true;
			resetStringInfo(err);
			server_error(err, res);
			st.refused = true;
			PQclear(res);
			continue;
		}
		go_on = server_failed ? true : take_result(&st, res);
		PQclear(res);
		if (!go_on)
			return REPLY_BROKEN;
	}

	if (PQstatus(conn) != CONNECTION_OK)
	{
		if (!server_failed)
		{
			resetStringInfo(err);
			appendStringInfoString(err, remote_text(PQerrorMessage(conn)));
		}
		return REPLY_BROKEN;
	}
	if (!st.refused && st.current < nstatements)
		refuse(&st, "%d results instead of %d", st.current, nstatements);
	if (st.refused)
		return REPLY_FAILED;
	if (hash != NULL)
		*hash = st.hash;
	return REPLY_OK;
}

/*
 * Send "sql" (its statements as listed) and read the reply.  On REPLY_OK
 * every row went to its taker and *hash covers the in_hash columns.
 * Otherwise err says why; after REPLY_BROKEN or REPLY_INTERRUPTED the
 * connection must not be used again.
 */
ReplyOutcome
reply_run(PGconn *conn, const char *sql, const ReplyStatement *statements,
		  int nstatements, bool (*interrupted) (void), uint64 *hash,
		  StringInfo err)
{
	if (!PQsendQuery(conn, sql))
	{
		appendStringInfoString(err, remote_text(PQerrorMessage(conn)));
		return REPLY_BROKEN;
	}
	return read_reply(conn, statements, nstatements, interrupted, hash, err);
}

/*
 * The same for one statement with text parameters, its result in text or
 * binary format.
 */
ReplyOutcome
reply_run_params(PGconn *conn, const char *sql, int nparams,
				 const char *const *params, bool binary,
				 const ReplyStatement *statement, bool (*interrupted) (void),
				 StringInfo err)
{
	if (!PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL,
						   binary ? 1 : 0))
	{
		appendStringInfoString(err, remote_text(PQerrorMessage(conn)));
		return REPLY_BROKEN;
	}
	return read_reply(conn, statement, 1, interrupted, NULL, err);
}
