/*-------------------------------------------------------------------------
 *
 * primary_look.h
 *		What a primary-side session (a standby's long-poll) last saw of the
 *		failover slots and last reported; see primary_look.c.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef PRIMARY_LOOK_H
#define PRIMARY_LOOK_H

#include "access/xlogdefs.h"
#include "lib/ilist.h"
#include "slot_marker.h"

/*
 * How often a look is at every slot however little moved, and how often a
 * waiting call looks without being woken.
 */
#define WATCH_SAFETY_POLL_MS	500

/* A failover slot as a standby copies it. */
typedef struct WatchState
{
	NameData	plugin;
	Oid			database;
	bool		two_phase;
	XLogRecPtr	two_phase_at;
	XLogRecPtr	restart_lsn;
	XLogRecPtr	confirmed_flush;
	TransactionId catalog_xmin;
	bool		invalidated;
	uint64		incarnation;
} WatchState;

/* One failover slot as this session last saw and reported it. */
typedef struct WatchedSlot
{
	NameData	name;			/* hash key */
	bool		reported;		/* in the last answer's state */
	bool		present;		/* a failover slot at the latest look */
	bool		changed;		/* ... and different from what was sent */
	bool		pending;		/* changed, or gone after being reported */
	bool		corrupt_reported;	/* its corrupt marker was logged */
	dlist_node	pending_node;	/* in the pending list while pending */
	WatchState	sent;
	WatchState	now;
	MarkerCacheEntry marker;
} WatchedSlot;

/* The standby's own physical slot, as the latest look saw it. */
typedef struct StandbySlotSeen
{
	bool		found;
	bool		physical;
	TransactionId catalog_xmin;
} StandbySlotSeen;

/* Look; returns how many slots differ from what was reported (pending). */
extern int	watch_look(const char *standby_slot, bool every_slot,
					   StandbySlotSeen *standby);

extern long watch_ms_until_full_look(void);

/* Hand out the differences (all present slots if "all"), as reported. */
typedef void (*WatchEmit) (WatchedSlot *w, bool gone, void *arg);
extern void watch_report(bool all, WatchEmit emit, void *arg);

/* Version 1.0's token: every present slot's state, folded. */
extern uint64 watch_state_hash(TransactionId standby_xmin);

#endif							/* PRIMARY_LOOK_H */
