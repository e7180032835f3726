/*-------------------------------------------------------------------------
 *
 * sync_remote.c
 *		The standby's libpq connection to the primary: connecting, checking
 *		the extension there, and the queries a sync cycle sends.
 *
 * The connection is an ordinary (non-replication) libpq session.  Its
 * connection string is the standby's own primary_conninfo, password
 * included, with pg_slotsync.primary_dbname as its database when set: HA
 * tools such as Patroni rewrite primary_conninfo without a dbname at every
 * leader change, and this way the worker follows the primary the
 * walreceiver follows.  pg_slotsync.primary_conninfo, when set, replaces
 * all of that.
 * The password is never logged: errors quote libpq's message only.
 *
 * On top of the connection string we set a connect timeout and TCP
 * keepalives, so that a primary that vanishes without closing the socket is
 * noticed, and an application_name that names the worker, overriding one in
 * the connection string (a standby usually has one there, for synchronous
 * replication).  Right after connecting the session's search_path is set to
 * empty; every object we name is schema-qualified and every value we send
 * is quoted with libpq's escaping.
 *
 * After connecting we check that pg_slotsync is installed in that database
 * at the version this library needs (its functions' result columns are what
 * we parse), so that a missing or old extension is reported as such.
 *
 * A cycle sends one query (a multi-statement string: the long-poll, then
 * the list of failover slots, read in the same session right after), and,
 * when some copies need them, one more for the serialized snapshots of all
 * those slots at once.
 *
 * Everything is asynchronous: while connecting or waiting for a result we
 * sleep on the process latch and the socket together, and give up at once
 * when the caller's "interrupted" test says so (promotion, shutdown, a
 * configuration change).  The long-poll call can therefore never delay a
 * promotion.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xlogrecovery.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "pgstat.h"
#include "slot_sync.h"
#include "sync_remote.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"

struct PrimaryConn
{
	PGconn	   *conn;
};

/* How often a wait wakes up to ask whether to give up. */
#define REMOTE_POLL_MS 50

/*
 * The connection string the worker uses: pg_slotsync.primary_conninfo when
 * set, else the standby's own primary_conninfo (with
 * pg_slotsync.primary_dbname as its database, see primary_connect()).
 */
const char *
slot_sync_conninfo(void)
{
	if (pg_slotsync_primary_conninfo != NULL &&
		pg_slotsync_primary_conninfo[0] != '\0')
		return pg_slotsync_primary_conninfo;
	return PrimaryConnInfo;
}

/*
 * The database the worker connects to on the primary, palloc'd, or NULL
 * if none is named anywhere.
 */
char *
slot_sync_dbname(void)
{
	bool		own = pg_slotsync_primary_conninfo != NULL &&
		pg_slotsync_primary_conninfo[0] != '\0';

	if (!own && pg_slotsync_primary_dbname != NULL &&
		pg_slotsync_primary_dbname[0] != '\0')
		return pstrdup(pg_slotsync_primary_dbname);
	return conninfo_dbname(slot_sync_conninfo());
}

/*
 * The dbname in a connection string, palloc'd, or NULL if none (or the
 * string does not parse).
 */
char *
conninfo_dbname(const char *conninfo)
{
	PQconninfoOption *opts;
	char	   *dbname = NULL;

	if (conninfo == NULL || conninfo[0] == '\0')
		return NULL;
	opts = PQconninfoParse(conninfo, NULL);
	if (opts == NULL)
		return NULL;
	for (PQconninfoOption *opt = opts; opt->keyword != NULL; opt++)
	{
		if (strcmp(opt->keyword, "dbname") == 0 && opt->val != NULL &&
			opt->val[0] != '\0')
			dbname = pstrdup(opt->val);
	}
	PQconninfoFree(opts);
	return dbname;
}

/*
 * Wait until the socket is ready for "events" or the latch is set; returns
 * false if the caller asked to give up.
 */
static bool
wait_socket(PGconn *conn, int events, bool (*interrupted) (void))
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
 * Connect to the primary.  Returns NULL, with the reason in errbuf, on
 * failure or when "interrupted" says to give up.
 */
PrimaryConn *
primary_connect(const char *conninfo, const char *appname,
				bool (*interrupted) (void), StringInfo errbuf)
{
	char	   *dbname = slot_sync_dbname();

	/*
	 * The connection string first, expanded; then what we set over it: the
	 * database (a second "dbname" is a plain name, and later keywords win),
	 * our application_name, a connect timeout and keepalives.
	 */
	const char *keywords[] = {"dbname", "dbname", "application_name",
		"connect_timeout", "keepalives", "keepalives_idle",
	"keepalives_interval", "keepalives_count", NULL};
	const char *values[] = {conninfo, dbname, appname, "10", "1", "10", "5",
	"3", NULL};
	PGconn	   *conn;
	PostgresPollingStatusType status = PGRES_POLLING_WRITING;
	PrimaryConn *result;
	PGresult   *res;

	conn = PQconnectStartParams(keywords, values, true);
	if (conn == NULL)
	{
		appendStringInfoString(errbuf, "out of memory");
		return NULL;
	}

	while (PQstatus(conn) != CONNECTION_BAD && status != PGRES_POLLING_OK &&
		   status != PGRES_POLLING_FAILED)
	{
		int			events = (status == PGRES_POLLING_READING) ?
		WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;

		if (!wait_socket(conn, events, interrupted))
		{
			PQfinish(conn);
			appendStringInfoString(errbuf, "interrupted");
			return NULL;
		}
		status = PQconnectPoll(conn);
	}

	if (PQstatus(conn) != CONNECTION_OK)
	{
		appendStringInfoString(errbuf, pchomp(PQerrorMessage(conn)));
		PQfinish(conn);
		return NULL;
	}

	/* nothing we send depends on the remote search_path */
	res = PQexec(conn, "SELECT pg_catalog.set_config('search_path', '', false)");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		appendStringInfoString(errbuf, pchomp(PQerrorMessage(conn)));
		PQclear(res);
		PQfinish(conn);
		return NULL;
	}
	PQclear(res);

	result = palloc(sizeof(PrimaryConn));
	result->conn = conn;
	return result;
}

void
primary_disconnect(PrimaryConn *conn)
{
	if (conn == NULL)
		return;
	PQfinish(conn->conn);
	pfree(conn);
}

/*
 * What a failed statement's SQLSTATE says about the primary.
 */
static RemoteFailure
classify_sqlstate(const char *sqlstate)
{
	if (sqlstate == NULL)
		return REMOTE_ERROR;
	/* undefined schema or function: the extension is missing or old */
	if (strcmp(sqlstate, "3F000") == 0 || strcmp(sqlstate, "42883") == 0)
		return REMOTE_NOT_INSTALLED;
	if (strcmp(sqlstate, "42501") == 0)
		return REMOTE_NO_PRIVILEGE;
	return REMOTE_ERROR;
}

/*
 * Collect all results of the query just sent: a NULL-terminated array in
 * *results, room for maxresults.  On failure or interruption, the reason is
 * in errbuf and the caller drops the connection.
 */
static RemoteFailure
collect_results(PrimaryConn *pc, PGresult **results, int maxresults,
				bool (*interrupted) (void), StringInfo errbuf)
{
	PGconn	   *conn = pc->conn;
	int			n = 0;
	PGresult   *res;
	RemoteFailure failure = REMOTE_OK;

	for (;;)
	{
		while (PQisBusy(conn))
		{
			if (!wait_socket(conn, WL_SOCKET_READABLE, interrupted))
				failure = REMOTE_INTERRUPTED;
			else if (!PQconsumeInput(conn))
				failure = REMOTE_ERROR;
			if (failure != REMOTE_OK)
			{
				for (int i = 0; i < n; i++)
					PQclear(results[i]);
				if (failure == REMOTE_INTERRUPTED)
					appendStringInfoString(errbuf, "interrupted");
				else
					appendStringInfoString(errbuf, pchomp(PQerrorMessage(conn)));
				return failure;
			}
		}
		res = PQgetResult(conn);
		if (res == NULL)
			break;
		if (n < maxresults)
			results[n++] = res;
		else
			PQclear(res);
	}
	results[n] = NULL;

	for (int i = 0; i < n && failure == REMOTE_OK; i++)
	{
		if (PQresultStatus(results[i]) != PGRES_TUPLES_OK)
		{
			failure = classify_sqlstate(PQresultErrorField(results[i],
														   PG_DIAG_SQLSTATE));
			appendStringInfoString(errbuf,
								   pchomp(PQresultErrorMessage(results[i])));
		}
	}
	if (failure == REMOTE_OK && n == 0)
	{
		failure = REMOTE_ERROR;
		appendStringInfoString(errbuf, "the primary server returned no result");
	}
	if (failure != REMOTE_OK)
	{
		for (int i = 0; i < n; i++)
			PQclear(results[i]);
		results[0] = NULL;
	}
	return failure;
}

/* Send a (possibly multi-statement) query and collect its results. */
static RemoteFailure
run_query(PrimaryConn *pc, const char *sql, PGresult **results, int maxresults,
		  bool (*interrupted) (void), StringInfo errbuf)
{
	if (!PQsendQuery(pc->conn, sql))
	{
		appendStringInfoString(errbuf, pchomp(PQerrorMessage(pc->conn)));
		return REMOTE_ERROR;
	}
	return collect_results(pc, results, maxresults, interrupted, errbuf);
}

/*
 * Run one statement with text parameters, and copy its result into palloc'd
 * memory: rows of (value, length, isnull), binary values with "binary".
 */
RemoteFailure
primary_query(PrimaryConn *pc, const char *sql, int nparams,
			  const char *const *params, bool binary, RemoteResult **result,
			  bool (*interrupted) (void), StringInfo errbuf)
{
	PGresult   *results[2];
	PGresult   *res;
	RemoteFailure failure;
	RemoteResult *r;

	if (!PQsendQueryParams(pc->conn, sql, nparams, NULL, params, NULL, NULL,
						   binary ? 1 : 0))
	{
		appendStringInfoString(errbuf, pchomp(PQerrorMessage(pc->conn)));
		return REMOTE_ERROR;
	}
	failure = collect_results(pc, results, 1, interrupted, errbuf);
	if (failure != REMOTE_OK)
		return failure;

	res = results[0];
	r = palloc0(sizeof(RemoteResult));
	r->nrows = PQntuples(res);
	r->ncols = PQnfields(res);
	r->values = palloc0(sizeof(char *) * Max(r->nrows * r->ncols, 1));
	r->lengths = palloc0(sizeof(int) * Max(r->nrows * r->ncols, 1));
	for (int row = 0; row < r->nrows; row++)
	{
		for (int col = 0; col < r->ncols; col++)
		{
			int			i = row * r->ncols + col;

			if (PQgetisnull(res, row, col))
				continue;
			r->lengths[i] = PQgetlength(res, row, col);
			r->values[i] = palloc(r->lengths[i] + 1);
			memcpy(r->values[i], PQgetvalue(res, row, col), r->lengths[i]);
			r->values[i][r->lengths[i]] = '\0';
		}
	}
	PQclear(res);
	*result = r;
	return REMOTE_OK;
}

static XLogRecPtr
get_lsn(PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return InvalidXLogRecPtr;
	return DatumGetLSN(DirectFunctionCall1(pg_lsn_in,
										   CStringGetDatum(PQgetvalue(res, row, col))));
}

static TransactionId
get_xid(PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return InvalidTransactionId;
	return (TransactionId) strtoul(PQgetvalue(res, row, col), NULL, 10);
}

static uint64
get_uint64(PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return 0;
	return (uint64) strtoull(PQgetvalue(res, row, col), NULL, 10);
}

static bool
get_bool(PGresult *res, int row, int col)
{
	return !PQgetisnull(res, row, col) && PQgetvalue(res, row, col)[0] == 't';
}

/*
 * Is pg_slotsync installed in the database we are connected to, at the
 * version we need?  REMOTE_NOT_INSTALLED or REMOTE_OLD_VERSION if not (with
 * the version found in errbuf for the latter).
 */
RemoteFailure
primary_check_extension(PrimaryConn *pc, bool (*interrupted) (void),
						StringInfo errbuf)
{
	PGresult   *results[2];
	RemoteFailure failure;
	char	   *version;

	failure = run_query(pc,
						"SELECT extversion FROM pg_catalog.pg_extension "
						"WHERE extname OPERATOR(pg_catalog.=) 'pg_slotsync'",
						results, 1, interrupted, errbuf);
	if (failure != REMOTE_OK)
		return failure;
	if (PQntuples(results[0]) != 1 || PQgetisnull(results[0], 0, 0))
	{
		PQclear(results[0]);
		return REMOTE_NOT_INSTALLED;
	}
	version = PQgetvalue(results[0], 0, 0);
	if (strcmp(version, SLOT_SYNC_PRIMARY_EXTVERSION) != 0)
	{
		appendStringInfoString(errbuf, version);
		PQclear(results[0]);
		return REMOTE_OLD_VERSION;
	}
	PQclear(results[0]);
	return REMOTE_OK;
}

/*
 * One round trip: wait (up to wait_ms) for the failover slots to change
 * from what "token" described, then fetch them.  Slots are palloc'd in the
 * current memory context.
 */
RemoteFailure
primary_fetch(PrimaryConn *pc, const char *standby_slot, bool have_token,
			  uint64 token, int wait_ms, PrimaryInfo *info,
			  RemoteSlot **slots, int *nslots, bool (*interrupted) (void),
			  StringInfo errbuf)
{
	StringInfoData sql;
	char	   *slot_lit;
	PGresult   *results[3];
	PGresult   *res;
	RemoteFailure failure;

	slot_lit = PQescapeLiteral(pc->conn, standby_slot, strlen(standby_slot));
	if (slot_lit == NULL)
	{
		appendStringInfoString(errbuf, pchomp(PQerrorMessage(pc->conn)));
		return REMOTE_ERROR;
	}
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT change_token, in_recovery, wal_level_logical, "
					 "standby_slot_is_physical, standby_slot_catalog_xmin "
					 "FROM pg_slotsync.wait_for_failover_slot_change(%s, ",
					 slot_lit);
	if (have_token)
		appendStringInfo(&sql, "'" INT64_FORMAT "'::pg_catalog.int8, ",
						 (int64) token);
	else
		appendStringInfoString(&sql, "NULL, ");
	appendStringInfo(&sql, "%d);", wait_ms);
	appendStringInfoString(&sql,
						   "SELECT slot_name, plugin, database, two_phase, "
						   "two_phase_at, restart_lsn, confirmed_flush_lsn, "
						   "catalog_xmin, invalidated, incarnation "
						   "FROM pg_slotsync.failover_slots()");
	PQfreemem(slot_lit);

	failure = run_query(pc, sql.data, results, 2, interrupted, errbuf);
	pfree(sql.data);
	if (failure != REMOTE_OK)
		return failure;

	if (results[1] == NULL || PQntuples(results[0]) != 1)
	{
		appendStringInfoString(errbuf, "unexpected reply from the primary server");
		for (int i = 0; results[i] != NULL; i++)
			PQclear(results[i]);
		return REMOTE_ERROR;
	}

	res = results[0];
	info->token = get_uint64(res, 0, 0);
	info->in_recovery = get_bool(res, 0, 1);
	info->wal_level_logical = get_bool(res, 0, 2);
	info->standby_slot_exists = !PQgetisnull(res, 0, 3);
	info->standby_slot_is_physical = get_bool(res, 0, 3);
	info->standby_slot_catalog_xmin = get_xid(res, 0, 4);

	res = results[1];
	*nslots = PQntuples(res);
	*slots = palloc0(sizeof(RemoteSlot) * Max(*nslots, 1));
	for (int i = 0; i < *nslots; i++)
	{
		RemoteSlot *s = &(*slots)[i];

		namestrcpy(&s->name, PQgetvalue(res, i, 0));
		namestrcpy(&s->plugin, PQgetvalue(res, i, 1));
		namestrcpy(&s->database, PQgetvalue(res, i, 2));
		s->two_phase = get_bool(res, i, 3);
		s->two_phase_at = get_lsn(res, i, 4);
		s->restart_lsn = get_lsn(res, i, 5);
		s->confirmed_flush = get_lsn(res, i, 6);
		s->catalog_xmin = get_xid(res, i, 7);
		s->invalidated = get_bool(res, i, 8);
		s->incarnation = get_uint64(res, i, 9);
	}
	PQclear(results[0]);
	PQclear(results[1]);
	return REMOTE_OK;
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
	StringInfoData sql;
	PGresult   *results[2];
	PGresult   *res;
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
			appendStringInfoString(errbuf, pchomp(PQerrorMessage(pc->conn)));
			pfree(sql.data);
			return REMOTE_ERROR;
		}
		appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "", lit);
		PQfreemem(lit);
	}
	appendStringInfoString(&sql, "]::pg_catalog.name[])");

	failure = run_query(pc, sql.data, results, 1, interrupted, errbuf);
	pfree(sql.data);
	if (failure != REMOTE_OK)
		return failure;

	/* rows come in the order asked, less those of vanished slots */
	res = results[0];
	for (int row = 0, next = 0; row < PQntuples(res); row++)
	{
		const char *name = PQgetvalue(res, row, 0);

		for (int k = 0; k < nslots; k++)
		{
			int			i = (next + k) % nslots;
			RemoteSnapshot *snap = &out[i];

			if (snap->slot_found || strcmp(NameStr(slots[i]->name), name) != 0)
				continue;
			next = i + 1;
			snap->slot_found = true;
			snap->restart_lsn = get_lsn(res, row, 1);
			if (!PQgetisnull(res, row, 2))
			{
				size_t		binlen;
				unsigned char *bin;

				bin = PQunescapeBytea((unsigned char *) PQgetvalue(res, row, 2),
									  &binlen);
				if (bin == NULL)
				{
					PQclear(res);
					appendStringInfoString(errbuf, "out of memory");
					return REMOTE_ERROR;
				}
				snap->data = palloc(binlen);
				memcpy(snap->data, bin, binlen);
				snap->len = binlen;
				PQfreemem(bin);
			}
			break;
		}
	}
	PQclear(res);
	return REMOTE_OK;
}
