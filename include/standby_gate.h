/*-------------------------------------------------------------------------
 *
 * standby_gate.h
 *		pg_slotsync.synchronized_standby_slots: the parsed setting, the
 *		question "have the listed standbys confirmed this LSN?", and the
 *		gate that holds back consumers of failover slots until they have.
 *
 * standby_slots_guc.c parses the setting, standby_gate_quorum.c answers the
 * question against the physical slots in shared memory, and standby_gate.c
 * with the other standby_gate_*.c files makes logical walsenders and the
 * SQL decoding functions wait for it (standby_gate_internal.h lists them).
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef STANDBY_GATE_H
#define STANDBY_GATE_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "utils/guc.h"

/* The name of the setting, for messages. */
#define STANDBY_SLOTS_GUC_NAME "pg_slotsync.synchronized_standby_slots"

/*
 * How the listed standbys must confirm.  A plain list is FIRST n with n the
 * length of the list (every slot, as in core); see standby_slots_guc.c.
 */
typedef enum StandbySlotsMethod
{
	STANDBY_SLOTS_FIRST,		/* the n highest-priority usable slots */
	STANDBY_SLOTS_ANY			/* any n slots */
} StandbySlotsMethod;

/* One listed slot.  Fields below "name" are this process's scratch space. */
typedef struct StandbySlot
{
	NameData	name;
	TimestampTz last_warning;	/* when we last warned about it */
	/* filled in by each evaluation (standby_gate_quorum.c) */
	int			state;
	bool		active;
	XLogRecPtr	restart_lsn;
} StandbySlot;

/*
 * The parsed setting: the GUC machinery's "extra" for it, malloc'd by the
 * check hook and private to each process.
 */
typedef struct StandbySlotsConfig
{
	StandbySlotsMethod method;
	int			num_required;	/* n of FIRST n / ANY n */
	int			nslots;
	StandbySlot slots[FLEXIBLE_ARRAY_MEMBER];
} StandbySlotsConfig;

/* standby_slots_guc.c */
extern StandbySlotsConfig *standby_slots_config;	/* NULL: empty setting */
extern uint64 standby_slots_generation; /* bumped on every assignment */
extern bool check_synchronized_standby_slots(char **newval, void **extra,
											 GucSource source);
extern void assign_synchronized_standby_slots(const char *newval, void *extra);
extern bool standby_slots_lists(const char *slot_name);

/* standby_gate_quorum.c */
extern bool standby_slots_confirmed(XLogRecPtr target, int elevel);
extern XLogRecPtr standby_slots_confirmed_upto(void);

/* standby_gate.c */
extern Size standby_gate_shmem_size(void);
extern void standby_gate_shmem_init(void);
extern void standby_gate_install_hooks(void);

#endif							/* STANDBY_GATE_H */
