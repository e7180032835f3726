/*-------------------------------------------------------------------------
 *
 * sync_cycle.c
 *		One synchronization pass over every failover slot of the primary,
 *		shared by the worker and pg_slotsync.sync_replication_slots().
 *
 * A cycle: one round trip to the primary (which may first wait for a
 * change, see primary_funcs.c), then, in one transaction on the standby:
 * drop local synced slots the primary no longer lists, keep the anchor
 * slot where it must be, and for each listed slot decide (sync_decide.c)
 * and act (sync_apply.c).  Each slot is handled in its own subtransaction:
 * whatever goes wrong with one slot (a same-name slot in the way, its
 * database missing, an error while copying) is recorded as that slot's
 * state and reason, and the cycle goes on with the others.  PostgreSQL 17
 * instead aborts the whole cycle, so one bad slot stops every other.
 *
 * Reasons are logged once per change of reason per slot, in core's words,
 * not once per cycle.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlogrecovery.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pg_slotsync.h"
#include "replication/slot.h"
#include "replication/walreceiver.h"
#include "slot_marker.h"
#include "slot_sync.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

static SlotMemory *
slot_memory(SyncSession *session, const char *name)
{
	SlotMemory *mem;
	bool		found;
	NameData	key;

	if (session->memory == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(NameData);
		ctl.entrysize = sizeof(SlotMemory);
		ctl.hcxt = TopMemoryContext;
		session->memory = hash_create("pg_slotsync slot memory", 64, &ctl,
									  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	namestrcpy(&key, name);
	mem = hash_search(session->memory, &key, HASH_ENTER, &found);
	if (!found)
	{
		memset(mem, 0, sizeof(*mem));
		mem->name = key;
	}
	return mem;
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

/*
 * The OID of a database by name, looked up once per cycle.
 */
typedef struct DatabaseOidCache
{
	int			n;
	NameData   *names;
	Oid		   *oids;
} DatabaseOidCache;

static Oid
database_oid(DatabaseOidCache *cache, const char *name)
{
	Oid			oid;

	for (int i = 0; i < cache->n; i++)
		if (strcmp(NameStr(cache->names[i]), name) == 0)
			return cache->oids[i];
	oid = get_database_oid(name, true);
	if (cache->n % 16 == 0)
	{
		cache->names = cache->n ? repalloc(cache->names, sizeof(NameData) * (cache->n + 16)) :
			palloc(sizeof(NameData) * 16);
		cache->oids = cache->n ? repalloc(cache->oids, sizeof(Oid) * (cache->n + 16)) :
			palloc(sizeof(Oid) * 16);
	}
	namestrcpy(&cache->names[cache->n], name);
	cache->oids[cache->n++] = oid;
	return oid;
}

/*
 * The common case under load: a ready copy already equal to the primary's
 * slot.  Recognized from shared memory and the cached marker alone, without
 * a subtransaction or a catalog lookup.
 */
static bool
unchanged_ready_copy(const RemoteSlot *remote, SlotMemory *mem)
{
	LocalSlot	local;

	if (remote->invalidated || !mem->had_copy || !mem->marker.valid)
		return false;
	sync_read_local(NameStr(remote->name), &local, &mem->marker);
	return local.exists && local.synced && local.ready && local.is_logical &&
		!local.invalidated &&
		local.restart_lsn == remote->restart_lsn &&
		local.confirmed_flush == remote->confirmed_flush &&
		local.catalog_xmin == remote->catalog_xmin &&
		local.two_phase == remote->two_phase &&
		local.two_phase_at == remote->two_phase_at;
}

static void
complain(SyncComplaint *c, int sqlerrcode, const char *hint,
		 const char *fmt,...)
			pg_attribute_printf(4, 5);

static void
complain(SyncComplaint *c, int sqlerrcode, const char *hint,
		 const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	vsnprintf(c->message, sizeof(c->message), fmt, args);
	va_end(args);
	strlcpy(c->hint, hint ? hint : "", sizeof(c->hint));
	c->sqlerrcode = sqlerrcode;
}

/*
 * The standby's own requirements, in core's order and words.
 */
bool
slot_sync_validate_local(SyncComplaint *c)
{
	const char *conninfo = slot_sync_conninfo();

	if (wal_level < WAL_LEVEL_LOGICAL)
	{
		complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
				 "Set \"wal_level\" to \"logical\" on the standby and restart it.",
				 "replication slot synchronization requires \"wal_level\" >= \"logical\"");
		return false;
	}
	if (PrimarySlotName == NULL || PrimarySlotName[0] == '\0')
	{
		complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
				 "Set \"primary_slot_name\" to the physical replication slot this standby uses on the primary.",
				 "replication slot synchronization requires \"primary_slot_name\" to be set");
		return false;
	}
	if (!hot_standby_feedback)
	{
		complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
				 "Enable \"hot_standby_feedback\": it keeps the catalog rows that synchronized slots need on the primary.",
				 "replication slot synchronization requires \"hot_standby_feedback\" to be enabled");
		return false;
	}
	if (conninfo == NULL || conninfo[0] == '\0')
	{
		complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
				 "Set \"primary_conninfo\", or \"pg_slotsync.primary_conninfo\".",
				 "replication slot synchronization requires \"primary_conninfo\" to be set");
		return false;
	}
	if (conninfo_dbname(conninfo) == NULL)
	{
		complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
				 "Add a dbname naming a database where pg_slotsync is installed to \"primary_conninfo\", or set \"pg_slotsync.primary_conninfo\".",
				 "replication slot synchronization requires \"dbname\" to be specified in \"%s\"",
				 (pg_slotsync_primary_conninfo && pg_slotsync_primary_conninfo[0]) ?
				 "pg_slotsync.primary_conninfo" : "primary_conninfo");
		return false;
	}
	return true;
}

bool
slot_sync_validate_primary(const PrimaryInfo *info, SyncComplaint *c)
{
	if (info->in_recovery)
	{
		complain(c, ERRCODE_FEATURE_NOT_SUPPORTED,
				 "Point \"primary_conninfo\" at the primary server; cascading standbys are not supported yet.",
				 "cannot synchronize replication slots from a standby server");
		return false;
	}
	if (!info->wal_level_logical)
	{
		complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
				 "Set \"wal_level\" to \"logical\" on the primary.",
				 "replication slot synchronization requires \"wal_level\" >= \"logical\" on the primary");
		return false;
	}
	if (!info->standby_slot_exists)
	{
		complain(c, ERRCODE_UNDEFINED_OBJECT,
				 "Check if \"primary_slot_name\" is configured correctly.",
				 "replication slot \"%s\" specified by \"primary_slot_name\" does not exist on primary server",
				 PrimarySlotName);
		return false;
	}
	if (!info->standby_slot_is_physical)
	{
		complain(c, ERRCODE_INVALID_PARAMETER_VALUE,
				 "Check if \"primary_slot_name\" is configured correctly.",
				 "replication slot \"%s\" specified by \"primary_slot_name\" is not a physical slot on primary server",
				 PrimarySlotName);
		return false;
	}
	return true;
}

/*
 * Turn a failed fetch into a complaint a DBA can act on.
 */
static void
complain_fetch_failed(SyncComplaint *c, const char *err)
{
	const char *conninfo = slot_sync_conninfo();
	char	   *dbname = conninfo_dbname(conninfo);

	/* undefined schema or function: the extension is missing there */
	if (strncmp(err, "3F000:", 6) == 0 || strncmp(err, "42883:", 6) == 0)
		complain(c, ERRCODE_UNDEFINED_OBJECT,
				 "Run CREATE EXTENSION pg_slotsync in that database on the primary.",
				 "pg_slotsync is not installed in database \"%s\" on the primary server",
				 dbname ? dbname : "");
	else if (strncmp(err, "42501:", 6) == 0)
		complain(c, ERRCODE_INSUFFICIENT_PRIVILEGE,
				 "The user in the connection string needs the REPLICATION attribute.",
				 "could not fetch failover slots from the primary server: %s",
				 err + 6);
	else
		complain(c, ERRCODE_CONNECTION_FAILURE, NULL,
				 "could not fetch failover slots from the primary server: %s",
				 (strlen(err) > 6 && err[5] == ':') ? err + 6 : err);
}

/*
 * Log why a slot is not ready, once per change of the kind of reason: the
 * words carry LSNs that move with every cycle, the kind does not.
 */
static void
log_reason_change(SlotMemory *mem, const char *name, const SyncDecision *d)
{
	if (mem->last_reason == d->reason_code)
		return;
	mem->last_reason = d->reason_code;
	if (d->reason_code == SYNC_REASON_NONE ||
		d->reason_code == SYNC_REASON_CREATING)
		return;

	if (d->reason_code == SYNC_REASON_SAME_NAME_SLOT)
		ereport(LOG,
				(errmsg("skipping synchronization of replication slot \"%s\"",
						name),
				 errdetail("A replication slot of the same name that was not synchronized from the primary exists on the standby."),
				 errhint("Drop or rename the standby's slot, or clear the failover flag of the primary's slot.")));
	else if (sync_reason_is_data_loss(d->reason_code))
		ereport(LOG,
				(errmsg("could not synchronize replication slot \"%s\"", name),
				 errdetail("Synchronization could lead to data loss, because %s.",
						   d->reason)));
	else
		ereport(LOG,
				(errmsg("could not synchronize replication slot \"%s\"", name),
				 errdetail("The reason is that %s.", d->reason)));
}

/*
 * Decide and act for one remote slot.  Runs inside a subtransaction.
 */
static void
sync_one_slot(SyncSession *session, const RemoteSlot *remote,
			  const PrimaryInfo *info, XLogRecPtr standby_flush,
			  SlotMemory *mem, DatabaseOidCache *dbcache,
			  SyncCycleResult *result)
{
	const char *name = NameStr(remote->name);
	SyncInputs	in;
	SyncDecision d;
	Oid			dboid;
	bool		synced_now = false;

	memset(&in, 0, sizeof(in));
	in.remote = remote;
	in.standby_flush = standby_flush;
	in.primary_keeps_catalog = TransactionIdIsValid(info->standby_slot_catalog_xmin);
	in.primary_catalog_xmin = info->standby_slot_catalog_xmin;

	dboid = database_oid(dbcache, NameStr(remote->database));
	in.database_exists = OidIsValid(dboid);
	/* keep DROP DATABASE replay from racing with us on this slot */
	if (in.database_exists)
		LockSharedObject(DatabaseRelationId, dboid, 0, AccessShareLock);

	for (int attempt = 0; attempt < 2; attempt++)
	{
		sync_read_local(name, &in.local, &mem->marker);
		if (mem->had_copy && !in.local.exists)
			ereport(LOG,
					(errmsg("replication slot \"%s\" was dropped on the standby; synchronizing it again",
							name)));
		mem->had_copy = in.local.exists && in.local.synced;
		in.protected_from = sync_protected_from();

		slot_sync_decide(&in, &d);

		if (d.action == SYNC_ACTION_CREATE || d.action == SYNC_ACTION_RECREATE)
		{
			if (d.action == SYNC_ACTION_RECREATE)
			{
				log_reason_change(mem, name, &d);
				sync_drop_slot(name, true);
			}
			sync_create_slot(remote, dboid);
			mem->had_copy = true;
			result->nchanged++;
			continue;			/* decide again on the new copy */
		}
		break;
	}

	if (d.action == SYNC_ACTION_UPDATE)
	{
		bool		need_snapshot;
		char	   *snapshot = NULL;
		Size		snapshot_len = 0;

		need_snapshot = (remote->restart_lsn != in.local.restart_lsn ||
						 d.becomes_ready) &&
			!sync_snapshot_exists(remote->restart_lsn) &&
			mem->fileless_lsn != remote->restart_lsn;
		if (need_snapshot)
		{
			StringInfoData err;
			XLogRecPtr	at;
			int			rc;

			initStringInfo(&err);
			rc = primary_fetch_snapshot(session->conn, name, &at, &snapshot,
										&snapshot_len, session->interrupted,
										&err);
			if (rc < 0)
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("could not fetch the serialized snapshot of replication slot \"%s\" from the primary server: %s",
								name, err.data)));
			if (at != remote->restart_lsn)
			{
				/* the slot moved on meanwhile; the next cycle sees where */
				result->pending = true;
				if (d.state == SYNC_STATE_READY)
					slot_sync_status_set(remote, SYNC_STATE_READY,
										 SYNC_REASON_NONE, "", false);
				else
					slot_sync_status_set(remote, SYNC_STATE_NOT_READY,
										 SYNC_REASON_SLOT_MOVED,
										 "the slot moved on the primary while it was being synchronized",
										 false);
				return;
			}
			if (rc == 0)
				mem->fileless_lsn = remote->restart_lsn;
		}

		if (sync_update_slot(remote, d.becomes_ready, snapshot, snapshot_len))
			result->nchanged++;
		synced_now = true;
		if (d.becomes_ready)
			ereport(LOG,
					(errmsg("newly created replication slot \"%s\" is sync-ready now",
							name)));
	}
	else if (d.action == SYNC_ACTION_INVALIDATE)
	{
		sync_invalidate_slot(name);
		result->nchanged++;
	}
	else if (d.state == SYNC_STATE_READY && d.reason[0] == '\0')
		synced_now = true;		/* already equal */

	if (!XLogRecPtrIsInvalid(d.needs_flush))
		result->flush_needed = Max(result->flush_needed, d.needs_flush);
	if (d.state == SYNC_STATE_READY)
		result->nready++;
	else if (d.state == SYNC_STATE_NOT_READY)
		result->pending = true;

	log_reason_change(mem, name, &d);
	slot_sync_status_set(remote, d.state, d.reason_code, d.reason,
						 synced_now);
}

/*
 * Drop synced slots the primary does not list any more (dropped there, or
 * no longer a failover slot).  On the first cycle every local slot is
 * looked at; later only those we have seen, since only sync creates synced
 * slots.
 */
static void
drop_unlisted_slots(SyncSession *session, RemoteSlot *slots, int nslots,
					bool first_cycle)
{
	if (first_cycle)
	{
		int			n;
		SlotIdentity *slots = list_slot_identities(&n);

		for (int i = 0; i < n; i++)
		{
			LocalSlot	local;

			if (!slots[i].is_logical)
				continue;
			/* only persistent slots with our marker count as synced */
			sync_read_local(NameStr(slots[i].name), &local, NULL);
			if (local.exists && local.synced)
				slot_memory(session, NameStr(slots[i].name))->had_copy = true;
		}
		pfree(slots);
	}

	/* which remembered slots did the primary list this time? */
	if (session->memory != NULL)
	{
		HASH_SEQ_STATUS seq;
		SlotMemory *m;

		hash_seq_init(&seq, session->memory);
		while ((m = hash_seq_search(&seq)) != NULL)
			m->listed = false;
	}
	for (int i = 0; i < nslots; i++)
		slot_memory(session, NameStr(slots[i].name))->listed = true;

	if (session->memory != NULL)
	{
		HASH_SEQ_STATUS seq;
		SlotMemory *m;

		hash_seq_init(&seq, session->memory);
		while ((m = hash_seq_search(&seq)) != NULL)
		{
			LocalSlot	local;

			if (m->listed)
				continue;
			if (m->had_copy)
			{
				sync_read_local(NameStr(m->name), &local, &m->marker);
				if (local.exists && local.synced)
				{
					if (OidIsValid(local.database))
						LockSharedObject(DatabaseRelationId, local.database, 0,
										 AccessShareLock);
					sync_drop_slot(NameStr(m->name), true);
				}
			}
			/* removing the current element is allowed during a scan */
			hash_search(session->memory, &m->name, HASH_REMOVE, NULL);
		}
	}
}

SyncCycleStatus
slot_sync_cycle(SyncSession *session, int wait_ms, SyncCycleResult *result,
				SyncComplaint *complaint)
{
	XLogRecPtr	replay_before;
	XLogRecPtr	standby_flush;
	XLogRecPtr	anchor_upto;
	XLogRecPtr	floor;
	PrimaryInfo info;
	RemoteSlot *slots;
	int			nslots;
	StringInfoData err;
	MemoryContext oldcxt;
	bool		first_cycle = !session->have_token;
	bool		own_xact;
	DatabaseOidCache dbcache;

	memset(result, 0, sizeof(*result));
	MemoryContextReset(session->cycle_cxt);
	oldcxt = MemoryContextSwitchTo(session->cycle_cxt);

	/* read before asking: slots created after this are above it */
	replay_before = GetXLogReplayRecPtr(NULL);

	initStringInfo(&err);
	if (!primary_fetch(session->conn, PrimarySlotName, session->have_token,
					   session->token, wait_ms, &info, &slots, &nslots,
					   session->interrupted, &err))
	{
		MemoryContextSwitchTo(oldcxt);
		if (strcmp(err.data, "interrupted") == 0)
			return SYNC_CYCLE_INTERRUPTED;
		complain_fetch_failed(complaint, err.data);
		return SYNC_CYCLE_FAILED;
	}
	if (!slot_sync_validate_primary(&info, complaint))
	{
		MemoryContextSwitchTo(oldcxt);
		return SYNC_CYCLE_FAILED;
	}
	session->token = info.token;
	session->have_token = true;
	result->nremote = nslots;

	standby_flush = Max(GetWalRcvFlushRecPtr(NULL, NULL),
						GetXLogReplayRecPtr(NULL));

	/* the manual function calls us inside its own transaction */
	own_xact = !IsTransactionState();
	if (own_xact)
		StartTransactionCommand();
	slot_sync_status_begin_cycle();

	drop_unlisted_slots(session, slots, nslots, first_cycle);

	/* the anchor may move up to the oldest remote slot it still covers */
	floor = sync_protected_from();
	anchor_upto = replay_before;
	for (int i = 0; i < nslots; i++)
	{
		XLogRecPtr	r = slots[i].restart_lsn;

		if (!XLogRecPtrIsInvalid(r) && !slots[i].invalidated &&
			(XLogRecPtrIsInvalid(floor) || r >= floor) && r < anchor_upto)
			anchor_upto = r;
	}
	sync_anchor_ensure(anchor_upto);

	memset(&dbcache, 0, sizeof(dbcache));
	for (int i = 0; i < nslots; i++)
	{
		RemoteSlot *remote = &slots[i];
		SlotMemory *mem = slot_memory(session, NameStr(remote->name));
		MemoryContext slotcxt = CurrentMemoryContext;
		ResourceOwner slotowner = CurrentResourceOwner;

		if (unchanged_ready_copy(remote, mem))
		{
			if (mem->last_reason != SYNC_REASON_NONE)
				mem->last_reason = SYNC_REASON_NONE;
			result->nready++;
			slot_sync_status_set(remote, SYNC_STATE_READY, SYNC_REASON_NONE,
								 "", true);
			continue;
		}

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(slotcxt);
		PG_TRY();
		{
			sync_one_slot(session, remote, &info, standby_flush, mem,
						  &dbcache, result);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(slotcxt);
			CurrentResourceOwner = slotowner;
		}
		PG_CATCH();
		{
			ErrorData  *edata;
			SyncDecision d;

			MemoryContextSwitchTo(slotcxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(slotcxt);
			CurrentResourceOwner = slotowner;
			/* an ephemeral slot half-created is dropped by releasing it */
			if (MyReplicationSlot != NULL)
				ReplicationSlotRelease();

			/* a cancel is for the caller, not a slot's trouble */
			if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
				edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
				ReThrowError(edata);

			memset(&d, 0, sizeof(d));
			d.state = SYNC_STATE_ERROR;
			d.action = SYNC_ACTION_NONE;
			d.reason_code = SYNC_REASON_ERROR;
			strlcpy(d.reason, edata->message, sizeof(d.reason));
			if (mem->last_reason != SYNC_REASON_ERROR)
				ereport(LOG,
						(errmsg("could not synchronize replication slot \"%s\": %s",
								NameStr(remote->name), edata->message)));
			mem->last_reason = SYNC_REASON_ERROR;
			slot_sync_status_set(remote, SYNC_STATE_ERROR, SYNC_REASON_ERROR,
								 edata->message, false);
			result->pending = true;
			FreeErrorData(edata);
		}
		PG_END_TRY();
	}

	slot_sync_status_end_cycle();
	if (own_xact)
		CommitTransactionCommand();
	MemoryContextSwitchTo(oldcxt);
	return SYNC_CYCLE_OK;
}
