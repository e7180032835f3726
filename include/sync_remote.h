/*-------------------------------------------------------------------------
 *
 * sync_remote.h
 *		The standby's connection to its primary, and what it asks there.
 *
 * libpq stays inside sync_remote.c: callers see an opaque connection.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_REMOTE_H
#define SYNC_REMOTE_H

#include "access/xlogdefs.h"
#include "lib/stringinfo.h"
#include "sync_decide.h"

/* The extension version the standby's library needs on the primary. */
#define SLOT_SYNC_PRIMARY_EXTVERSION "1.1"

/* What the primary reports about itself and our physical slot. */
typedef struct PrimaryInfo
{
	uint64		token;
	bool		full_list;		/* the slots are the whole list */
	uint64		system_identifier;
	bool		in_recovery;
	bool		wal_level_logical;
	bool		standby_slot_exists;
	bool		standby_slot_is_physical;
	TransactionId standby_slot_catalog_xmin;
} PrimaryInfo;

/* The primary's serialized snapshot at one slot's restart_lsn. */
typedef struct RemoteSnapshot
{
	bool		slot_found;		/* the slot still exists there */
	XLogRecPtr	restart_lsn;	/* its restart_lsn the answer is for */
	char	   *data;			/* the file, NULL if there is none */
	Size		len;
} RemoteSnapshot;

/* Why a remote call failed. */
typedef enum RemoteFailure
{
	REMOTE_OK,
	REMOTE_INTERRUPTED,			/* the caller asked to give up */
	REMOTE_NOT_INSTALLED,		/* no pg_slotsync in that database */
	REMOTE_OLD_VERSION,			/* pg_slotsync older than we need there */
	REMOTE_NO_PRIVILEGE,		/* the role may not call our functions */
	REMOTE_OTHER_SYSTEM,		/* not this standby's cluster */
	REMOTE_OLD_TIMELINE,		/* an old primary left behind by a failover */
	REMOTE_ERROR				/* anything else: see the message */
} RemoteFailure;

/* A result copied out of libpq: value [row * ncols + col], NULL if null. */
typedef struct RemoteResult
{
	int			nrows;
	int			ncols;
	char	  **values;
	int		   *lengths;
} RemoteResult;

typedef struct PrimaryConn PrimaryConn;

extern const char *slot_sync_conninfo(void);
extern bool slot_sync_streaming(void);
extern char *slot_sync_dbname(void);
extern char *conninfo_dbname(const char *conninfo);
extern PrimaryConn *primary_connect(const char *conninfo,
									const char *appname,
									bool (*interrupted) (void),
									StringInfo errbuf);
extern void primary_disconnect(PrimaryConn *conn);
extern RemoteFailure primary_check_server(PrimaryConn *conn,
										  bool (*interrupted) (void),
										  StringInfo errbuf);
extern RemoteFailure primary_fetch(PrimaryConn *conn, const char *standby_slot,
								   bool have_token, uint64 token, int wait_ms,
								   PrimaryInfo *info, RemoteSlot **slots,
								   int *nslots, bool (*interrupted) (void),
								   StringInfo errbuf);
extern RemoteFailure primary_query(PrimaryConn *conn, const char *sql,
								   int nparams, const char *const *params,
								   bool binary, RemoteResult **result,
								   bool (*interrupted) (void),
								   StringInfo errbuf);
extern RemoteFailure primary_fetch_snapshots(PrimaryConn *conn,
											 const RemoteSlot *const *slots,
											 int nslots, RemoteSnapshot *out,
											 bool (*interrupted) (void),
											 StringInfo errbuf);

#endif							/* SYNC_REMOTE_H */
