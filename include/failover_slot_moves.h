/*-------------------------------------------------------------------------
 *
 * failover_slot_moves.h
 *		A wakeup for whoever watches the failover slots on a primary (the
 *		standbys' long-poll): a counter of "failover slot moves" and a
 *		condition variable broadcast whenever it moves.
 *
 * Use: read the counter, look at the slots, and sleep on the condition
 * variable until the counter differs from what you read, with a timeout:
 *
 *		uint64	seen = failover_slot_moves_read();
 *		... look at the slots ...
 *		ConditionVariablePrepareToSleep(failover_slot_moved_cv());
 *		while (failover_slot_moves_read() == seen)
 *			if (ConditionVariableTimedSleep(failover_slot_moved_cv(),
 *											safety_poll_ms, wait_event))
 *				break;			(timed out: look anyway)
 *		ConditionVariableCancelSleep();
 *
 * The counter only ever grows; its value means nothing but "something may
 * have changed since you read it".  A bump may be spurious (nothing the
 * watcher cares about changed), never missing for the paths below.
 *
 * Paths that bump and broadcast (at once, no polling):
 *
 *	- a logical walsender holding a failover slot, when the slot's
 *	  confirmed_flush, restart_lsn or catalog_xmin differs from what that
 *	  walsender saw last: checked at every WAL page it reads, and in every
 *	  round of its wait for WAL and of the gate's wait for the standbys,
 *	  right after it processed its client's replies; never per change sent
 *	  (standby_gate_walsender.c).  A reply processed while the walsender
 *	  streams a backlog is seen at its next page read (within 8 kB of WAL);
 *	- the end (commit, abort or prepare) of a transaction in which this
 *	  backend decoded or advanced a failover slot with
 *	  pg_logical_slot_get_changes, _peek_changes, their binary variants or
 *	  pg_replication_slot_advance, if the slot's confirmed_flush,
 *	  restart_lsn or catalog_xmin changed, or the slot is gone;
 *	- pg_slotsync.create_logical_replication_slot(..., failover => true)
 *	  and pg_slotsync.alter_replication_slot() when they set or clear the
 *	  failover flag.
 *
 * Paths that do NOT broadcast; a watcher needs its slow safety poll for
 * them:
 *
 *	- dropping a slot (pg_drop_replication_slot, DROP_REPLICATION_SLOT,
 *	  DROP SUBSCRIPTION), and invalidation of a slot by the checkpointer;
 *	- creating a slot that is a failover slot by name pattern (through the
 *	  replication protocol, pg_create_logical_replication_slot, or
 *	  pg_copy_logical_replication_slot), and reloading
 *	  pg_slotsync.failover_slot_patterns (a reload also sets the latch of
 *	  every process, so a watcher sleeping on the condition variable wakes
 *	  up for it anyway);
 *	- a failover slot moved by a logical walsender the gate could not attach
 *	  to (pg_slotsync.gate_status() counts those as refused), or decoded by
 *	  a decoding context whose WAL reader is not core's;
 *	- a failover slot decoded by SQL while the gate could not attach to the
 *	  decoding (the statement is refused then, but decoding may already
 *	  have moved restart_lsn or catalog_xmin);
 *	- standbys' physical slots (restart_lsn, catalog_xmin from hot standby
 *	  feedback): not failover slots; the gate's own condition variable in
 *	  standby_gate_internal.h is broadcast for listed physical slots only.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef FAILOVER_SLOT_MOVES_H
#define FAILOVER_SLOT_MOVES_H

#include "replication/slot.h"
#include "storage/condition_variable.h"

/* What a watcher uses */
extern uint64 failover_slot_moves_read(void);
extern ConditionVariable *failover_slot_moved_cv(void);

/* What the paths above call */
extern void failover_slot_moved(void);
extern void failover_slot_moves_note_decoding(ReplicationSlot *slot);

/* Shared memory, through pg_slotsync.c's hooks; the transaction callback */
extern Size failover_slot_moves_shmem_size(void);
extern void failover_slot_moves_shmem_init(void);
extern void failover_slot_moves_install(void);

#endif							/* FAILOVER_SLOT_MOVES_H */
