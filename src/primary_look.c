/*-------------------------------------------------------------------------
 *
 * primary_look.c
 *		What a standby's long-poll session on the primary saw of the
 *		failover slots, what it reported, and what differs since.
 *
 * The long-poll (primary_watch.c) asks "what differs from what this
 * session last reported?" every time a failover slot may have moved.  The
 * answer is kept per slot (WatchedSlot, in this backend's memory, keyed by
 * name): the state last sent, the state seen now, and whether the two
 * differ.  The slots that differ, or that are gone after being reported,
 * are "pending" and on a list, so that neither the question nor the report
 * that follows walks every slot.
 *
 * Two ways to look:
 *
 *	- at every slot: one pass over the server's slot array; done for the
 *	  first look of a session, for a whole list, when a move could not be
 *	  attributed to a slot (a slot created, copied or dropped, the failover
 *	  flag changed), and at least every WATCH_SAFETY_POLL_MS for the paths
 *	  that do not say what moved (failover_slot_moves.h lists them:
 *	  invalidation by a checkpoint, DROP DATABASE);
 *	- at the slots that moved: failover_slot_moves.c keeps a move counter
 *	  per entry of the slot array, and this session remembers the value it
 *	  last read for each; only the entries whose counter changed are
 *	  copied and compared.  Reading a few thousand counters costs a few
 *	  microseconds; copying, hashing and comparing every slot cost a
 *	  millisecond or more at 5000 slots, at every move, and was most of the
 *	  primary's cost while every slot moved.
 *
 * The counters are read before the slots they count: a move that lands
 * after its counter was read bumps the shared counter after the waiting
 * call read that too, so the call looks again (failover_slot_moves.c).
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlogrecovery.h"
#include "common/hashfn.h"
#include "failover_slot_moves.h"
#include "pg_slotsync.h"
#include "primary_look.h"
#include "replication/slot.h"
#include "slot_copy.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* This backend's session with a standby's worker. */
static HTAB *watched = NULL;
static dlist_head pending = DLIST_STATIC_INIT(pending);
static int	npending = 0;

/* What the latest looks read. */
static uint32 *seen_slot_moves = NULL;	/* per entry of the slot array */
static uint64 seen_unattributed = 0;
static TimestampTz last_full_look = 0;
static NameData looked_for_standby;
static StandbySlotSeen standby_seen;

static void
watched_init(void)
{
	HASHCTL		ctl;

	if (watched != NULL)
		return;
	ctl.keysize = sizeof(NameData);
	ctl.entrysize = sizeof(WatchedSlot);
	ctl.hcxt = TopMemoryContext;
	watched = hash_create("pg_slotsync watched slots", 64, &ctl,
						  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	seen_slot_moves = MemoryContextAllocZero(TopMemoryContext,
											 sizeof(uint32) *
											 Max(max_replication_slots, 1));
}

static bool
watch_state_equal(const WatchState *a, const WatchState *b)
{
	return strcmp(NameStr(a->plugin), NameStr(b->plugin)) == 0 &&
		a->database == b->database && a->two_phase == b->two_phase &&
		a->two_phase_at == b->two_phase_at &&
		a->restart_lsn == b->restart_lsn &&
		a->confirmed_flush == b->confirmed_flush &&
		a->catalog_xmin == b->catalog_xmin &&
		a->invalidated == b->invalidated &&
		a->incarnation == b->incarnation;
}

static void
set_pending(WatchedSlot *w, bool is_pending)
{
	if (is_pending && !w->pending)
	{
		dlist_push_tail(&pending, &w->pending_node);
		npending++;
	}
	else if (!is_pending && w->pending)
	{
		dlist_delete(&w->pending_node);
		npending--;
	}
	w->pending = is_pending;
}

/* The slot is not (or no longer) a failover slot we report. */
static void
not_present(WatchedSlot *w)
{
	w->present = false;
	w->changed = false;
	set_pending(w, w->reported);
}

/* Look at one slot of the server's slot array. */
static void
look_at_one(const SlotCopy *s, const char *standby_slot, bool in_recovery)
{
	const char *name = NameStr(s->name);
	WatchedSlot *w;
	bool		found;

	if (standby_slot != NULL && strcmp(name, standby_slot) == 0)
	{
		standby_seen.found = true;
		standby_seen.physical = !s->is_logical;
		standby_seen.catalog_xmin = s->catalog_xmin;
	}
	if (!s->is_logical || s->persistency != RS_PERSISTENT)
		return;

	w = hash_search(watched, &s->name, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) w) + sizeof(NameData), 0,
			   sizeof(WatchedSlot) - sizeof(NameData));
		w->marker.valid = false;
	}
	if (slot_marker_read_cached(name, &w->marker) == SLOT_MARKER_CORRUPT)
	{
		/* once per session and slot: this runs a few times a second */
		if (!w->corrupt_reported)
			slot_marker_report_corrupt(name, WARNING);
		w->corrupt_reported = true;
		not_present(w);
		return;
	}
	w->corrupt_reported = false;
	if (!slot_counts_as_failover(name, true, s->persistency,
								 w->marker.marker.flags, in_recovery))
	{
		not_present(w);
		return;
	}

	w->present = true;
	w->now.plugin = s->plugin;
	w->now.database = s->database;
	w->now.two_phase = s->two_phase;
	w->now.two_phase_at = s->two_phase_at;
	w->now.restart_lsn = s->restart_lsn;
	w->now.confirmed_flush = s->confirmed_flush;
	w->now.catalog_xmin = s->catalog_xmin;
	w->now.invalidated = slot_copy_is_invalidated(s);
	w->now.incarnation = w->marker.marker.incarnation;
	w->changed = !w->reported || !watch_state_equal(&w->now, &w->sent);
	set_pending(w, w->changed);
}

static void
look_at_every_slot(const char *standby_slot)
{
	HASH_SEQ_STATUS seq;
	WatchedSlot *w;
	SlotCopy   *slots;
	int			nslots;
	bool		in_recovery = RecoveryInProgress();

	/* the counters first: a move after this is seen by the next look */
	seen_unattributed = failover_slot_moves_unattributed();
	for (int i = 0; i < max_replication_slots; i++)
		seen_slot_moves[i] = failover_slot_moves_of(i);
	pg_memory_barrier();

	slots = slot_copy_all_palloc(&nslots);
	memset(&standby_seen, 0, sizeof(standby_seen));
	hash_seq_init(&seq, watched);
	while ((w = hash_seq_search(&seq)) != NULL)
		w->present = false;
	for (int i = 0; i < nslots; i++)
		look_at_one(&slots[i], standby_slot, in_recovery);
	hash_seq_init(&seq, watched);
	while ((w = hash_seq_search(&seq)) != NULL)
		if (!w->present)
			not_present(w);
	pfree(slots);

	last_full_look = GetCurrentTimestamp();
	namestrcpy(&looked_for_standby, standby_slot ? standby_slot : "");
}

/*
 * Look at the entries of the slot array whose move counter changed; false
 * if one of them is no longer in use (a slot dropped: look at every slot).
 */
static bool
look_at_moved_slots(const char *standby_slot)
{
	bool		in_recovery = RecoveryInProgress();

	for (int i = 0; i < max_replication_slots; i++)
	{
		uint32		moves = failover_slot_moves_of(i);
		SlotCopy	copy;

		if (moves == seen_slot_moves[i])
			continue;
		seen_slot_moves[i] = moves;
		pg_memory_barrier();
		if (!slot_copy_at(i, &copy))
			return false;
		look_at_one(&copy, standby_slot, in_recovery);
	}
	return true;
}

/* How long until a look must be at every slot again. */
long
watch_ms_until_full_look(void)
{
	long		since;

	if (last_full_look == 0)
		return 0;
	since = TimestampDifferenceMilliseconds(last_full_look,
											GetCurrentTimestamp());
	return Max(WATCH_SAFETY_POLL_MS - since, 0);
}

/*
 * Look at the failover slots (at every one if "every_slot", else as the
 * header comment says) and at the standby's physical slot "standby_slot"
 * (may be NULL); returns how many failover slots differ from what this
 * session reported, or are gone since.
 */
int
watch_look(const char *standby_slot, bool every_slot,
		   StandbySlotSeen *standby)
{
	watched_init();

	/*
	 * The same test as the waiting call's timeout: were they to disagree by
	 * a rounding, the call would neither sleep nor look at every slot.
	 */
	if (!every_slot && watch_ms_until_full_look() > 0 &&
		failover_slot_moves_unattributed() == seen_unattributed &&
		strcmp(NameStr(looked_for_standby),
			   standby_slot ? standby_slot : "") == 0)
		every_slot = !look_at_moved_slots(standby_slot);
	else
		every_slot = true;
	if (every_slot)
		look_at_every_slot(standby_slot);
	*standby = standby_seen;
	return npending;
}

/*
 * Hand out what differs (every present slot if "all"), through "emit",
 * and take it as reported.  Entries of slots that are gone are forgotten.
 */
void
watch_report(bool all, WatchEmit emit, void *arg)
{
	dlist_mutable_iter iter;
	HASH_SEQ_STATUS seq;
	WatchedSlot *w;

	watched_init();
	if (all)
	{
		hash_seq_init(&seq, watched);
		while ((w = hash_seq_search(&seq)) != NULL)
		{
			set_pending(w, false);
			if (!w->present)
			{
				hash_search(watched, &w->name, HASH_REMOVE, NULL);
				continue;
			}
			emit(w, false, arg);
			w->sent = w->now;
			w->reported = true;
			w->changed = false;
		}
		return;
	}

	dlist_foreach_modify(iter, &pending)
	{
		w = dlist_container(WatchedSlot, pending_node, iter.cur);
		set_pending(w, false);
		if (w->present && w->changed)
		{
			emit(w, false, arg);
			w->sent = w->now;
			w->reported = true;
			w->changed = false;
		}
		else if (!w->present && w->reported)
			emit(w, true, arg);
		if (!w->present)
			hash_search(watched, &w->name, HASH_REMOVE, NULL);
	}
}

/*
 * Version 1.0's change token: every present failover slot's state, and
 * the standby's physical slot's catalog_xmin, folded into 64 bits.
 */
uint64
watch_state_hash(TransactionId standby_xmin)
{
	HASH_SEQ_STATUS seq;
	WatchedSlot *w;
	uint64		h = UINT64CONST(0x9E3779B97F4A7C15);

	watched_init();
	h = hash_combine64(h, standby_xmin);
	hash_seq_init(&seq, watched);
	while ((w = hash_seq_search(&seq)) != NULL)
	{
		if (!w->present)
			continue;
		/* order-independent: the hash table's order is not stable */
		h ^= hash_bytes_extended((const unsigned char *) &w->now,
								 sizeof(WatchState),
								 hash_bytes_extended((const unsigned char *) NameStr(w->name),
													 strlen(NameStr(w->name)), 0));
	}
	return h;
}
