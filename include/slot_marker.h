/*-------------------------------------------------------------------------
 *
 * slot_marker.h
 *		pg_slotsync's own per-slot state, kept in a file inside the slot's
 *		directory so that it lives and dies with the slot.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef SLOT_MARKER_H
#define SLOT_MARKER_H

#include "replication/slot.h"
#include "slot_copy.h"

/* Bits of SlotMarker.flags */
#define SLOT_MARKER_FAILOVER	0x0001	/* copy this slot to standbys */
#define SLOT_MARKER_SYNCED		0x0002	/* this slot was created by sync */
#define SLOT_MARKER_READY		0x0004	/* ... and is sync-ready */
#define SLOT_MARKER_ANCHOR		0x0008	/* the sync worker's anchor slot */
#define SLOT_MARKER_HISTORY_PENDING 0x0010	/* a copy whose WAL or mapping
											 * files are not all fetched */

typedef struct SlotMarker
{
	uint32		flags;

	/*
	 * Which incarnation of the slot this is: a random non-zero value given
	 * to a slot on the primary when it first becomes a failover slot, and
	 * carried by its synced copies; 0 when none was given yet.  A slot
	 * dropped and created again under the same name gets a new one.
	 */
	uint64		incarnation;
} SlotMarker;

typedef enum SlotMarkerStatus
{
	SLOT_MARKER_ABSENT,			/* no marker: all flags clear */
	SLOT_MARKER_PRESENT,
	SLOT_MARKER_CORRUPT			/* a file we cannot trust: flags clear */
} SlotMarkerStatus;

/* A process's copy of one slot's marker; see slot_marker_read_cached(). */
typedef struct MarkerCacheEntry
{
	bool		valid;
	uint64		generation;		/* SlotSyncState->marker_generation then */
	SlotMarkerStatus status;
	SlotMarker	marker;
} MarkerCacheEntry;

/* What slot_marker_update_named() shows its check callback. */
typedef bool (*SlotMarkerCheck) (const SlotCopy *slot,
								 const SlotMarker *current,
								 SlotMarkerStatus status,
								 void *arg);

extern void write_file_durably(const char *path, const char *tmppath,
							   const void *data, Size len);
extern SlotMarkerStatus slot_marker_examine(const char *slot_name,
											SlotMarker *marker);
extern bool slot_marker_read(const char *slot_name, SlotMarker *marker);
extern SlotMarkerStatus slot_marker_read_cached(const char *slot_name,
												MarkerCacheEntry *cache);
extern void slot_marker_report_corrupt(const char *slot_name, int elevel);
extern uint64 slot_marker_new_incarnation(void);
extern void slot_marker_write_owned(const char *slot_name,
									const SlotMarker *marker);
extern uint64 slot_marker_ensure_incarnation(const char *slot_name);
extern bool slot_marker_update_named(const char *slot_name,
									 uint32 set_flags, uint32 clear_flags,
									 bool ensure_incarnation,
									 SlotMarkerCheck check, void *arg);

#endif							/* SLOT_MARKER_H */
