/*-------------------------------------------------------------------------
 *
 * standby_gate_internal.h
 *		What the files of the gate (pg_slotsync.synchronized_standby_slots)
 *		share among themselves.  Nothing outside src/standby_gate*.c uses it.
 *
 * The gate's files, each with its design in its header comment:
 *
 *	standby_gate.c			entry: settings, shared memory, the startup
 *							self-check and its log line, installing hooks
 *	standby_gate_context.c	finding a logical decoding context in memory
 *	standby_gate_walsender.c attaching to walsenders, and their terminal guard
 *	standby_gate_sql.c		attaching to the SQL decoding functions, and
 *							their guards
 *	standby_gate_read.c		the gated WAL page read: what a consumer may see
 *	standby_gate_wait.c		waiting for the standbys (condition variable,
 *							waiter registry)
 *	standby_gate_quorum.c	have the listed standbys confirmed a position?
 *	standby_gate_shutdown.c	noticing that a walsender must stop
 *	standby_gate_status.c	pg_slotsync.gate_status()
 *	standby_slots_guc.c		the setting's syntax
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef STANDBY_GATE_INTERNAL_H
#define STANDBY_GATE_INTERNAL_H

#include <signal.h>

#include "access/xlogreader.h"
#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "storage/condition_variable.h"
#include "storage/spin.h"

/*
 * pg_slotsync.debug_gate_skip_attach: a developer setting that makes one
 * detection fail on purpose, so that tests can show the guard behind it
 * refuses instead of letting a consumer through.
 */
typedef enum GateSkipAttach
{
	GATE_SKIP_NONE,
	GATE_SKIP_WALSENDER,		/* no attaching at CopyBothResponse */
	GATE_SKIP_SQL,				/* SQL: decoding context not recognised */
	GATE_SKIP_SQL_READER,		/* SQL: read_local_xlog_page not recognised */
	GATE_SKIP_SQL_CALLBACK		/* SQL: cache invalidation callback ignored */
} GateSkipAttach;

extern int	gate_debug_skip_attach;

/* Mechanisms that passed the self-check at startup (GateShared.mechanisms) */
#define GATE_MECH_WALSENDER		0x0001	/* libpq method table in walsenders */
#define GATE_MECH_SQL			0x0002	/* reader of the SQL functions */
#define GATE_MECH_SHUTDOWN		0x0004	/* walsender shutdown detection */

typedef struct GateMechanismName
{
	uint32		mask;
	const char *name;
} GateMechanismName;

extern const GateMechanismName gate_mechanism_names[3];

/*
 * A consumer waiting for the standbys, one entry per backend (indexed by
 * BackendId - 1).  Written only by its own backend, under "mutex"; pid 0
 * means not waiting.  A backend that errors out of a wait may leave its
 * entry behind; readers check that the slot is still held by that pid.
 */
typedef struct GateWaiter
{
	slock_t		mutex;
	pid_t		pid;
	bool		walsender;
	NameData	slot;
	XLogRecPtr	target;			/* waiting until the standbys confirm this */
	TimestampTz since;			/* waiting for this slot since */
} GateWaiter;

typedef struct GateShared
{
	ConditionVariable standby_confirmed_cv; /* a listed slot moved */
	uint32		mechanisms;		/* GATE_MECH_* that passed the self-check */
	char		self_check_failure[256];	/* why not, '' if all passed */
	pg_atomic_uint64 attached;	/* consumers the gate attached to */
	pg_atomic_uint64 refused;	/* consumers a guard refused */
	int			nwaiters;
	GateWaiter	waiters[FLEXIBLE_ARRAY_MEMBER];
} GateShared;

extern GateShared *GateState;

/* standby_gate_context.c */
extern LogicalDecodingContext *gate_find_decoding_context(ReplicationSlot *slot,
														  bool recognise,
														  bool *seen);
extern bool gate_context_self_test(void);

/* standby_gate_read.c */
extern bool gate_applies(void);
extern bool gate_slot_is_failover(void);
extern void gate_reader_attached(void);
extern bool gate_slot_known_not_failover(void);
extern XLogPageReadCB gate_walsender_reader_orig;
extern XLogPageReadCB gate_refused_reader_orig;
extern int	gate_walsender_page_read(XLogReaderState *state,
									 XLogRecPtr targetPagePtr, int reqLen,
									 XLogRecPtr targetRecPtr, char *cur_page);
extern int	gate_backend_page_read(XLogReaderState *state,
								   XLogRecPtr targetPagePtr, int reqLen,
								   XLogRecPtr targetRecPtr, char *cur_page);
extern int	gate_refusing_page_read(XLogReaderState *state,
									XLogRecPtr targetPagePtr, int reqLen,
									XLogRecPtr targetRecPtr, char *cur_page);
extern bool gate_reader_is_ours(XLogPageReadCB page_read);

/* standby_gate_wait.c */
extern bool gate_walsender_wait(XLogRecPtr target);
extern void gate_backend_wait(XLogRecPtr target);
extern void gate_waiter_clear(void);

/* standby_gate_shutdown.c */
extern volatile sig_atomic_t gate_walsender_stopping;
extern bool gate_procsignal_layout_ok(void);
extern void gate_install_stop_detector(void);

/* standby_gate_walsender.c */
extern void gate_walsender_install(void);
extern void gate_walsender_reading(bool reading);

/* standby_gate_sql.c */
extern void gate_sql_install(void);

/* standby_gate.c */
extern void gate_count_attached(void);
extern void gate_count_refused(void);

#endif							/* STANDBY_GATE_INTERNAL_H */
