/*-------------------------------------------------------------------------
 *
 * slot_copy.h
 *		A consistent copy of the server's replication slot array.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef SLOT_COPY_H
#define SLOT_COPY_H

#include "access/xlogdefs.h"
#include "replication/slot.h"

/* One slot's fields, taken under its spinlock. */
typedef struct SlotCopy
{
	NameData	name;
	NameData	plugin;
	Oid			database;
	bool		is_logical;
	ReplicationSlotPersistency persistency;
	pid_t		active_pid;
	bool		two_phase;
	XLogRecPtr	two_phase_at;
	XLogRecPtr	restart_lsn;
	XLogRecPtr	confirmed_flush;
	XLogRecPtr	invalidated_at;
	TransactionId catalog_xmin;
} SlotCopy;

extern int	slot_copy_all(SlotCopy *out);
extern SlotCopy *slot_copy_all_palloc(int *count);
extern bool slot_copy_at(int i, SlotCopy *out);
extern bool slot_copy_named(const char *name, SlotCopy *out);
extern bool slot_copy_named_hinted(const char *name, SlotCopy *out,
								   int *hint);
extern bool slot_copy_is_invalidated(const SlotCopy *slot);
extern int	slot_count_live_logical(void);
extern int	slot_count_in_use(void);

#endif							/* SLOT_COPY_H */
