/*-------------------------------------------------------------------------
 *
 * remote_session.c
 *		What the standby's session on the primary must be: its settings,
 *		where the primary's notices go, and whether the server it reached
 *		is this standby's primary at all.
 *
 * The session is ours.  A database owner or the connecting role can attach
 * settings to it with ALTER DATABASE / ALTER ROLE ... SET, no superuser
 * needed: a statement_timeout there cancelled every long-poll (slots were
 * then synchronized only at reconnects), an idle_session_timeout closed the
 * session between cycles, a low client_min_messages flooded us with
 * notices.  The connection's "options" win over those settings, so
 * remote_session_options() sets there every setting that could break the
 * session (SESSION_OPTIONS), after whatever options the connection string
 * has.
 *
 * Notices that come anyway (from a server that is not what we think) go to
 * remote_notice_processor(), never to stderr, which is the standby's log
 * and where libpq's default processor would copy them raw: a notice with a
 * newline forged log lines.  They are logged at DEBUG1, escaped, at most
 * NOTICE_BURST per NOTICE_WINDOW_MS.
 *
 * remote_session_check() runs one round trip right after connecting: it
 * empties the session's search_path (every object we name is
 * schema-qualified and every value we send is quoted with libpq's escaping),
 * fetches the server's system identifier and timeline, and the version of
 * pg_slotsync there (its functions' result columns are what we parse, so a
 * missing or old extension is reported as such).  A server of
 * another cluster (a wrong host in the connection string) would list
 * unrelated slots, and the standby would drop its copies for them; an old
 * primary left behind by a failover (same cluster, a timeline older than
 * the one the standby replays) lists slots nobody uses any more.  Either is
 * refused (REMOTE_OTHER_SYSTEM, REMOTE_OLD_TIMELINE): the standby
 * synchronizes nothing, drops nothing, and says why.
 * A server in recovery reports no timeline; the cycle then refuses it as a
 * standby (slot_sync_validate_primary()).
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "catalog/pg_type_d.h"
#include "libpq-fe.h"
#include "remote_reply.h"
#include "slot_sync.h"
#include "sync_remote.h"
#include "utils/timestamp.h"

/*
 * Settings of our session on the primary, as libpq "options": they win over
 * ALTER DATABASE / ALTER ROLE ... SET.  Each would otherwise cancel the
 * long-poll, close the idle session, flood us with notices, block on a safe
 * snapshot (serializable read only deferrable) or change a format we parse.
 */
#define SESSION_OPTIONS \
	"-c statement_timeout=0 -c lock_timeout=0 " \
	"-c idle_in_transaction_session_timeout=0 -c idle_session_timeout=0 " \
	"-c client_min_messages=warning " \
	"-c default_transaction_isolation=read\\ committed " \
	"-c bytea_output=hex -c standard_conforming_strings=on"

/* Notices from the primary that reach the log (at DEBUG1) */
#define NOTICE_BURST		10
#define NOTICE_WINDOW_MS	60000

/* The setting slot_sync_conninfo() comes from, for messages. */
const char *
slot_sync_conninfo_setting(void)
{
	if (pg_slotsync_primary_conninfo != NULL &&
		pg_slotsync_primary_conninfo[0] != '\0')
		return "pg_slotsync.primary_conninfo";
	return "primary_conninfo";
}

/*
 * The value of a keyword in a connection string, palloc'd, or NULL if none
 * (or the string does not parse).
 */
static char *
conninfo_value(const char *conninfo, const char *keyword)
{
	PQconninfoOption *opts;
	char	   *result = NULL;

	if (conninfo == NULL || conninfo[0] == '\0')
		return NULL;
	opts = PQconninfoParse(conninfo, NULL);
	if (opts == NULL)
		return NULL;
	for (PQconninfoOption *opt = opts; opt->keyword != NULL; opt++)
	{
		if (strcmp(opt->keyword, keyword) == 0 && opt->val != NULL &&
			opt->val[0] != '\0')
			result = pstrdup(opt->val);
	}
	PQconninfoFree(opts);
	return result;
}

char *
conninfo_dbname(const char *conninfo)
{
	return conninfo_value(conninfo, "dbname");
}

/*
 * libpq's notice processor for our connections: notices never go to
 * stderr (the server log) raw.  DEBUG1, escaped, a few a minute.
 */
void
remote_notice_processor(void *arg, const char *message)
{
	static TimestampTz window_start = 0;
	static int	logged = 0;
	static int64 suppressed = 0;
	TimestampTz now;

	if (!message_level_is_interesting(DEBUG1))
		return;
	now = GetCurrentTimestamp();
	if (TimestampDifferenceExceeds(window_start, now, NOTICE_WINDOW_MS))
	{
		if (suppressed > 0)
			ereport(DEBUG1,
					(errmsg_internal("%lld more notices from the primary server were not logged",
									 (long long) suppressed)));
		window_start = now;
		logged = 0;
		suppressed = 0;
	}
	if (logged >= NOTICE_BURST)
	{
		suppressed++;
		return;
	}
	logged++;
	ereport(DEBUG1,
			(errmsg_internal("notice from the primary server: %s",
							 remote_text(message))));
}

/* What the session query found out about the server. */
typedef struct ServerIdentity
{
	int64		system_identifier;
	bool		have_timeline;	/* false while the server is in recovery */
	TimeLineID	timeline;
	bool		have_extension;
	char	   *extversion;
} ServerIdentity;

static bool
take_search_path(void *arg, const ReplyRow *row)
{
	if (strcmp(PQgetvalue(row->res, row->tuple, 0), "") != 0)
	{
		appendStringInfoString(row->err, "search_path was not emptied");
		return false;
	}
	return true;
}

static bool
take_identity(void *arg, const ReplyRow *row)
{
	ServerIdentity *id = (ServerIdentity *) arg;

	if (!reply_int64(row, 0, &id->system_identifier))
		return false;
	id->have_timeline = !reply_isnull(row, 1);
	return !id->have_timeline || reply_wal_file_timeline(row, 1, &id->timeline);
}

static bool
take_extension(void *arg, const ReplyRow *row)
{
	ServerIdentity *id = (ServerIdentity *) arg;

	id->have_extension = true;
	id->extversion = remote_text(PQgetvalue(row->res, row->tuple, 0));
	return true;
}

/*
 * Empty the search_path, learn who the server is and which pg_slotsync it
 * has, in one round trip.  REMOTE_OK if it is this standby's primary with
 * the extension at the version we need; otherwise the failure, with the
 * reason (or the version found) in errbuf.
 */
RemoteFailure
remote_session_check(PGconn *conn, bool (*interrupted) (void),
					 StringInfo errbuf)
{
	static const ReplyColumn path_columns[] = {
		{"set_config", TEXTOID, false, false}
	};
	static const ReplyColumn identity_columns[] = {
		{"system_identifier", INT8OID, false, false},
		{"wal_file", TEXTOID, true, false}
	};
	static const ReplyColumn extension_columns[] = {
		{"extversion", TEXTOID, false, false}
	};
	ServerIdentity id;
	ReplyStatement statements[3] = {
		{"pg_catalog.set_config()", path_columns, 1, 1, 1, take_search_path, NULL},
		{"pg_catalog.pg_control_system()", identity_columns, 2, 1, 1, take_identity, &id},
		{"pg_catalog.pg_extension", extension_columns, 1, 0, 1, take_extension, &id}
	};
	TimeLineID	standby_tli;
	ReplyOutcome outcome;

	memset(&id, 0, sizeof(id));
	outcome = reply_run(conn,
						"SELECT pg_catalog.set_config('search_path', '', false);"
						"SELECT system_identifier, CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL "
						"ELSE pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()) END AS wal_file "
						"FROM pg_catalog.pg_control_system();"
						"SELECT extversion FROM pg_catalog.pg_extension "
						"WHERE extname OPERATOR(pg_catalog.=) 'pg_slotsync'",
						statements, 3, interrupted, NULL, errbuf);
	if (outcome == REPLY_INTERRUPTED)
		return REMOTE_INTERRUPTED;
	if (outcome != REPLY_OK)
		return REMOTE_ERROR;

	if ((uint64) id.system_identifier != GetSystemIdentifier())
	{
		appendStringInfo(errbuf,
						 "database system identifier differs between the primary and standby: "
						 "the primary's identifier is " UINT64_FORMAT ", the standby's identifier is " UINT64_FORMAT,
						 (uint64) id.system_identifier, GetSystemIdentifier());
		return REMOTE_OTHER_SYSTEM;
	}

	(void) GetXLogReplayRecPtr(&standby_tli);
	if (id.have_timeline && id.timeline < standby_tli)
	{
		appendStringInfo(errbuf,
						 "primary server's timeline %u is older than this standby's timeline %u",
						 id.timeline, standby_tli);
		return REMOTE_OLD_TIMELINE;
	}

	if (!id.have_extension)
		return REMOTE_NOT_INSTALLED;
	if (strcmp(id.extversion, SLOT_SYNC_PRIMARY_EXTVERSION) != 0)
	{
		appendStringInfoString(errbuf, id.extversion);
		return REMOTE_OLD_VERSION;
	}
	return REMOTE_OK;
}

/*
 * The "options" of our connection: those of the connection string, then
 * ours, which win.
 */
char *
remote_session_options(const char *conninfo)
{
	char	   *theirs = conninfo_value(conninfo, "options");

	if (theirs == NULL)
		return pstrdup(SESSION_OPTIONS);
	return psprintf("%s %s", theirs, SESSION_OPTIONS);
}
