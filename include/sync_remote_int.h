/*-------------------------------------------------------------------------
 *
 * sync_remote_int.h
 *		What sync_remote.c shares with sync_remote_queries.c: the
 *		connection's state and the one way to run a checked query.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_REMOTE_INT_H
#define SYNC_REMOTE_INT_H

#include "libpq-fe.h"
#include "remote_reply.h"
#include "sync_remote.h"

struct PrimaryConn
{
	PGconn	   *conn;
	bool		broken;			/* unusable: a reply was abandoned midway */
	bool		have_hash;
	uint64		last_hash;		/* content of the last fetch's reply */
	bool		early_logged;	/* an early answer was reported */
};

extern bool remote_usable(PrimaryConn *pc, StringInfo errbuf);
extern RemoteFailure remote_outcome(PrimaryConn *pc, ReplyOutcome outcome,
									StringInfo err, StringInfo errbuf);
extern RemoteFailure remote_run_checked(PrimaryConn *pc, const char *sql,
										const ReplyStatement *statements,
										int nstatements,
										bool (*interrupted) (void),
										uint64 *hash, StringInfo errbuf);

#endif							/* SYNC_REMOTE_INT_H */
