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
 * Which slot: failover_slot_moves_of(i) counts the moves attributed to
 * entry i of the server's slot array (walsenders, SQL decoding of up to 4
 * slots in a transaction); failover_slot_moves_unattributed() counts those
 * of no known slot (creating, copying, dropping, the failover flag, SQL
 * decoding of more slots in one transaction).  A watcher that read the
 * shared counter, then the per-slot ones, needs to look only at the slots
 * whose counter changed, or at every slot if the unattributed one did.
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
 *	  failover flag;
 *	- a physical walsender whose slot's catalog_xmin (hot standby feedback)
 *	  changed: checked once per round of its loop (standby_gate_walsender.c),
 *	  so that a standby waiting for its feedback to arrive learns at once.
 *
 *	- creating, copying or dropping a slot: core's SQL functions
 *	  pg_create_logical_replication_slot, pg_copy_logical_replication_slot
 *	  and pg_drop_replication_slot when they return (an fmgr hook), and the
 *	  replication protocol's CREATE_REPLICATION_SLOT and
 *	  DROP_REPLICATION_SLOT (DROP SUBSCRIPTION uses the latter) when the
 *	  walsender completes them.
 *
 * Paths that do NOT broadcast; a watcher needs its slow safety poll for
 * them:
 *
 *	- invalidation of a slot by the checkpointer, and the slots DROP
 *	  DATABASE drops;
 *	- reloading pg_slotsync.failover_slot_patterns (a reload also sets the
 *	  latch of every process, so a watcher sleeping on the condition
 *	  variable wakes up for it anyway);
 *	- a failover slot moved by a logical walsender the gate could not attach
 *	  to (pg_slotsync.gate_status() counts those as refused), or decoded by
 *	  a decoding context whose WAL reader is not core's;
 *	- a failover slot decoded by SQL while the gate could not attach to the
 *	  decoding (the statement is refused then, but decoding may already
 *	  have moved restart_lsn or catalog_xmin);
 *	- standbys' physical slots' restart_lsn: not watched here; the gate's
 *	  own condition variable in standby_gate_internal.h is broadcast when a
 *	  listed physical slot's restart_lsn moves.
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
extern uint64 failover_slot_moves_unattributed(void);
extern uint32 failover_slot_moves_of(int i);
extern ConditionVariable *failover_slot_moved_cv(void);

/* What the paths above call: a move of a known slot, or of any */
extern void failover_slot_moved_slot(ReplicationSlot *slot);
extern void failover_slot_moved(void);
extern void failover_slot_moves_note_decoding(ReplicationSlot *slot);

/* Shared memory, through pg_slotsync.c's hooks; the transaction callback */
extern Size failover_slot_moves_shmem_size(void);
extern void failover_slot_moves_shmem_init(void);
extern void failover_slot_moves_install(void);

#endif							/* FAILOVER_SLOT_MOVES_H */
