/*-------------------------------------------------------------------------
 *
 * standby_gate_read.c
 *		The gated WAL page read: a consumer of a failover slot decodes no
 *		WAL the standbys listed in pg_slotsync.synchronized_standby_slots
 *		have not confirmed.
 *
 * Logical decoding reads WAL through its reader's page_read callback; the
 * attaching code (standby_gate_walsender.c, standby_gate_sql.c) replaces
 * that callback with one of ours, which calls the original one.  Ours:
 *
 *	1. if the gate does not apply (empty setting, not a failover slot, in
 *	   recovery), reads the page as the original does, and is done;
 *	2. otherwise computes the position the standbys must have confirmed
 *	   before the reader can use the page ("target", below), waits for it
 *	   (standby_gate_wait.c; a walsender may instead give up the attempt and
 *	   return -1, to run its own loop and come back), and
 *	3. reads the page and returns no more of it than the standbys have
 *	   confirmed.  The reader needs a record's every byte before it decodes
 *	   it, so no change, commit or message past the confirmed position is
 *	   ever decoded.
 *
 * Whether our slot is a failover slot is checked on every page read, with
 * its marker flags cached until the shared marker generation moves: setting
 * or clearing the flag, or changing the patterns or the list, takes effect
 * on a consumer that is already reading.
 *
 * The target.  The reader asks for reqLen bytes of a page, but it can only
 * use an answer of more than a short page header: PostgreSQL 15's
 * ReadPageInternal() treats a read of at most SizeOfXLogShortPHD bytes as a
 * failure and asks again for the same bytes.  A listed slot sitting exactly
 * at a page start plus that header (what a physical slot created with
 * immediately_reserve gets after a checkpoint that began at a page start),
 * with the consumer's next record on that page, would otherwise make us
 * answer "24 bytes", the reader fail and ask again, and us answer the same,
 * for ever: a loop that neither sleeps nor sees postmaster death, and whose
 * cached confirmed position never needs refreshing, so the slot advancing
 * never releases it.  So the target is at least one byte past the short
 * header.  And should the reader throw away a shortened answer for any other
 * reason, we never give the same answer twice: a request for no more than
 * the bytes we last returned from that page, for the same reader, asks the
 * standbys for one byte more than that answer, which means waiting (asleep)
 * rather than repeating it.
 *
 * Readers we do not know: a decoding context of a failover slot whose
 * reader is not one we can gate gets gate_refusing_page_read(), which raises
 * an ERROR from the reader (a safe place) whenever the gate applies.
 *
 * For failover_slot_moves.c, a SQL function's gated reader notes on its
 * first page read which failover slot is decoded and where it stands, so
 * that the end of the transaction can tell watchers if it moved.
 *
 * Cost: when the standbys keep up, a page read costs the failover check
 * (an atomic read, the cached flags, the name patterns) and a comparison
 * with the cached confirmed position (standby_gate_quorum.c): once per page,
 * nothing per change.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogutils.h"
#include "failover_slot_moves.h"
#include "pg_slotsync.h"
#include "slot_marker.h"
#include "standby_gate.h"
#include "standby_gate_internal.h"
#include "utils/builtins.h"

/*
 * The fewest bytes of a page the WAL reader accepts (see the header
 * comment).
 */
#define GATE_MIN_PAGE_READ		(SizeOfXLogShortPHD + 1)

/* The original page_read of the walsender's reader, and of a refused one. */
XLogPageReadCB gate_walsender_reader_orig = NULL;
XLogPageReadCB gate_refused_reader_orig = NULL;

/* cache: the marker flags of the slot we hold */
static uint64 marker_cache_generation = PG_UINT64_MAX;
static NameData marker_cache_slot;
static uint32 marker_cache_flags = 0;

/* the reader whose failover slot we noted for failover_slot_moves.c */
static XLogReaderState *noted_reader = NULL;

/* the last answer we shortened: reader, page, bytes returned */
static XLogReaderState *shortened_reader = NULL;
static XLogRecPtr shortened_page = InvalidXLogRecPtr;
static int	shortened_count = 0;

static bool
marker_cache_fresh(ReplicationSlot *slot)
{
	return marker_cache_generation ==
		pg_atomic_read_u64(&SlotSyncState->marker_generation) &&
		strcmp(NameStr(marker_cache_slot), NameStr(slot->data.name)) == 0;
}

/*
 * Is the slot we hold a failover slot?  May read its marker file.
 */
bool
gate_slot_is_failover(void)
{
	ReplicationSlot *slot = MyReplicationSlot;

	if (!marker_cache_fresh(slot))
	{
		uint64		generation;
		SlotMarker	marker;

		/* read the generation first: a change after it makes us read again */
		generation = pg_atomic_read_u64(&SlotSyncState->marker_generation);
		marker_cache_generation = PG_UINT64_MAX;
		slot_marker_read(NameStr(slot->data.name), &marker);
		marker_cache_flags = marker.flags;
		namestrcpy(&marker_cache_slot, NameStr(slot->data.name));
		marker_cache_generation = generation;
	}

	return slot_counts_as_failover(NameStr(slot->data.name),
								   SlotIsLogical(slot),
								   slot->data.persistency,
								   marker_cache_flags, false);
}

/*
 * Must the consumer of our slot wait for the listed standbys?
 */
bool
gate_applies(void)
{
	if (standby_slots_config == NULL || MyReplicationSlot == NULL)
		return false;
	if (RecoveryInProgress())
		return false;
	return gate_slot_is_failover();
}

/*
 * Do we know, without reading a file (so without any chance of an error),
 * that the slot we hold is not a failover slot?  Used where an error is not
 * allowed; "do not know" makes the caller treat the slot as a failover slot.
 */
bool
gate_slot_known_not_failover(void)
{
	ReplicationSlot *slot = MyReplicationSlot;

	if (slot == NULL)
		return true;
	if (slot_counts_as_failover(NameStr(slot->data.name), SlotIsLogical(slot),
								slot->data.persistency, 0, false))
		return false;			/* by name pattern */
	return marker_cache_fresh(slot) &&
		!slot_counts_as_failover(NameStr(slot->data.name), SlotIsLogical(slot),
								 slot->data.persistency, marker_cache_flags,
								 false);
}

/*
 * The position the standbys must have confirmed before we hand out the
 * page at targetPagePtr for a request of reqLen bytes.
 */
static XLogRecPtr
read_target(XLogReaderState *state, XLogRecPtr targetPagePtr, int reqLen)
{
	XLogRecPtr	target = targetPagePtr + Max(reqLen, GATE_MIN_PAGE_READ);

	/* the reader threw our last, shortened answer away: never repeat it */
	if (state == shortened_reader && targetPagePtr == shortened_page &&
		target <= targetPagePtr + shortened_count)
		target = targetPagePtr + shortened_count + 1;
	return target;
}

/*
 * Return no more of the page than the standbys have confirmed; callers had
 * them confirm "target" first.  After a wait ("waited"), the gate may no
 * longer apply (the wait ended for that reason): then the whole page is
 * the answer.  Should the confirmed position have fallen behind "target"
 * meanwhile (a new setting), fail the read; the reader asks again, and
 * waits then.
 */
static int
cap_to_confirmed(XLogReaderState *state, int count, XLogRecPtr targetPagePtr,
				 XLogRecPtr target, bool waited)
{
	XLogRecPtr	upto;

	shortened_reader = NULL;
	if (count <= 0 || (waited && !gate_applies()))
		return count;

	upto = standby_slots_confirmed_upto();
	if (upto < target || targetPagePtr + count < target)
		return -1;
	if (targetPagePtr + count > upto)
	{
		count = (int) (upto - targetPagePtr);
		shortened_reader = state;
		shortened_page = targetPagePtr;
		shortened_count = count;
	}
	return count;
}

/*
 * Read the page with "orig", handing out only what the standbys have
 * confirmed; wait while they have not confirmed what the reader needs.
 */
static int
gated_page_read(XLogPageReadCB orig, bool walsender,
				XLogReaderState *state, XLogRecPtr targetPagePtr, int reqLen,
				XLogRecPtr targetRecPtr, char *cur_page)
{
	XLogRecPtr	target;
	int			count;
	bool		waited = false;

	if (!gate_applies())
	{
		/*
		 * Reading may wait for new WAL, for as long as nothing happens; if
		 * meanwhile the slot became a failover slot or the list was set,
		 * what was read is gated like the rest.
		 */
		count = orig(state, targetPagePtr, reqLen, targetRecPtr, cur_page);
		if (count < 0 || !gate_applies())
			return count;
	}

	target = read_target(state, targetPagePtr, reqLen);
	if (standby_slots_confirmed_upto() < target)
	{
		/*
		 * WAL that is not even flushed here cannot be on a standby: let the
		 * server wait for it its own way first (a walsender's way handles
		 * its client and shutdown), and warn about standbys only then.
		 */
		if (target > GetFlushRecPtr(NULL))
		{
			count = orig(state, targetPagePtr, reqLen, targetRecPtr, cur_page);
			if (count < 0)
				return count;
		}

		if (walsender)
		{
			if (!gate_walsender_wait(target))
				return -1;
		}
		else
			gate_backend_wait(target);
		waited = true;
	}

	count = orig(state, targetPagePtr, reqLen, targetRecPtr, cur_page);
	return cap_to_confirmed(state, count, targetPagePtr, target, waited);
}

int
gate_walsender_page_read(XLogReaderState *state, XLogRecPtr targetPagePtr,
						 int reqLen, XLogRecPtr targetRecPtr, char *cur_page)
{
	int			count;

	gate_walsender_reading(true);
	count = gated_page_read(gate_walsender_reader_orig, true, state,
							targetPagePtr, reqLen, targetRecPtr, cur_page);
	gate_walsender_reading(false);
	return count;
}

int
gate_backend_page_read(XLogReaderState *state, XLogRecPtr targetPagePtr,
					   int reqLen, XLogRecPtr targetRecPtr, char *cur_page)
{
	/* once per decoding: remember where a failover slot was, for watchers */
	if (state != noted_reader)
	{
		noted_reader = state;
		if (gate_slot_is_failover())
			failover_slot_moves_note_decoding(MyReplicationSlot);
	}
	return gated_page_read(read_local_xlog_page, false, state,
						   targetPagePtr, reqLen, targetRecPtr, cur_page);
}

/*
 * The reader of a decoding context whose original reader we do not know:
 * while the gate applies, refuse to read.
 */
int
gate_refusing_page_read(XLogReaderState *state, XLogRecPtr targetPagePtr,
						int reqLen, XLogRecPtr targetRecPtr, char *cur_page)
{
	if (gate_applies())
	{
		gate_count_refused();
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot decode failover replication slot \"%s\" without waiting for the standbys",
						NameStr(MyReplicationSlot->data.name)),
				 errdetail("The decoding reads WAL through a function pg_slotsync does not know, so it cannot hold the changes back until the standbys listed in parameter \"%s\" confirm them.",
						   STANDBY_SLOTS_GUC_NAME)));
	}
	return gate_refused_reader_orig(state, targetPagePtr, reqLen,
									targetRecPtr, cur_page);
}

/*
 * A reader was just gated: forget what we knew about the previous one (a
 * new reader may be allocated at the same address).
 */
void
gate_reader_attached(void)
{
	noted_reader = NULL;
	shortened_reader = NULL;
}

/*
 * Is this page_read one of ours (the reader is gated or refused)?
 */
bool
gate_reader_is_ours(XLogPageReadCB page_read)
{
	return page_read == gate_walsender_page_read ||
		page_read == gate_backend_page_read ||
		page_read == gate_refusing_page_read;
}
