/*-------------------------------------------------------------------------
 *
 * sync_remote.c
 *		The standby's libpq connection to the primary: connecting, checking
 *		the server, and the queries a sync cycle sends.
 *
 * The connection is an ordinary (non-replication) libpq session.  Its
 * connection string is the standby's own primary_conninfo, password
 * included, with pg_slotsync.primary_dbname as its database when set: HA
 * tools such as Patroni rewrite primary_conninfo without a dbname at every
 * leader change, and this way the worker follows the primary the
 * walreceiver follows.  pg_slotsync.primary_conninfo, when set, replaces
 * all of that.  Our messages never quote the connection string, which may hold a
 * password: errors quote libpq's message only.  (The server itself logs the
 * setting when a reload changes it, as it logs primary_conninfo; hence the
 * advice in docs/production.md to keep passwords in a password file.)
 *
 * On top of the connection string we set a connect timeout and TCP
 * keepalives, so that a primary that vanishes without closing the socket is
 * noticed, an application_name that names the worker, overriding one in
 * the connection string (a standby usually has one there, for synchronous
 * replication), and the session settings and notice processor of
 * remote_session.c.  After connecting, primary_check_server() checks that
 * the server is this standby's primary (same system identifier, a timeline
 * not older than the standby's) and has pg_slotsync at the version this
 * library needs, so that each of those is reported as such.
 *
 * A cycle sends one query (a multi-statement string: the long-poll, then
 * the list of failover slots, read in the same session right after), and,
 * when some copies need them, one more for the serialized snapshots of all
 * those slots at once (that one, and the generic queries of the history
 * fetch, are in sync_remote_queries.c).
 *
 * Replies are read through remote_reply.c, which checks every statement's
 * shape and every value before a row reaches us: a malformed reply fails
 * the cycle with a message that says what was wrong, and changes nothing.
 * A slot name listed twice, or a snapshot for a slot we did not ask about,
 * is refused here.  A connection left in the middle of a reply
 * (interrupted, or a reply too long to read to its end) is not used again;
 * the caller reconnects.
 *
 * A long-poll answered early with nothing changed (the same change token,
 * or the very same reply) is not what pg_slotsync's function does: it
 * answers before its timeout only on a change.  Something else is
 * answering, and going again at once would spin (98,000 cycles in 5 s were
 * seen).  So primary_fetch() then waits out the rest of the interval it
 * asked for, and says so once per connection.  The normal path, an answer
 * because something changed, is not slowed.
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

#include "access/xlogrecovery.h"
#include "catalog/pg_type_d.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "pgstat.h"
#include "postmaster/postmaster.h"
#include "remote_reply.h"
#include "slot_sync.h"
#include "sync_remote_int.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

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
 * Does WAL stream to this standby from somewhere: is the walreceiver's
 * primary_conninfo set?  (Not the worker's own connection string: what
 * matters for the copies is what is replayed here.)
 */
bool
slot_sync_streaming(void)
{
	return PrimaryConnInfo != NULL && PrimaryConnInfo[0] != '\0';
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
	 * our application_name, session options, a connect timeout and
	 * keepalives.
	 */
	const char *keywords[] = {"dbname", "dbname", "application_name",
		"options", "connect_timeout", "keepalives", "keepalives_idle",
	"keepalives_interval", "keepalives_count", NULL};
	const char *values[] = {conninfo, dbname, appname,
		remote_session_options(conninfo), "10", "1", "10", "5", "3",
	NULL};
	PostgresPollingStatusType status = PGRES_POLLING_WRITING;
	PGconn	   *conn;
	PrimaryConn *result;

	conn = PQconnectStartParams(keywords, values, true);
	if (conn == NULL)
	{
		appendStringInfoString(errbuf, "out of memory");
		return NULL;
	}
	PQsetNoticeProcessor(conn, remote_notice_processor, NULL);

	while (PQstatus(conn) != CONNECTION_BAD && status != PGRES_POLLING_OK &&
		   status != PGRES_POLLING_FAILED)
	{
		int			events = (status == PGRES_POLLING_READING) ?
		WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;

		if (!reply_wait_socket(conn, events, interrupted))
		{
			PQfinish(conn);
			appendStringInfoString(errbuf, "interrupted");
			return NULL;
		}
		status = PQconnectPoll(conn);
	}

	if (PQstatus(conn) != CONNECTION_OK)
	{
		appendStringInfoString(errbuf, remote_text(PQerrorMessage(conn)));
		PQfinish(conn);
		return NULL;
	}

	result = palloc0(sizeof(PrimaryConn));
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
	/* undefined schema or function: the extension is missing or old */
	if (strcmp(sqlstate, "3F000") == 0 || strcmp(sqlstate, "42883") == 0)
		return REMOTE_NOT_INSTALLED;
	if (strcmp(sqlstate, "42501") == 0)
		return REMOTE_NO_PRIVILEGE;
	return REMOTE_ERROR;
}

/*
 * Move a failure's message from err to errbuf.  A server error comes as
 * "SQLSTATE:message": the SQLSTATE may say more than "failure" did.
 */
static RemoteFailure
pass_on_error(StringInfo err, RemoteFailure failure, StringInfo errbuf)
{
	char	   *msg = err->data;

	if (failure == REMOTE_ERROR && strlen(msg) > 6 && msg[5] == ':' &&
		strspn(msg, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 5)
	{
		msg[5] = '\0';
		failure = classify_sqlstate(msg);
		msg += 6;
	}
	appendStringInfoString(errbuf, msg);
	pfree(err->data);
	return failure;
}

/* False, with the reason, if the connection was given up earlier. */
bool
remote_usable(PrimaryConn *pc, StringInfo errbuf)
{
	if (!pc->broken)
		return true;
	appendStringInfoString(errbuf,
						   "the connection was given up after an earlier failure");
	return false;
}

/*
 * What a reply's outcome means to the caller; err (from remote_reply.c) is
 * consumed.  A connection left in the middle of a reply is not used again.
 */
RemoteFailure
remote_outcome(PrimaryConn *pc, ReplyOutcome outcome, StringInfo err,
			   StringInfo errbuf)
{
	if (outcome == REPLY_BROKEN || outcome == REPLY_INTERRUPTED)
		pc->broken = true;
	if (outcome == REPLY_OK)
	{
		pfree(err->data);
		return REMOTE_OK;
	}
	return pass_on_error(err, outcome == REPLY_INTERRUPTED ?
								REMOTE_INTERRUPTED : REMOTE_ERROR, errbuf);
}

/*
 * Run a query through remote_reply.c.  On failure the reason is in errbuf
 * ("interrupted" if the caller asked to stop).
 */
RemoteFailure
remote_run_checked(PrimaryConn *pc, const char *sql,
				   const ReplyStatement *statements, int nstatements,
				   bool (*interrupted) (void), uint64 *hash, StringInfo errbuf)
{
	StringInfoData err;
	ReplyOutcome outcome;

	if (!remote_usable(pc, errbuf))
		return REMOTE_ERROR;
	initStringInfo(&err);
	outcome = reply_run(pc->conn, sql, statements, nstatements, interrupted,
						hash, &err);
	return remote_outcome(pc, outcome, &err, errbuf);
}

/*
 * Is the server this standby's primary, with pg_slotsync at the version we
 * need?  See remote_session_check().
 */
RemoteFailure
primary_check_server(PrimaryConn *pc, bool (*interrupted) (void),
					 StringInfo errbuf)
{
	StringInfoData err;
	RemoteFailure failure;

	if (pc->broken)
	{
		appendStringInfoString(errbuf,
							   "the connection was given up after an earlier failure");
		return REMOTE_ERROR;
	}
	initStringInfo(&err);
	failure = remote_session_check(pc->conn, interrupted, &err);
	if (failure == REMOTE_INTERRUPTED || PQstatus(pc->conn) != CONNECTION_OK)
		pc->broken = true;
	return pass_on_error(&err, failure, errbuf);
}

/* ---------------------------------------------------------------------
 * One round trip: the long-poll and the list of failover slots
 * ---------------------------------------------------------------------
 */

/*
 * The token is left out of the hash: a new one comes with every answer, so
 * an answer that is early and says nothing new hashes like the one before
 * (see pace_early_answer()).
 */
static const ReplyColumn wait_columns[] = {
	{"change_token", INT8OID, false, false},
	{"full_list", BOOLOID, false, true},
	{"in_recovery", BOOLOID, false, true},
	{"wal_level_logical", BOOLOID, false, true},
	{"standby_slot_is_physical", BOOLOID, true, true},
	{"standby_slot_catalog_xmin", XIDOID, true, true},
	{"system_identifier", INT8OID, false, true},
	/* NULL from a server in recovery, which the caller then refuses */
	{"timeline", INT4OID, true, true}
};

/* A slot gone from the list ("removed") has nothing but its name. */
static const ReplyColumn slot_columns[] = {
	{"slot_name", NAMEOID, false, true},
	{"removed", BOOLOID, false, true},
	{"plugin", NAMEOID, true, true},
	{"database_oid", OIDOID, true, true},
	{"database", TEXTOID, true, true},
	{"two_phase", BOOLOID, true, true},
	{"two_phase_at", LSNOID, true, true},
	{"restart_lsn", LSNOID, true, true},
	{"confirmed_flush_lsn", LSNOID, true, true},
	{"catalog_xmin", XIDOID, true, true},
	{"invalidated", BOOLOID, true, true},
	{"incarnation", INT8OID, true, true}
};

static bool
take_primary_info(void *arg, const ReplyRow *row)
{
	PrimaryInfo *info = (PrimaryInfo *) arg;
	int64		token;
	int64		sysid;

	if (!reply_int64(row, 0, &token) ||
		!reply_bool(row, 1, &info->full_list) ||
		!reply_bool(row, 2, &info->in_recovery) ||
		!reply_bool(row, 3, &info->wal_level_logical) ||
		!reply_int64(row, 6, &sysid))
		return false;
	info->token = (uint64) token;
	info->system_identifier = (uint64) sysid;
	info->standby_slot_exists = !reply_isnull(row, 4);
	info->standby_slot_is_physical = false;
	if (info->standby_slot_exists &&
		!reply_bool(row, 4, &info->standby_slot_is_physical))
		return false;
	return reply_xid(row, 5, &info->standby_slot_catalog_xmin);
}

/* The failover slots listed so far. */
typedef struct SlotList
{
	RemoteSlot *slots;
	int			n;
	int			allocated;
} SlotList;

static bool
take_remote_slot(void *arg, const ReplyRow *row)
{
	SlotList   *list = (SlotList *) arg;
	RemoteSlot *s;
	int64		incarnation = 0;
	int64		dboid;

	if (list->n == list->allocated)
	{
		list->allocated = Max(16, list->allocated * 2);
		list->slots = list->slots ?
			repalloc(list->slots, sizeof(RemoteSlot) * list->allocated) :
			palloc(sizeof(RemoteSlot) * list->allocated);
	}
	s = &list->slots[list->n];
	memset(s, 0, sizeof(*s));
	if (!reply_slot_name(row, 0, &s->name) ||
		!reply_bool(row, 1, &s->removed))
		return false;
	if (s->removed)
	{
		list->n++;
		return true;
	}
	/* NULL reads as "" to the parsers of the columns that must be set */
	if (!reply_plugin_name(row, 2, &s->plugin) ||
		!reply_int64(row, 3, &dboid) ||
		!reply_database_name(row, 4, &s->database) ||
		!reply_bool(row, 5, &s->two_phase) ||
		!reply_lsn(row, 6, &s->two_phase_at) ||
		!reply_lsn(row, 7, &s->restart_lsn) ||
		!reply_lsn(row, 8, &s->confirmed_flush) ||
		!reply_xid(row, 9, &s->catalog_xmin) ||
		!reply_bool(row, 10, &s->invalidated) ||
		(!reply_isnull(row, 11) && !reply_int64(row, 11, &incarnation)))
		return false;
	if (dboid <= 0 || dboid > PG_UINT32_MAX)
	{
		appendStringInfo(row->err,
						 "column \"database_oid\" of row %d is not a valid OID: " INT64_FORMAT,
						 row->rowno, dboid);
		return false;
	}
	s->database_oid = (Oid) dboid;
	s->incarnation = (uint64) incarnation;
	list->n++;
	return true;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(NameStr(*(const NameData *) a), NameStr(*(const NameData *) b));
}

/* A name listed twice, or NULL. */
static const char *
duplicate_name(const RemoteSlot *slots, int n)
{
	NameData   *names;
	const char *dup = NULL;

	if (n < 2)
		return NULL;
	names = palloc(sizeof(NameData) * n);
	for (int i = 0; i < n; i++)
		names[i] = slots[i].name;
	qsort(names, n, sizeof(NameData), name_cmp);
	for (int i = 1; i < n && dup == NULL; i++)
		if (strcmp(NameStr(names[i - 1]), NameStr(names[i])) == 0)
			dup = pstrdup(NameStr(names[i]));
	pfree(names);
	return dup;
}

/*
 * The reply came before the wait we asked for was over, with nothing
 * changed: wait out the rest, so that a peer answering at once cannot make
 * us spin.  Said once per connection.
 */
static void
pace_early_answer(PrimaryConn *pc, TimestampTz sent, int wait_ms,
				  bool (*interrupted) (void))
{
	TimestampTz until = TimestampTzPlusMilliseconds(sent, wait_ms);
	TimestampTz now = GetCurrentTimestamp();

	if (!pc->early_logged && now < TimestampTzPlusMilliseconds(sent, wait_ms / 2))
	{
		pc->early_logged = true;
		ereport(LOG,
				(errmsg("primary server answered the wait for failover slot changes early without a change"),
				 errdetail("It answered after %ld ms of the %d ms asked for; the next cycle waits for the rest.",
						   (long) ((now - sent) / 1000), wait_ms),
				 errhint("Check that \"%s\" reaches the primary server itself.",
						 slot_sync_conninfo_setting())));
	}
	while (now < until && (interrupted == NULL || !interrupted()))
	{
		long		left_ms = (long) ((until - now + 999) / 1000);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(left_ms, 50), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		now = GetCurrentTimestamp();
	}
}

/*
 * One round trip: wait (up to wait_ms) for the failover slots to differ from
 * what this session's last answer said (the answer with "token"), then
 * fetch what changed: new and changed slots, and slots gone (removed).
 * Without a token, or when the primary no longer knows it, the whole list
 * comes (info->full_list).  Slots are palloc'd in the current memory
 * context.
 */
RemoteFailure
primary_fetch(PrimaryConn *pc, const char *standby_slot, bool have_token,
			  uint64 token, int wait_ms, PrimaryInfo *info,
			  RemoteSlot **slots, int *nslots, bool (*interrupted) (void),
			  StringInfo errbuf)
{
	StringInfoData sql;
	char	   *slot_lit;
	SlotList	list = {0};
	ReplyStatement statements[2] = {
		{"pg_slotsync.wait_for_failover_slot_changes()", wait_columns,
		lengthof(wait_columns), 1, 1, take_primary_info, info},
		{"pg_slotsync.failover_slot_changes()", slot_columns,
		lengthof(slot_columns), 0, MAX_BACKENDS, take_remote_slot, &list}
	};
	TimestampTz sent;
	uint64		hash;
	const char *dup;
	RemoteFailure failure;

	slot_lit = PQescapeLiteral(pc->conn, standby_slot, strlen(standby_slot));
	if (slot_lit == NULL)
	{
		appendStringInfoString(errbuf, remote_text(PQerrorMessage(pc->conn)));
		return REMOTE_ERROR;
	}
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT change_token, full_list, in_recovery, "
					 "wal_level_logical, standby_slot_is_physical, "
					 "standby_slot_catalog_xmin, system_identifier, timeline "
					 "FROM pg_slotsync.wait_for_failover_slot_changes(%s, ",
					 slot_lit);
	if (have_token)
		appendStringInfo(&sql, "'" INT64_FORMAT "'::pg_catalog.int8, ",
						 (int64) token);
	else
		appendStringInfoString(&sql, "NULL, ");
	appendStringInfo(&sql, "%d);", wait_ms);
	appendStringInfoString(&sql,
						   "SELECT slot_name, removed, plugin, database_oid, "
						   "database, two_phase, two_phase_at, restart_lsn, "
						   "confirmed_flush_lsn, catalog_xmin, invalidated, "
						   "incarnation "
						   "FROM pg_slotsync.failover_slot_changes()");
	PQfreemem(slot_lit);

	memset(info, 0, sizeof(*info));
	sent = GetCurrentTimestamp();
	failure = remote_run_checked(pc, sql.data, statements, 2, interrupted, &hash,
						  errbuf);
	pfree(sql.data);
	if (failure != REMOTE_OK)
		return failure;

	dup = duplicate_name(list.slots, list.n);
	if (dup != NULL)
	{
		appendStringInfo(errbuf,
						 "malformed reply to pg_slotsync.failover_slot_changes(): replication slot \"%s\" is listed twice",
						 dup);
		return REMOTE_ERROR;
	}

	if (have_token && wait_ms > 0 &&
		(info->token == token || (pc->have_hash && hash == pc->last_hash)))
		pace_early_answer(pc, sent, wait_ms, interrupted);
	pc->have_hash = true;
	pc->last_hash = hash;

	*nslots = list.n;
	*slots = list.slots ? list.slots : palloc0(sizeof(RemoteSlot));
	return REMOTE_OK;
}
