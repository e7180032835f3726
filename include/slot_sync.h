/*-------------------------------------------------------------------------
 *
 * slot_sync.h
 *		Types and entry points of the standby side: fetching failover slots
 *		from the primary, deciding what to do with each, doing it, and
 *		reporting per-slot state.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef SLOT_SYNC_H
#define SLOT_SYNC_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "libpq-fe.h"
#include "lib/stringinfo.h"
#include "storage/lwlock.h"

/* Settings of the standby side (pg_slotsync.c) */
extern bool pg_slotsync_sync_enabled;
extern char *pg_slotsync_primary_conninfo;

/* Name of the worker's anchor slot; see sync_apply.c */
#define SLOT_SYNC_ANCHOR_NAME "pg_slotsync_anchor"

/* Plugin a not-yet-ready synced slot carries, so that nobody can decode it */
#define SLOT_SYNC_NOT_READY_PLUGIN "pg_slotsync_not_ready"

/* One failover slot as the primary reports it. */
typedef struct RemoteSlot
{
	NameData	name;
	NameData	plugin;
	NameData	database;
	bool		two_phase;
	XLogRecPtr	two_phase_at;
	XLogRecPtr	restart_lsn;
	XLogRecPtr	confirmed_flush;
	TransactionId catalog_xmin;
	bool		invalidated;
} RemoteSlot;

/* What the primary reports about itself and our physical slot. */
typedef struct PrimaryInfo
{
	uint64		token;
	bool		in_recovery;
	bool		wal_level_logical;
	bool		standby_slot_exists;
	bool		standby_slot_is_physical;
	XLogRecPtr	standby_slot_restart_lsn;
	TransactionId standby_slot_catalog_xmin;
} PrimaryInfo;

/* What the standby has under a remote slot's name. */
typedef struct LocalSlot
{
	bool		exists;
	bool		synced;			/* created by sync (our marker says so) */
	bool		ready;			/* sync-ready: safe to use after promotion */
	bool		is_logical;
	bool		invalidated;
	Oid			database;
	XLogRecPtr	restart_lsn;
	XLogRecPtr	confirmed_flush;
	TransactionId catalog_xmin;
	bool		two_phase;
	XLogRecPtr	two_phase_at;
} LocalSlot;

/* Per-slot states, as the views show them */
typedef enum SyncState
{
	SYNC_STATE_NOT_READY,
	SYNC_STATE_READY,
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
	SYNC_REASON_NO_DATABASE,
	SYNC_REASON_LOCAL_INVALIDATED,
	SYNC_REASON_WAL_NOT_FLUSHED,
	SYNC_REASON_CREATING,
	SYNC_REASON_LOCAL_AHEAD,
	SYNC_REASON_REMOTE_BEHIND,
	SYNC_REASON_FEEDBACK_PENDING,
	SYNC_REASON_SLOT_MOVED,
	SYNC_REASON_ERROR
} SyncReason;

/* What to do with one remote slot */
typedef enum SyncAction
{
	SYNC_ACTION_NONE,			/* nothing now; state and reason say why */
	SYNC_ACTION_CREATE,			/* create the local slot (not ready) */
	SYNC_ACTION_UPDATE,			/* copy the remote position */
	SYNC_ACTION_RECREATE,		/* drop the local copy, create afresh */
	SYNC_ACTION_INVALIDATE		/* copy the remote invalidation */
} SyncAction;

typedef struct SyncInputs
{
	const RemoteSlot *remote;
	LocalSlot	local;
	bool		database_exists;
	XLogRecPtr	standby_flush;	/* WAL the standby has flushed */
	XLogRecPtr	protected_from; /* lowest LSN local slots have kept all
								 * decoding files and WAL from */
	bool		primary_keeps_catalog;	/* standby slot's catalog_xmin valid */
	TransactionId primary_catalog_xmin; /* ... and its value */
} SyncInputs;

typedef struct SyncDecision
{
	SyncAction	action;
	SyncState	state;			/* state after the action, if it succeeds */
	bool		becomes_ready;	/* UPDATE makes a not-ready slot ready */
	SyncReason	reason_code;	/* why not ready, or SYNC_REASON_NONE */
	XLogRecPtr	needs_flush;	/* retry once the standby flushed this */
	char		reason[256];	/* ... in words, with the LSNs and xids */
} SyncDecision;

/* sync_decide.c: pure decisions, no side effects */
extern void slot_sync_decide(const SyncInputs *in, SyncDecision *out);
extern const char *sync_reason_name(SyncReason reason);
extern bool sync_reason_is_data_loss(SyncReason reason);

/* sync_remote.c: the connection to the primary */
typedef struct PrimaryConn PrimaryConn;
extern PrimaryConn *primary_connect(const char *conninfo,
									const char *appname, int elevel);
extern void primary_disconnect(PrimaryConn *conn);
extern bool primary_fetch(PrimaryConn *conn, const char *standby_slot,
						  bool have_token, uint64 token, int wait_ms,
						  PrimaryInfo *info, RemoteSlot **slots,
						  int *nslots, bool (*interrupted) (void),
						  StringInfo errbuf);
extern int	primary_fetch_snapshot(PrimaryConn *conn, const char *slot_name,
								   XLogRecPtr *restart_lsn,
								   char **data, Size *len,
								   bool (*interrupted) (void),
								   StringInfo errbuf);
extern char *conninfo_dbname(const char *conninfo);
extern const char *slot_sync_conninfo(void);

/* sync_apply.c: side effects on local slots */
extern void sync_anchor_ensure(XLogRecPtr upto);
extern void sync_anchor_drop(void);
extern XLogRecPtr sync_protected_from(void);
/* A syncing process's copy of a slot's marker flags. */
typedef struct MarkerCacheEntry
{
	bool		valid;
	uint64		generation;		/* SlotSyncState->marker_generation then */
	uint32		flags;
} MarkerCacheEntry;

extern void sync_read_local(const char *name, LocalSlot *local,
							MarkerCacheEntry *cache);
extern void sync_create_slot(const RemoteSlot *remote, Oid dboid);
extern bool sync_update_slot(const RemoteSlot *remote, bool make_ready,
							 const char *snapshot, Size snapshot_len);
extern void sync_invalidate_slot(const char *name);
extern void sync_drop_slot(const char *name, bool log_it);
extern int	sync_drop_not_ready_slots(void);
extern int	sync_count_logical_slots(void);
extern bool sync_snapshot_exists(XLogRecPtr lsn);
extern void sync_poke_walreceiver(void);

/* sync_status.c: per-slot state in shared memory */
extern Size slot_sync_status_shmem_size(void);
extern void slot_sync_status_shmem_init(void *ptr, bool found);
extern void slot_sync_status_begin_cycle(void);
extern void slot_sync_status_set(const RemoteSlot *remote, SyncState state,
								 SyncReason code, const char *reason,
								 bool synced_now);
extern void slot_sync_status_end_cycle(void);
extern void slot_sync_status_clear(void);
extern bool slot_sync_status_lookup(const char *name, SyncState *state,
									char *reason, Size reasonlen,
									TimestampTz *last_sync);
extern const char *sync_state_name(SyncState state);

/* sync_cycle.c: one pass over all failover slots */
typedef struct SyncCycleResult
{
	int			nremote;
	int			nready;
	int			nchanged;
	bool		pending;		/* some slot may become ready soon */
	XLogRecPtr	flush_needed;	/* a slot waits for the standby's WAL */
} SyncCycleResult;

/* What a syncing process remembers about each slot between cycles. */
typedef struct SlotMemory
{
	NameData	name;			/* hash key */
	bool		had_copy;		/* we made or kept a local copy */
	bool		listed;			/* listed by the primary this cycle */
	XLogRecPtr	fileless_lsn;	/* primary has no snapshot file here */
	SyncReason	last_reason;	/* last kind of reason logged */
	MarkerCacheEntry marker;	/* saves reading the marker every cycle */
} SlotMemory;

typedef struct SyncSession
{
	PrimaryConn *conn;
	bool		have_token;
	uint64		token;
	MemoryContext cycle_cxt;
	bool		(*interrupted) (void);
	/* per-slot memory (SlotMemory by name): see sync_cycle.c */
	struct HTAB *memory;
} SyncSession;

/* A configuration problem, worded for the log or for an ERROR. */
typedef struct SyncComplaint
{
	int			sqlerrcode;
	char		message[512];
	char		hint[256];
} SyncComplaint;

typedef enum SyncCycleStatus
{
	SYNC_CYCLE_OK,
	SYNC_CYCLE_FAILED,			/* see the complaint; reconnect */
	SYNC_CYCLE_INTERRUPTED		/* the caller asked to stop waiting */
} SyncCycleStatus;

extern bool slot_sync_validate_local(SyncComplaint *complaint);
extern bool slot_sync_validate_primary(const PrimaryInfo *info,
									   SyncComplaint *complaint);
extern void slot_sync_listed_names(SyncSession *session, NameData **names,
								   int *nnames);
extern SyncCycleStatus slot_sync_cycle(SyncSession *session, int wait_ms,
									   SyncCycleResult *result,
									   SyncComplaint *complaint);

/* sync_worker.c */
extern void slot_sync_register_launcher(void);

/* sync_status.c */
extern bool slot_sync_claim(void);
extern void slot_sync_release(void);

#endif							/* SLOT_SYNC_H */
