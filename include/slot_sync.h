/*-------------------------------------------------------------------------
 *
 * slot_sync.h
 *		The standby side: carrying out decisions on local slots, the anchor,
 *		per-slot status, the sync cycle, and the processes that run it.
 *
 * What to do with a slot is decided in sync_decide.h; the connection to the
 * primary is sync_remote.h.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef SLOT_SYNC_H
#define SLOT_SYNC_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "slot_marker.h"
#include "sync_decide.h"
#include "sync_remote.h"

/* Settings of the standby side (pg_slotsync.c) */
extern bool pg_slotsync_sync_enabled;
extern char *pg_slotsync_primary_conninfo;
extern char *pg_slotsync_primary_dbname;
extern int	pg_slotsync_stale_after;
extern int	pg_slotsync_max_wal_fetch;
extern int	pg_slotsync_stale_slot_policy;
extern int	pg_slotsync_stale_slot_grace;

/* values of pg_slotsync.stale_slots */
typedef enum StaleSlotsPolicy
{
	STALE_SLOTS_REPLACE,
	STALE_SLOTS_KEEP
} StaleSlotsPolicy;

/* Name of the worker's anchor slot; see sync_anchor.c */
#define SLOT_SYNC_ANCHOR_NAME "pg_slotsync_anchor"

/* Plugin a not-yet-ready synced slot carries, so that nobody can decode it */
#define SLOT_SYNC_NOT_READY_PLUGIN "pg_slotsync_not_ready"

/* sync_apply.c: side effects on local slots */
extern void sync_reserve_wal(XLogRecPtr lsn);
extern void sync_read_local(const char *name, LocalSlot *local,
							MarkerCacheEntry *cache, int *slot_index);
extern void sync_lock_database(Oid dboid, const char *dbname);
extern void sync_unlock_database(Oid dboid);
extern void sync_create_copy(const RemoteSlot *remote, Oid dboid,
							 XLogRecPtr create_at, bool history_pending);
extern void sync_history_done(const char *name);
extern void sync_compute_horizons(void);
extern bool sync_update_copy(const RemoteSlot *remote, bool make_ready,
							 const char *snapshot, Size snapshot_len);
extern void sync_invalidate_copy(const char *name);
extern void sync_demote_copy(const char *name);
extern int	sync_demote_ready_copies(const char *why);
extern int	sync_demote_if_unprotected(bool slot_name_changed);
extern void sync_drop_copy(const char *name, bool log_it);
extern int	sync_remove_debris(const char *why);
extern void sync_poke_walreceiver(void);

/* sync_history.c: the standby's past, completed from the primary */
typedef struct LocalHistory
{
	bool		known;
	XLogRecPtr	wal_from;		/* oldest LSN of the contiguous local WAL */
	XLogRecPtr	removed_upto;	/* WAL below this was removed since start */
} LocalHistory;

extern void sync_history_local(LocalHistory *history);
extern RemoteFailure sync_history_fetch(PrimaryConn *conn, XLogRecPtr from,
										const LocalHistory *history,
										bool (*interrupted) (void),
										StringInfo errbuf);

/* sync_anchor.c */
extern void sync_anchor_ensure(XLogRecPtr upto);
extern XLogRecPtr sync_anchor_target(XLogRecPtr floor, XLogRecPtr replay_before,
									 const RemoteSlot *slots, int nslots);
extern void sync_anchor_drop(bool log_it);
extern XLogRecPtr sync_protected_from(void);

/* sync_status.c: per-slot state in shared memory, and the sync claim */
typedef struct SyncStatusEntry
{
	NameData	name;
	NameData	database;
	uint64		incarnation;
	SyncState	state;
	SyncReason	reason_code;
	bool		seen;			/* listed in the current cycle */
	XLogRecPtr	remote_restart_lsn;
	XLogRecPtr	remote_confirmed_flush;
	TransactionId remote_catalog_xmin;
	TimestampTz last_sync;		/* last time the copy matched the primary */
	bool		settled;		/* equal to the primary's slot then */
	char		reason[256];
} SyncStatusEntry;

extern Size slot_sync_status_shmem_size(void);
extern void slot_sync_status_shmem_init(void *ptr, bool found);
extern void slot_sync_status_begin_cycle(void);
extern bool slot_sync_status_set(const RemoteSlot *remote, SyncState state,
								 SyncReason code, const char *reason,
								 bool synced_now, int *where);
extern void slot_sync_status_remove(const char *name);
extern void slot_sync_status_touch_settled(void);
extern void slot_sync_status_end_cycle(void);
extern void slot_sync_status_mark(const char *name, SyncState state,
								  SyncReason code, const char *reason);
extern void slot_sync_status_clear(void);
extern SyncStatusEntry *slot_sync_status_copy(int *n);
extern bool slot_sync_status_lookup(const char *name, SyncState *state,
									SyncReason *code, char *reason,
									Size reasonlen, TimestampTz *last_sync);
extern bool slot_sync_claim(void);
extern void slot_sync_release(void);
extern bool slot_sync_claimed_by_anyone(void);
extern void slot_sync_set_launcher_latch(struct Latch *latch);
extern uint64 slot_sync_claim_releases(void);

/* worker_status.c: the syncing process, as the views see it */
typedef enum WorkerPhase
{
	WORKER_PHASE_NONE,			/* no syncing process */
	WORKER_PHASE_STARTING,
	WORKER_PHASE_MISCONFIGURED, /* a setting keeps it from syncing */
	WORKER_PHASE_DISCONNECTED,	/* it cannot reach or use the primary */
	WORKER_PHASE_SYNCING
} WorkerPhase;

typedef struct WorkerStatus
{
	pid_t		pid;
	bool		manual;			/* a manual call, not the worker */
	WorkerPhase phase;
	bool		connected;
	TimestampTz started_at;
	TimestampTz last_sync;		/* last completed cycle */
	TimestampTz last_error_time;
	uint64		cycles;
	uint64		errors;
	int			last_examined;	/* slots the last cycle looked at */
	uint64		primary_sysid;
	char		last_error[512];
} WorkerStatus;

extern Size worker_status_shmem_size(void);
extern void worker_status_shmem_init(void *ptr, bool found);
extern void worker_status_started(bool manual);
extern void worker_status_stopped(void);
extern void worker_status_problem(WorkerPhase phase, const char *message);
extern void worker_status_synced(uint64 primary_sysid, int examined);
extern void worker_status_read(WorkerStatus *out);
extern bool worker_status_recent_sync(void);

/* sync_checks.c: what synchronization requires, and complaints about it */
typedef struct SyncComplaint
{
	int			sqlerrcode;
	char		message[512];
	char		detail[512];
	char		hint[256];
} SyncComplaint;

extern void sync_complain(SyncComplaint *c, int sqlerrcode, const char *hint,
						  const char *fmt,...) pg_attribute_printf(4, 5);
extern bool slot_sync_validate_local(SyncComplaint *complaint);
extern bool slot_sync_validate_primary(const PrimaryInfo *info,
									   SyncComplaint *complaint);
extern void slot_sync_complain_remote(SyncComplaint *complaint,
									  RemoteFailure failure, const char *what,
									  const char *message);

/* sync_cycle.c: one pass over all failover slots */
typedef struct SyncSession
{
	PrimaryConn *conn;
	bool		have_token;
	uint64		token;
	MemoryContext session_cxt;	/* as long as the session lives */
	MemoryContext cycle_cxt;	/* reset at every cycle */
	bool		(*interrupted) (void);
	struct HTAB *memory;		/* per-slot memory, see sync_cycle.c */
	dlist_head	unsettled;		/* ... of the slots not settled */
	int			nsettled;		/* how many are settled */
	uint64		cycle;			/* cycles run, this one included */
	bool		anchor_inputs_changed;	/* a listed restart_lsn changed */
	XLogRecPtr	anchor_floor;	/* anchor_lowest was found above this */
	XLogRecPtr	anchor_lowest;	/* lowest listed restart_lsn above it */
	TimestampTz last_full;		/* when the primary last sent everything */
	TransactionId last_primary_xmin;	/* its physical slot's, then */
	int			logical_slots_seen; /* live local logical slots after a
									 * cycle */
	int64		costly_step_us; /* how long a costly step takes, see
								 * sync_slots.c */
	struct HTAB *stale;			/* stale slots seen, see sync_stale.c */
	bool		stale_pending;	/* ... some still there */
} SyncSession;

typedef struct SyncCycleResult
{
	int			nexamined;		/* slots decided this cycle */
	uint64		primary_sysid;	/* the primary's system identifier */
	int			nchanged;		/* copies created, moved or dropped */
	bool		pending;		/* some slot may become ready soon */
	bool		deferred;		/* some slot was left for the next cycle */
	XLogRecPtr	flush_needed;	/* a slot waits for the standby's WAL */
} SyncCycleResult;

typedef enum SyncCycleStatus
{
	SYNC_CYCLE_OK,
	SYNC_CYCLE_FAILED,			/* see the complaint; reconnect */
	SYNC_CYCLE_INTERRUPTED		/* the caller asked to stop waiting */
} SyncCycleStatus;

extern void sync_session_init(SyncSession *session, MemoryContext parent,
							  const char *what, bool (*interrupted) (void));
extern void sync_session_disconnect(SyncSession *session);
extern void sync_session_destroy(SyncSession *session);
extern bool sync_session_connect(SyncSession *session, const char *appname,
								 SyncComplaint *complaint);
extern void slot_sync_listed_names(SyncSession *session, NameData **names,
								   int *nnames);
extern bool slot_sync_is_listed(SyncSession *session, const char *name);
extern SlotMarkerStatus slot_sync_marker(SyncSession *session,
										 const char *name,
										 SlotMarker *marker);
extern SyncCycleStatus slot_sync_cycle(SyncSession *session, int wait_ms,
									   SyncCycleResult *result,
									   SyncComplaint *complaint);

/* sync_stale.c: the standby's leftover logical slots */
extern Size sync_stale_shmem_size(void);
extern void sync_stale_shmem_init(void *ptr, bool found);
extern void sync_stale_clear(void);
extern void sync_replace_stale(const char *name);
extern void sync_stale_review(SyncSession *session, bool look);

/* sync_views.c */
extern Datum lsn_distance(XLogRecPtr ahead, XLogRecPtr behind);

/* sync_manual.c */
extern TimestampTz slot_sync_deadline(Interval *timeout);

/* sync_launcher.c, sync_worker.c */
extern void slot_sync_register_launcher(void);
extern char *slot_sync_application_name(bool worker);

#endif							/* SLOT_SYNC_H */
