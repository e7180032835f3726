/*-------------------------------------------------------------------------
 *
 * remote_reply.h
 *		Running a query on the primary and reading its reply as untrusted
 *		input: every statement's shape, every value, checked before use;
 *		and the settings and identity checks of that session.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef REMOTE_REPLY_H
#define REMOTE_REPLY_H

#include "access/xlogdefs.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "sync_remote.h"

/* One column a statement's reply must have. */
typedef struct ReplyColumn
{
	const char *name;			/* for messages */
	Oid			type;			/* the type OID the RowDescription must say */
	bool		nullable;
	bool		in_hash;		/* part of the reply's content hash */
} ReplyColumn;

struct ReplyStatement;

/* One row of a reply, handed to the statement's row taker. */
typedef struct ReplyRow
{
	const struct ReplyStatement *statement;
	const PGresult *res;
	int			tuple;			/* row index within res */
	int			rowno;			/* row number within the statement, from 1 */
	StringInfo	err;			/* why the row is refused */
} ReplyRow;

/* What one statement of a query must return, and who takes its rows. */
typedef struct ReplyStatement
{
	const char *what;			/* for messages, e.g. "pg_slotsync.failover_slots()" */
	const ReplyColumn *columns; /* NULL: any columns, any values (the row
								 * taker checks them) */
	int			ncolumns;
	int			min_rows;
	int			max_rows;
	/* false, with a message in row->err, refuses the whole reply */
	bool		(*take_row) (void *arg, const ReplyRow *row);
	void	   *arg;
} ReplyStatement;

/* Outcome of reply_run() */
typedef enum ReplyOutcome
{
	REPLY_OK,
	REPLY_FAILED,				/* an error or a malformed reply; see err */
	REPLY_INTERRUPTED,			/* the caller asked to stop waiting */
	REPLY_BROKEN				/* the connection is unusable; see err */
} ReplyOutcome;

extern bool reply_wait_socket(PGconn *conn, int events,
							  bool (*interrupted) (void));
extern ReplyOutcome reply_run(PGconn *conn, const char *sql,
							  const ReplyStatement *statements,
							  int nstatements, bool (*interrupted) (void),
							  uint64 *hash, StringInfo err);
extern ReplyOutcome reply_run_params(PGconn *conn, const char *sql,
									 int nparams, const char *const *params,
									 bool binary,
									 const ReplyStatement *statement,
									 bool (*interrupted) (void),
									 StringInfo err);

/* Values of a row; each returns false with a message on a bad value. */
extern bool reply_isnull(const ReplyRow *row, int col);
extern bool reply_lsn(const ReplyRow *row, int col, XLogRecPtr *lsn);
extern bool reply_xid(const ReplyRow *row, int col, TransactionId *xid);
extern bool reply_int64(const ReplyRow *row, int col, int64 *value);
extern bool reply_bool(const ReplyRow *row, int col, bool *value);
extern bool reply_slot_name(const ReplyRow *row, int col, NameData *name);
extern bool reply_plugin_name(const ReplyRow *row, int col, NameData *name);
extern bool reply_database_name(const ReplyRow *row, int col,
								NameData *name);
extern bool reply_wal_file_timeline(const ReplyRow *row, int col,
									TimeLineID *tli);
extern bool reply_bytea(const ReplyRow *row, int col, char **data,
						Size *len);

/* remote_session.c */
extern char *remote_session_options(const char *conninfo);
extern void remote_notice_processor(void *arg, const char *message);
extern RemoteFailure remote_session_check(PGconn *conn,
										  bool (*interrupted) (void),
										  StringInfo errbuf);
extern const char *slot_sync_conninfo_setting(void);

/* Text from the peer, made safe for a log line. */
extern void append_remote_text(StringInfo buf, const char *str, int maxlen);
extern char *remote_text(const char *str);

#endif							/* REMOTE_REPLY_H */
