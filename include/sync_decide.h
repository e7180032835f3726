/*-------------------------------------------------------------------------
 *
 * sync_decide.h
 *		What a standby should do with one failover slot of its primary: the
 *		inputs, the plan, and the pure function between them.
 *
 * Nothing here touches a slot, a file or a connection; see sync_decide.c.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_DECIDE_H
#define SYNC_DECIDE_H

#include "access/xlogdefs.h"

/* One failover slot as the primary reports it. */
typedef struct RemoteSlot
{
	NameData	name;
	bool		removed;		/* gone from the primary's list (a change) */
	NameData	plugin;
	Oid			database_oid;	/* the same on the primary and its standby */
	NameData	database;
	uint64		incarnation;	/* see slot_marker.h */
	bool		two_phase;
	XLogRecPtr	two_phase_at;
	XLogRecPtr	restart_lsn;
	XLogRecPtr	confirmed_flush;
	TransactionId catalog_xmin;
	bool		invalidated;
} RemoteSlot;

/* What the standby has under a remote slot's name. */
typedef struct LocalSlot
{
	bool		exists;
	bool		synced;			/* created by sync (our marker says so) */
	bool		ready;			/* sync-ready: safe to use after promotion */
	bool		is_logical;
	bool		invalidated;
	NameData	plugin;
	Oid			database;
	uint64		incarnation;
	XLogRecPtr	restart_lsn;
	XLogRecPtr	confirmed_flush;
	TransactionId catalog_xmin;
	bool		two_phase;
	XLogRecPtr	two_phase_at;
	bool		history_pending;	/* WAL or mapping files from its
									 * restart_lsn still to be fetched */
} LocalSlot;

/* Per-slot states, as the views show them */
typedef enum SyncState
{
	SYNC_STATE_NOT_READY,
	SYNC_STATE_READY,
	SYNC_STATE_STALE,			/* ready, but not confirmed current lately */
	SYNC_STATE_CONFLICT,
	SYNC_STATE_INVALIDATED,
	SYNC_STATE_ERROR
} SyncState;

/* Why a slot is not ready (stable names in sync_reason_name()) */
typedef enum SyncReason
{
	SYNC_REASON_NONE,
	SYNC_REASON_SAME_NAME_SLOT,
	SYNC_REASON_REMOTE_INVALIDATED,
	SYNC_REASON_REMOTE_INCOMPLETE,
	SYNC_REASON_DATABASE_MISSING,
	SYNC_REASON_IDENTITY_CHANGED,
	SYNC_REASON_LOCAL_INVALIDATED,
	SYNC_REASON_UNPROTECTED,
	SYNC_REASON_WAL_NOT_FLUSHED,
	SYNC_REASON_NO_FREE_SLOT,
	SYNC_REASON_CREATING,
	SYNC_REASON_LOCAL_AHEAD,
	SYNC_REASON_WAITING_FOR_REMOTE,
	SYNC_REASON_FEEDBACK_PENDING,
	SYNC_REASON_SLOT_MOVED,
	SYNC_REASON_SNAPSHOT_INVALID,
	SYNC_REASON_FETCHING_HISTORY,
	SYNC_REASON_HISTORY_UNAVAILABLE,
	SYNC_REASON_LAGGING,
	SYNC_REASON_NO_RECENT_SYNC,
	SYNC_REASON_ERROR
} SyncReason;

#define SYNC_REASON_COUNT (SYNC_REASON_ERROR + 1)

/* What to do with one remote slot */
typedef enum SyncAction
{
	SYNC_ACTION_NONE,			/* nothing now; state and reason say why */
	SYNC_ACTION_CREATE,			/* create the local copy at create_at */
	SYNC_ACTION_UPDATE,			/* copy the remote position (and maybe
								 * make the copy ready) */
	SYNC_ACTION_DROP,			/* drop the local copy; decide again on
								 * what is left, which creates it afresh */
	SYNC_ACTION_DEMOTE,			/* the copy is no longer ready: say so on
								 * disk, then decide again */
	SYNC_ACTION_HISTORY_DONE,	/* its history was fetched: take the mark
								 * away, then decide again */
	SYNC_ACTION_INVALIDATE,		/* copy the remote invalidation */
	SYNC_ACTION_REPLACE_STALE	/* drop the standby's own slot of that name
								 * (a leftover, pg_slotsync.stale_slots =
								 * replace), then decide again */
} SyncAction;

/* The primary's serialized snapshot at the remote restart_lsn */
typedef enum SnapshotState
{
	SNAPSHOT_NOT_LOOKED,		/* nobody looked yet */
	SNAPSHOT_ON_STANDBY,		/* the standby has the file already */
	SNAPSHOT_RECEIVED,			/* received from the primary and checked */
	SNAPSHOT_NONE,				/* the primary has none there: its slot
								 * never moved since it was created */
	SNAPSHOT_SLOT_MOVED,		/* the primary's slot moved on while we
								 * asked: decide again next cycle */
	SNAPSHOT_INVALID			/* what the primary sent fails the checks */
} SnapshotState;

typedef struct SyncInputs
{
	const RemoteSlot *remote;
	LocalSlot	local;
	Oid			database_oid;	/* the remote slot's database here, or
								 * InvalidOid if the standby has none */
	bool		free_slot;		/* could the standby create one more slot? */
	XLogRecPtr	standby_flush;	/* WAL the standby has flushed */
	XLogRecPtr	standby_replay; /* ... and replayed */
	XLogRecPtr	protected_from; /* lowest LSN from which our slots have
								 * kept all WAL and decoding files; invalid
								 * if none */
	bool		primary_keeps_catalog;	/* our physical slot on the primary
										 * has a catalog_xmin ... */
	TransactionId primary_catalog_xmin; /* ... and this is it */
	SnapshotState snapshot;
	int64		behind_ms;		/* how long since the copy last equalled
								 * the primary's slot */
	int			stale_after_ms; /* pg_slotsync.stale_after */
	bool		replace_stale;	/* pg_slotsync.stale_slots = replace */

	/* the standby's past, for copies of slots older than the anchor */
	XLogRecPtr	wal_from;		/* oldest LSN of the standby's contiguous
								 * WAL; invalid if not looked at */
	XLogRecPtr	removed_upto;	/* WAL below this was removed since start */
	int64		max_fetch_bytes;	/* pg_slotsync.max_wal_fetch; 0: never */
	XLogRecPtr	history_fetched_from;	/* fetched this cycle from here;
										 * invalid if not */
	const char *history_failure;	/* why a fetch this cycle failed */
} SyncInputs;

typedef struct SyncPlan
{
	SyncAction	action;
	XLogRecPtr	create_at;		/* CREATE: the copy's restart_lsn */
	bool		fetch_snapshot; /* get the primary's snapshot at the remote
								 * restart_lsn, then decide again */
	bool		fetch_history;	/* complete the standby's WAL and mapping
								 * files from the copy's restart_lsn, then
								 * decide again */
	bool		history_pending;	/* CREATE: below the anchor, history
									 * still to be fetched */
	bool		becomes_ready;	/* UPDATE makes a not-ready copy ready */
	SyncState	state;			/* state after the action, if it succeeds */
	SyncReason	reason_code;	/* why not ready, or SYNC_REASON_NONE */
	XLogRecPtr	needs_flush;	/* retry once the standby flushed this */
	char		reason[256];	/* ... in words, with the LSNs and xids */
} SyncPlan;

/* What to do with a stale slot of the standby's own (see sync_stale.c) */
typedef enum StaleAction
{
	STALE_KEEP,					/* leave it, report it */
	STALE_WAIT,					/* report it; drop it when the grace is over */
	STALE_DROP					/* drop it now */
} StaleAction;

extern void slot_sync_decide(const SyncInputs *in, SyncPlan *plan);
extern StaleAction sync_stale_action(bool replace, bool listed, int64 seen_ms,
									 int grace_ms);
extern bool sync_local_protection_lost(bool feedback, bool streaming,
									   bool other_timeline,
									   const char *slot_name,
									   bool slot_name_changed,
									   char *why, Size whylen);
extern SyncState sync_reported_state(SyncState recorded, bool marker_ready,
									 bool recent_sync, SyncReason *code);
extern const char *sync_reason_name(SyncReason reason);
extern const char *sync_state_name(SyncState state);
extern bool sync_reason_is_data_loss(SyncReason reason);

#endif							/* SYNC_DECIDE_H */
