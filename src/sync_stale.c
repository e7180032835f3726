/*-------------------------------------------------------------------------
 *
 * sync_stale.c
 *		Stale logical slots on a syncing standby: leftovers from when the
 *		server was a primary.  pg_slotsync.stale_slots says what becomes of
 *		them; pg_slotsync.stale_slots (the view) shows them.
 *
 * PostgreSQL 15 cannot create a logical slot during recovery, and
 * pg_basebackup and pg_rewind leave pg_replslot out.  So a logical slot on
 * a standby that sync did not create (no marker saying so, not the anchor)
 * is a leftover: the server was a primary until a switchover demoted it,
 * or someone copied a slot directory in by hand.  Nobody can decode from it
 * while the server is a standby, yet it holds WAL here and, through
 * hot_standby_feedback, the primary's catalog rows (the primary's
 * catalog_xmin stays where the leftover's is: bloat).  And a leftover
 * under the name of a failover slot of the primary keeps that slot from
 * being synchronized.
 *
 * Under pg_slotsync.stale_slots = replace (the default):
 *	- a leftover with the name of a failover slot of the primary is dropped
 *	  at once, its old position logged, and the primary's slot synchronized
 *	  in its place.  The rule is slot_sync_decide()'s (SYNC_ACTION_REPLACE_
 *	  STALE); sync_replace_stale() below carries it out.
 *	- any other leftover is logged when first seen, shown in the view with
 *	  the time it will be dropped, and dropped once it has been seen for
 *	  pg_slotsync.stale_slot_grace (sync_stale_action() decides).
 * Under keep, nothing is dropped: a same-name leftover blocks its slot (a
 * conflict in sync_status, as in core), and every leftover is logged once
 * and shown in the view with what it holds back.
 *
 * Why replace by default: a leftover cannot be used until this server is
 * promoted, and then only a copy of the primary's slot resumes where the
 * consumer is; the leftover's position is from before the failover, on a
 * timeline that was abandoned.  Its only effect is WAL and catalog bloat,
 * and a failover slot that is not synchronized.  The grace period gives a
 * DBA time to look at slots that are not failover slots of the primary.
 *
 * The syncing process reviews the standby's slots after a cycle that looked
 * at every slot (the first, a full list, a local slot gone) and, while
 * leftovers exist, after every cycle: their timers run.  "First seen"
 * lives in the syncing session, so a restart of the worker starts the grace
 * period again: a leftover is never dropped early, only late.  The view
 * scans the slots itself (so it shows leftovers also when nobody syncs) and
 * adds what the syncing process published: whether the primary has a
 * failover slot of that name, when it was first seen, when it will be
 * dropped.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlogrecovery.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "replication/slot.h"
#include "slot_copy.h"
#include "slot_sync.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_slotsync_stale_slot_rows);

/* What the syncing process publishes about one leftover. */
typedef struct StaleEntry
{
	NameData	name;
	bool		listed;			/* the primary has a failover slot of that
								 * name */
	TimestampTz first_seen;
	TimestampTz drop_at;		/* 0: never (keep, or listed) */
} StaleEntry;

typedef struct StaleShared
{
	LWLock	   *lock;
	int			nentries;
	StaleEntry	entries[FLEXIBLE_ARRAY_MEMBER];
} StaleShared;

static StaleShared *Stale = NULL;

/* The syncing session's memory of one leftover. */
typedef struct StaleMemory
{
	NameData	name;			/* hash key */
	TimestampTz first_seen;
	bool		seen;			/* in this review */
} StaleMemory;

Size
sync_stale_shmem_size(void)
{
	return add_size(offsetof(StaleShared, entries),
					mul_size(sizeof(StaleEntry), max_replication_slots));
}

void
sync_stale_shmem_init(void *ptr, bool found)
{
	Stale = (StaleShared *) ptr;
	if (!found)
	{
		memset(Stale, 0, sync_stale_shmem_size());
		Stale->lock =
			&(GetNamedLWLockTranche(PG_SLOTSYNC_NAME))[PG_SLOTSYNC_LWLOCK_STALE].lock;
	}
}

/* Forget what was published: nobody reviews any more. */
void
sync_stale_clear(void)
{
	LWLockAcquire(Stale->lock, LW_EXCLUSIVE);
	Stale->nentries = 0;
	LWLockRelease(Stale->lock);
}

/*
 * Is this slot a leftover: logical, complete, not made by sync, not the
 * anchor?  With the syncing session, its cached markers are used.
 */
static bool
is_leftover(SyncSession *session, const SlotCopy *slot)
{
	SlotMarker	marker;

	if (!slot->is_logical || slot->persistency != RS_PERSISTENT)
		return false;
	if (slot_sync_marker(session, NameStr(slot->name), &marker) ==
		SLOT_MARKER_PRESENT &&
		(marker.flags & (SLOT_MARKER_SYNCED | SLOT_MARKER_ANCHOR)) != 0)
		return false;
	return true;
}

/*
 * Drop the leftover of this name so that the primary's failover slot can
 * be synchronized under it, logging where it was.  The caller holds the
 * database lock.
 */
void
sync_replace_stale(const char *name)
{
	SlotCopy	slot;

	if (!slot_copy_named(name, &slot))
		return;
	ReplicationSlotDrop(name, true);
	ereport(LOG,
			(errmsg("dropped stale replication slot \"%s\" of database with OID %u to synchronize the primary's slot of that name",
					name, slot.database),
			 errdetail("It was not synchronized from the primary; it was at restart_lsn %X/%X, confirmed_flush_lsn %X/%X, catalog_xmin %u.",
					   LSN_FORMAT_ARGS(slot.restart_lsn),
					   LSN_FORMAT_ARGS(slot.confirmed_flush),
					   slot.catalog_xmin),
			 errhint("Set \"pg_slotsync.stale_slots\" to \"keep\" to keep such slots.")));
}

/* Log a leftover the first time a session sees it. */
static void
log_found(const SlotCopy *slot, bool listed, StaleAction action,
		  TimestampTz drop_at)
{
	char		hint[256];

	if (action == STALE_KEEP)
		snprintf(hint, sizeof(hint),
				 "Drop it with pg_drop_replication_slot() if nothing needs it; \"pg_slotsync.stale_slots\" is \"keep\".");
	else
		snprintf(hint, sizeof(hint),
				 "It will be dropped at %s (\"pg_slotsync.stale_slot_grace\").",
				 timestamptz_to_str(drop_at));
	ereport(LOG,
			(errmsg("found stale replication slot \"%s\" on the standby",
					NameStr(slot->name)),
			 errdetail("It was not synchronized from the primary%s; it holds WAL from %X/%X and, through hot_standby_feedback, catalog rows on the primary from transaction %u.",
					   listed ? ", which has a failover slot of that name" :
					   ", where it is not a failover slot",
					   LSN_FORMAT_ARGS(slot->restart_lsn),
					   slot->catalog_xmin),
			 errhint("%s", hint)));
}

/* Drop a leftover whose grace period is over, under its database's lock. */
static void
drop_leftover(const SlotCopy *slot, TimestampTz first_seen)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		sync_lock_database(slot->database, NULL);
		ReplicationSlotDrop(NameStr(slot->name), true);
		ereport(LOG,
				(errmsg("dropped stale replication slot \"%s\" of database with OID %u",
						NameStr(slot->name), slot->database),
				 errdetail("It was not synchronized from the primary, where it is not a failover slot, since %s; it was at restart_lsn %X/%X, confirmed_flush_lsn %X/%X, catalog_xmin %u.",
						   timestamptz_to_str(first_seen),
						   LSN_FORMAT_ARGS(slot->restart_lsn),
						   LSN_FORMAT_ARGS(slot->confirmed_flush),
						   slot->catalog_xmin)));
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);
		/* in use right now, say: the next review tries again */
		ereport(LOG,
				(errmsg("could not drop stale replication slot \"%s\": %s",
						NameStr(slot->name), edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
}

static StaleMemory *
remembered(SyncSession *session, const char *name, TimestampTz now,
		   bool *is_new)
{
	NameData	key;
	StaleMemory *m;
	bool		found;

	if (session->stale == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(NameData);
		ctl.entrysize = sizeof(StaleMemory);
		ctl.hcxt = session->session_cxt;
		session->stale = hash_create("pg_slotsync stale slots", 16, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	namestrcpy(&key, name);
	m = hash_search(session->stale, &key, HASH_ENTER, &found);
	*is_new = !found;
	if (!found)
		m->first_seen = now;
	return m;
}

/* Publish the entries for the view. */
static void
publish(const StaleEntry *entries, int n)
{
	LWLockAcquire(Stale->lock, LW_EXCLUSIVE);
	memcpy(Stale->entries, entries, sizeof(StaleEntry) * n);
	Stale->nentries = n;
	LWLockRelease(Stale->lock);
}

/*
 * Review the standby's leftovers after a cycle (see the header comment):
 * log new ones, drop those whose time has come, publish the rest.  "look":
 * the cycle looked at every slot.  The caller is in a transaction.
 */
void
sync_stale_review(SyncSession *session, bool look)
{
	bool		replace = pg_slotsync_stale_slot_policy == STALE_SLOTS_REPLACE;
	int			grace_ms = pg_slotsync_stale_slot_grace * 1000;
	TimestampTz now = GetCurrentTimestamp();
	SlotCopy   *slots;
	int			nslots;
	StaleEntry *published;
	int			npublished = 0;
	HASH_SEQ_STATUS seq;
	StaleMemory *m;

	if (!look && !session->stale_pending)
		return;

	slots = slot_copy_all_palloc(&nslots);
	published = palloc(sizeof(StaleEntry) * Max(nslots, 1));
	if (session->stale != NULL)
	{
		hash_seq_init(&seq, session->stale);
		while ((m = hash_seq_search(&seq)) != NULL)
			m->seen = false;
	}

	for (int i = 0; i < nslots && npublished < max_replication_slots; i++)
	{
		SlotCopy   *slot = &slots[i];
		bool		listed;
		bool		is_new;
		StaleAction action;
		TimestampTz drop_at;

		if (!is_leftover(session, slot))
			continue;
		listed = slot_sync_is_listed(session, NameStr(slot->name));
		m = remembered(session, NameStr(slot->name), now, &is_new);
		action = sync_stale_action(replace, listed,
								   TimestampDifferenceMilliseconds(m->first_seen, now),
								   grace_ms);
		drop_at = action == STALE_KEEP ? 0 :
			TimestampTzPlusMilliseconds(m->first_seen, grace_ms);
		if (is_new)
			log_found(slot, listed, action, drop_at);
		if (action == STALE_DROP)
		{
			drop_leftover(slot, m->first_seen);
			continue;			/* forgotten below if it is gone */
		}
		m->seen = true;
		published[npublished].name = slot->name;
		published[npublished].listed = listed;
		published[npublished].first_seen = m->first_seen;
		published[npublished].drop_at = drop_at;
		npublished++;
	}

	if (session->stale != NULL)
	{
		hash_seq_init(&seq, session->stale);
		while ((m = hash_seq_search(&seq)) != NULL)
			if (!m->seen && !slot_copy_named(NameStr(m->name), NULL))
				hash_search(session->stale, &m->name, HASH_REMOVE, NULL);
	}
	publish(published, npublished);
	session->stale_pending = npublished > 0 ||
		(session->stale != NULL && hash_get_num_entries(session->stale) > 0);
	pfree(published);
	pfree(slots);
}

/* What the syncing process published about "name"; false if nothing. */
static bool
published_entry(const StaleEntry *entries, int n, const char *name,
				StaleEntry *out)
{
	for (int i = 0; i < n; i++)
		if (strcmp(NameStr(entries[i].name), name) == 0)
		{
			*out = entries[i];
			return true;
		}
	return false;
}

/*
 * pg_slotsync.stale_slots(): the standby's leftovers, what they hold, and
 * what the syncing process will do with them.
 */
Datum
pg_slotsync_stale_slot_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SlotCopy   *slots;
	int			nslots;
	StaleEntry *entries;
	int			nentries;
	XLogRecPtr	replay = GetXLogReplayRecPtr(NULL);

	InitMaterializedSRF(fcinfo, 0);
	if (!RecoveryInProgress())
		return (Datum) 0;

	LWLockAcquire(Stale->lock, LW_SHARED);
	nentries = Stale->nentries;
	entries = palloc(sizeof(StaleEntry) * Max(nentries, 1));
	memcpy(entries, Stale->entries, sizeof(StaleEntry) * nentries);
	LWLockRelease(Stale->lock);

	slots = slot_copy_all_palloc(&nslots);
	for (int i = 0; i < nslots; i++)
	{
		SlotCopy   *slot = &slots[i];
		Datum		values[10];
		bool		nulls[10] = {0};
		StaleEntry	e;
		char	   *dbname;
		bool		known;

		if (!is_leftover(NULL, slot))
			continue;
		known = published_entry(entries, nentries, NameStr(slot->name), &e);
		dbname = get_database_name(slot->database);

		values[0] = NameGetDatum(&slot->name);
		nulls[1] = dbname == NULL;
		values[1] = dbname ? CStringGetTextDatum(dbname) : (Datum) 0;
		values[2] = NameGetDatum(&slot->plugin);
		values[3] = LSNGetDatum(slot->restart_lsn);
		values[4] = LSNGetDatum(slot->confirmed_flush);
		nulls[5] = !TransactionIdIsValid(slot->catalog_xmin);
		values[5] = TransactionIdGetDatum(slot->catalog_xmin);
		nulls[6] = XLogRecPtrIsInvalid(slot->restart_lsn);
		values[6] = lsn_distance(replay, slot->restart_lsn);
		nulls[7] = !known;
		values[7] = BoolGetDatum(known && e.listed);
		nulls[8] = !known;
		values[8] = TimestampTzGetDatum(known ? e.first_seen : 0);
		nulls[9] = !known || e.drop_at == 0;
		values[9] = TimestampTzGetDatum(known ? e.drop_at : 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
