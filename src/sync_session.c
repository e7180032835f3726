/*-------------------------------------------------------------------------
 *
 * sync_session.c
 *		A syncing session: its connection to the primary, its memory, and
 *		what it remembers about each failover slot between cycles.
 *
 * The worker keeps one session for as long as it runs (reconnecting
 * within it); pg_slotsync.sync_replication_slots() makes one for its call
 * only, in the query's memory, so that nothing leaks however the call ends.
 * A session's per-slot memory (SlotMemory, sync_cycle_int.h) is what makes
 * a cycle cheap: the primary's slot as last reported, whether the copy
 * equalled it at the last look ("settled", so that a cycle need not decide
 * it again), the last kind of reason logged, and a cached marker.  It is
 * keyed by slot name and lives in the session's context.  The slots not
 * settled are also on a list (SyncSession.unsettled), so that a cycle finds
 * the few it must decide without walking all of them: with thousands of
 * failover slots that walk, every cycle, cost more than the cycle's work.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "sync_cycle_int.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

void
session_slot_memory_init(SyncSession *session)
{
	HASHCTL		ctl;

	if (session->memory != NULL)
		return;
	ctl.keysize = sizeof(NameData);
	ctl.entrysize = sizeof(SlotMemory);
	ctl.hcxt = session->session_cxt;
	session->memory = hash_create("pg_slotsync slot memory", 64, &ctl,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	dlist_init(&session->unsettled);
	session->nsettled = 0;
	session->anchor_inputs_changed = true;
}

SlotMemory *
session_slot_memory(SyncSession *session, const char *name)
{
	SlotMemory *mem;
	bool		found;
	NameData	key;

	session_slot_memory_init(session);
	namestrcpy(&key, name);
	mem = hash_search(session->memory, &key, HASH_ENTER, &found);
	if (!found)
	{
		memset(mem, 0, sizeof(*mem));
		mem->name = key;
		/* a copy found behind is counted as behind from now on */
		mem->synced_at = GetCurrentTimestamp();
		dlist_push_tail(&session->unsettled, &mem->unsettled_node);
	}
	return mem;
}

/*
 * Record whether the slot's copy equals the primary's slot; one not settled
 * is decided again next cycle (it is on the session's unsettled list).
 */
void
session_slot_settle(SyncSession *session, SlotMemory *mem, bool settled)
{
	if (settled && !mem->settled)
	{
		dlist_delete(&mem->unsettled_node);
		session->nsettled++;
	}
	else if (!settled && mem->settled)
	{
		dlist_push_tail(&session->unsettled, &mem->unsettled_node);
		session->nsettled--;
	}
	mem->settled = settled;
}

/*
 * Move a slot that is not settled to the end of the list: it had its turn
 * at costly work this cycle, and the slots behind it get theirs first.
 */
void
session_slot_requeue(SyncSession *session, SlotMemory *mem)
{
	if (mem->settled)
		return;
	dlist_delete(&mem->unsettled_node);
	dlist_push_tail(&session->unsettled, &mem->unsettled_node);
}

/* Forget a slot altogether. */
void
session_slot_forget(SyncSession *session, SlotMemory *mem)
{
	NameData	key = mem->name;

	if (!mem->settled)
		dlist_delete(&mem->unsettled_node);
	else
		session->nsettled--;
	hash_search(session->memory, &key, HASH_REMOVE, NULL);
}

/*
 * The names the primary listed in the last cycle (palloc'd).
 */
void
slot_sync_listed_names(SyncSession *session, NameData **names, int *nnames)
{
	HASH_SEQ_STATUS seq;
	SlotMemory *mem;
	int			n = 0;

	*names = palloc(sizeof(NameData) *
					Max(1, session->memory ? hash_get_num_entries(session->memory) : 1));
	if (session->memory != NULL)
	{
		hash_seq_init(&seq, session->memory);
		while ((mem = hash_seq_search(&seq)) != NULL)
			if (mem->listed)
				(*names)[n++] = mem->name;
	}
	*nnames = n;
}

/* Did the primary list this slot in the last cycle? */
bool
slot_sync_is_listed(SyncSession *session, const char *name)
{
	NameData	key;
	SlotMemory *mem;

	if (session->memory == NULL)
		return false;
	namestrcpy(&key, name);
	mem = hash_search(session->memory, &key, HASH_FIND, NULL);
	return mem != NULL && mem->listed;
}

/*
 * The marker of a local slot: through the cache of the session's memory
 * when the session knows the name, so that a review of every local slot
 * (sync_stale.c) reads no file for the copies the session keeps.
 */
SlotMarkerStatus
slot_sync_marker(SyncSession *session, const char *name, SlotMarker *marker)
{
	NameData	key;
	SlotMemory *mem = NULL;

	if (session != NULL && session->memory != NULL)
	{
		namestrcpy(&key, name);
		mem = hash_search(session->memory, &key, HASH_FIND, NULL);
	}
	if (mem == NULL)
		return slot_marker_examine(name, marker);
	(void) slot_marker_read_cached(name, &mem->marker);
	*marker = mem->marker.marker;
	return mem->marker.status;
}

/* ---------------------------------------------------------------------
 * Sessions
 * ---------------------------------------------------------------------
 */

/*
 * A session's memory lives under "parent": the worker's for as long as it
 * runs, the manual function's only for its query, so that nothing leaks
 * however the call ends.
 */
void
sync_session_init(SyncSession *session, MemoryContext parent,
				  const char *what, bool (*interrupted) (void))
{
	memset(session, 0, sizeof(*session));
	session->session_cxt = AllocSetContextCreate(parent, "pg_slotsync session",
												 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSetIdentifier(session->session_cxt, what);
	session->cycle_cxt = AllocSetContextCreate(session->session_cxt,
											   "pg_slotsync cycle",
											   ALLOCSET_DEFAULT_SIZES);
	session->interrupted = interrupted;
}

void
sync_session_disconnect(SyncSession *session)
{
	primary_disconnect(session->conn);
	session->conn = NULL;
	session->have_token = false;
}

/* Disconnect and free everything; the session must be initialized again. */
void
sync_session_destroy(SyncSession *session)
{
	sync_session_disconnect(session);
	if (session->session_cxt != NULL)
		MemoryContextDelete(session->session_cxt);
	session->session_cxt = NULL;
	session->cycle_cxt = NULL;
	session->memory = NULL;
	dlist_init(&session->unsettled);
	session->nsettled = 0;
}

/*
 * Connect to the primary and check that it is this standby's primary, with
 * the extension there; false, with a complaint, if that did not work.
 */
bool
sync_session_connect(SyncSession *session, const char *appname,
					 SyncComplaint *complaint)
{
	StringInfoData err;
	RemoteFailure failure;
	MemoryContext oldcxt;

	initStringInfo(&err);
	session->have_token = false;
	oldcxt = MemoryContextSwitchTo(session->session_cxt);
	session->conn = primary_connect(slot_sync_conninfo(), appname,
									session->interrupted, &err);
	MemoryContextSwitchTo(oldcxt);
	if (session->conn == NULL)
	{
		slot_sync_complain_remote(complaint, REMOTE_ERROR,
								  "connect to the primary server", err.data);
		pfree(err.data);
		return false;
	}
	failure = primary_check_server(session->conn, session->interrupted,
								   &err);
	if (failure != REMOTE_OK)
	{
		slot_sync_complain_remote(complaint, failure,
								  "check the primary server", err.data);
		sync_session_disconnect(session);
		pfree(err.data);
		return false;
	}
	pfree(err.data);
	return true;
}
