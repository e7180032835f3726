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
#include "lib/stringinfo.h"
#include "slot_marker.h"
#include "sync_decide.h"
#include "sync_remote.h"

/* Settings of the standby side (pg_slotsync.c) */
extern bool pg_slotsync_sync_enabled;
extern char *pg_slotsync_primary_conninfo;

/* Name of the worker's anchor slot; see sync_anchor.c */
#define SLOT_SYNC_ANCHOR_NAME "pg_slotsync_anchor"

/* Plugin a not-yet-ready synced slot carries, so that nobody can decode it */
#define SLOT_SYNC_NOT_READY_PLUGIN "pg_slotsync_not_ready"

/* sync_apply.c: side effects on local slots */
extern void sync_reserve_wal(XLogRecPtr lsn);
extern void sync_read_local(const char *name, LocalSlot *local,
							MarkerCacheEntry *cache);
extern void sync_lock_database(Oid dboid, const char *dbname);
extern void sync_unlock_database(Oid dboid);
extern void sync_create_copy(const RemoteSlot *remote, Oid dboid,
							 XLogRecPtr create_at);
extern bool sync_update_copy(const RemoteSlot *remote, bool make_ready,
							 const char *snapshot, Size snapshot_len);
extern void sync_invalidate_copy(const char *name);
extern void sync_drop_copy(const char *name, bool log_it);
extern int	sync_remove_debris(const char *why);
extern void sync_poke_walreceiver(void);

/* sync_anchor.c */
extern void sync_anchor_ensure(XLogRecPtr upto);
extern XLogRecPtr sync_anchor_target(XLogRecPtr floor, XLogRecPtr replay_before,
									 const RemoteSlot *slots, int nslots);
extern void sync_anchor_drop(bool log_it);
extern XLogRecPtr sync_protected_from(void);

/* sync_status.c: per-slot state in shared memory, and the sync claim */
extern Size slot_sync_status_shmem_size(void);
extern void slot_sync_status_shmem_init(void *ptr, bool found);
extern void slot_sync_status_begin_cycle(void);
extern bool slot_sync_status_set(const RemoteSlot *remote, SyncState state,
								 SyncReason code, const char *reason,
								 bool synced_now);
extern void slot_sync_status_end_cycle(void);
extern void slot_sync_status_clear(void);
extern bool slot_sync_status_lookup(const char *name, SyncState *state,
									SyncReason *code, char *reason,
									Size reasonlen, TimestampTz *last_sync);
extern bool slot_sync_claim(void);
extern void slot_sync_release(void);
extern bool slot_sync_claimed_by_anyone(void);
extern void slot_sync_set_launcher_latch(struct Latch *latch);
extern uint64 slot_sync_claim_releases(void);

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
} SyncSession;

typedef struct SyncCycleResult
{
	int			nchanged;		/* copies created, moved or dropped */
	bool		pending;		/* some slot may become ready soon */
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
extern SyncCycleStatus slot_sync_cycle(SyncSession *session, int wait_ms,
									   SyncCycleResult *result,
									   SyncComplaint *complaint);

/* sync_launcher.c, sync_worker.c */
extern void slot_sync_register_launcher(void);
extern char *slot_sync_application_name(bool worker);

#endif							/* SLOT_SYNC_H */
