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

/* Bits of SlotMarker.flags */
#define SLOT_MARKER_FAILOVER	0x0001	/* copy this slot to standbys */
#define SLOT_MARKER_SYNCED		0x0002	/* this slot was created by sync */
#define SLOT_MARKER_READY		0x0004	/* ... and is sync-ready */
#define SLOT_MARKER_ANCHOR		0x0008	/* the sync worker's anchor slot */

typedef struct SlotMarker
{
	uint32		flags;
} SlotMarker;

/* What a caller learned about a slot while it could not vanish. */
typedef struct SlotIdentity
{
	NameData	name;
	bool		is_logical;
	ReplicationSlotPersistency persistency;
} SlotIdentity;

extern void write_file_durably(const char *path, const char *tmppath,
							   const void *data, Size len);
extern SlotIdentity *list_slot_identities(int *count);
extern bool slot_marker_read(const char *slot_name, SlotMarker *marker);
extern void slot_marker_write_owned(const char *slot_name,
									const SlotMarker *marker);
extern bool slot_marker_update_named(const char *slot_name,
									 uint32 set_flags, uint32 clear_flags,
									 bool (*check) (const SlotIdentity *ident,
													const SlotMarker *current,
													void *arg),
									 void *arg);

#endif							/* SLOT_MARKER_H */
