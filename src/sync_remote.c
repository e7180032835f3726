/*-------------------------------------------------------------------------
 *
 * sync_remote.c
 *		The standby's libpq connection to the primary: connecting, and the
 *		two queries a sync cycle sends.
 *
 * The connection is an ordinary (non-replication) libpq session to the
 * database named in the connection string, which is the standby's own
 * primary_conninfo, password included, or pg_slotsync.primary_conninfo
 * when set (for HA tools that rewrite primary_conninfo without a dbname).
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

const char *
slot_sync_conninfo(void)
{
	if (pg_slotsync_primary_conninfo != NULL &&
		pg_slotsync_primary_conninfo[0] != '\0')
		return pg_slotsync_primary_conninfo;
	return PrimaryConnInfo;
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

PrimaryConn *
primary_connect(const char *conninfo, const char *appname, int elevel)
{
	const char *keywords[] = {"dbname", "application_name", "connect_timeout",
		"keepalives", "keepalives_idle", "keepalives_interval",
	"keepalives_count", NULL};
	const char *values[] = {conninfo, appname, "10", "1", "10", "5", "3", NULL};
	PGconn	   *conn;
	PostgresPollingStatusType status = PGRES_POLLING_WRITING;
	PrimaryConn *result;
	PGresult   *res;

	conn = PQconnectStartParams(keywords, values, true);
	if (conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	while (PQstatus(conn) != CONNECTION_BAD && status != PGRES_POLLING_OK &&
		   status != PGRES_POLLING_FAILED)
	{
		int			events = (status == PGRES_POLLING_READING) ?
		WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;

		if (!wait_socket(conn, events, NULL))
			break;
		status = PQconnectPoll(conn);
	}

	if (PQstatus(conn) != CONNECTION_OK)
	{
		char	   *msg = pchomp(PQerrorMessage(conn));

		PQfinish(conn);
		ereport(elevel,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not connect to the primary server: %s", msg)));
		return NULL;
	}

	/* nothing we send depends on the remote search_path */
	res = PQexec(conn, "SELECT pg_catalog.set_config('search_path', '', false)");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		char	   *msg = pchomp(PQerrorMessage(conn));

		PQclear(res);
		PQfinish(conn);
		ereport(elevel,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not set up the session on the primary server: %s", msg)));
		return NULL;
	}
	PQclear(res);

	result = MemoryContextAlloc(TopMemoryContext, sizeof(PrimaryConn));
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
 * Send a query and collect all its results; NULL-terminated array of
 * results in *results.  Returns false (message in errbuf) on failure or
 * interruption; the caller then drops the connection.
 */
static bool
run_query(PrimaryConn *pc, const char *sql, PGresult **results, int maxresults,
		  bool (*interrupted) (void), StringInfo errbuf)
{
	PGconn	   *conn = pc->conn;
	int			n = 0;
	PGresult   *res;

	if (!PQsendQuery(conn, sql))
	{
		appendStringInfo(errbuf, "%s", pchomp(PQerrorMessage(conn)));
		return false;
	}

	for (;;)
	{
		while (PQisBusy(conn))
		{
			if (!wait_socket(conn, WL_SOCKET_READABLE, interrupted))
			{
				appendStringInfoString(errbuf, "interrupted");
				for (int i = 0; i < n; i++)
					PQclear(results[i]);
				return false;
			}
			if (!PQconsumeInput(conn))
			{
				appendStringInfo(errbuf, "%s", pchomp(PQerrorMessage(conn)));
				for (int i = 0; i < n; i++)
					PQclear(results[i]);
				return false;
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

	for (int i = 0; i < n; i++)
	{
		if (PQresultStatus(results[i]) != PGRES_TUPLES_OK)
		{
			const char *sqlstate = PQresultErrorField(results[i], PG_DIAG_SQLSTATE);

			appendStringInfo(errbuf, "%s%s",
							 sqlstate ? sqlstate : "", ":");
			appendStringInfoString(errbuf, pchomp(PQresultErrorMessage(results[i])));
			for (int j = 0; j < n; j++)
				PQclear(results[j]);
			return false;
		}
	}
	results[n] = NULL;
	return n > 0;
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

static bool
get_bool(PGresult *res, int row, int col)
{
	return !PQgetisnull(res, row, col) && PQgetvalue(res, row, col)[0] == 't';
}

/*
 * One round trip: wait (up to wait_ms) for the failover slots to change
 * from what "token" described, then fetch them.  Slots are palloc'd in the
 * current memory context.
 */
bool
primary_fetch(PrimaryConn *pc, const char *standby_slot, bool have_token,
			  uint64 token, int wait_ms, PrimaryInfo *info,
			  RemoteSlot **slots, int *nslots, bool (*interrupted) (void),
			  StringInfo errbuf)
{
	StringInfoData sql;
	char	   *slot_lit;
	PGresult   *results[3];
	PGresult   *res;

	slot_lit = PQescapeLiteral(pc->conn, standby_slot, strlen(standby_slot));
	if (slot_lit == NULL)
	{
		appendStringInfo(errbuf, "%s", pchomp(PQerrorMessage(pc->conn)));
		return false;
	}
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT change_token, in_recovery, wal_level_logical, "
					 "standby_slot_is_physical, standby_slot_restart_lsn, "
					 "standby_slot_catalog_xmin "
					 "FROM pg_slotsync.wait_for_failover_slot_change(%s, ",
					 slot_lit);
	if (have_token)
		appendStringInfo(&sql, "'" INT64_FORMAT "'::pg_catalog.int8, ",
						 (int64) token);
	else
		appendStringInfoString(&sql, "NULL, ");
	appendStringInfo(&sql, "%d);", wait_ms);
	appendStringInfoString(&sql,
						   "SELECT slot_name, plugin, database, two_phase, two_phase_at, "
						   "restart_lsn, confirmed_flush_lsn, catalog_xmin, invalidated "
						   "FROM pg_slotsync.failover_slots()");
	PQfreemem(slot_lit);

	if (!run_query(pc, sql.data, results, 2, interrupted, errbuf))
		return false;
	pfree(sql.data);

	if (results[1] == NULL || PQntuples(results[0]) != 1)
	{
		appendStringInfoString(errbuf, "unexpected reply from the primary server");
		for (int i = 0; results[i] != NULL; i++)
			PQclear(results[i]);
		return false;
	}

	res = results[0];
	info->token = (uint64) strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	info->in_recovery = get_bool(res, 0, 1);
	info->wal_level_logical = get_bool(res, 0, 2);
	info->standby_slot_exists = !PQgetisnull(res, 0, 3);
	info->standby_slot_is_physical = get_bool(res, 0, 3);
	info->standby_slot_restart_lsn = get_lsn(res, 0, 4);
	info->standby_slot_catalog_xmin = get_xid(res, 0, 5);

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
	}
	PQclear(results[0]);
	PQclear(results[1]);
	return true;
}

/*
 * The primary's serialized snapshot at the slot's current restart_lsn.
 * Returns 1 with *data set (palloc'd) if there is one, 0 if there is none
 * (*data NULL), -1 on failure.  *restart_lsn is the slot's restart_lsn the
 * answer belongs to.
 */
int
primary_fetch_snapshot(PrimaryConn *pc, const char *slot_name,
					   XLogRecPtr *restart_lsn, char **data, Size *len,
					   bool (*interrupted) (void), StringInfo errbuf)
{
	StringInfoData sql;
	char	   *lit;
	PGresult   *results[2];
	PGresult   *res;
	int			found = 0;

	*data = NULL;
	*len = 0;
	lit = PQescapeLiteral(pc->conn, slot_name, strlen(slot_name));
	if (lit == NULL)
	{
		appendStringInfo(errbuf, "%s", pchomp(PQerrorMessage(pc->conn)));
		return -1;
	}
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT restart_lsn, snapshot FROM pg_slotsync.failover_slot_snapshot(%s)",
					 lit);
	PQfreemem(lit);
	if (!run_query(pc, sql.data, results, 1, interrupted, errbuf))
		return -1;
	pfree(sql.data);

	res = results[0];
	if (PQntuples(res) != 1)
	{
		PQclear(res);
		*restart_lsn = InvalidXLogRecPtr;
		return 0;
	}
	*restart_lsn = get_lsn(res, 0, 0);
	if (!PQgetisnull(res, 0, 1))
	{
		size_t		binlen;
		unsigned char *bin;

		bin = PQunescapeBytea((unsigned char *) PQgetvalue(res, 0, 1), &binlen);
		if (bin == NULL)
		{
			PQclear(res);
			appendStringInfoString(errbuf, "out of memory");
			return -1;
		}
		*data = palloc(binlen);
		memcpy(*data, bin, binlen);
		*len = binlen;
		PQfreemem(bin);
		found = 1;
	}
	PQclear(res);
	return found;
}
