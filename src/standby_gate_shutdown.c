/*-------------------------------------------------------------------------
 *
 * standby_gate_shutdown.c
 *		Noticing that a walsender held back by the gate must stop.
 *
 * At shutdown a walsender learns that it must stop through
 * PROCSIG_WALSND_INIT_STOPPING, which core records only in walsender.c's
 * static got_STOPPING.  A gated walsender needs to know too: while it
 * stops, a listed slot that cannot confirm is an ERROR rather than a
 * warning, and it gives up waiting after a while (standby_gate_wait.c).
 *
 * How: we wrap the walsender's SIGUSR1 handler and look at the ProcSignal
 * flag before core's handler clears it.  The ProcSignal slot layout is
 * private to procsignal.c, so we mirror it (PostgreSQL 15's
 * ProcSignalSlot and ProcSignalHeader) and check the mirror before trusting
 * it: at startup its size must equal ProcSignalShmemSize()
 * (gate_procsignal_layout_ok(), part of the self-check in standby_gate.c),
 * and in the walsender our slot must hold our pid.  If either fails we log
 * once and go without shutdown detection: a gated walsender then delays
 * shutdown until its client disconnects, which is safe (nothing is sent
 * that the standbys lack) but slow.
 *
 * The handler only reads a flag and sets a sig_atomic_t, then calls the
 * handler it replaced; it is installed once per walsender, the first time
 * the gate attaches to it.
 *
 * Copyright (c) 2026, pg_slotsync developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "libpq/pqsignal.h"
#include "miscadmin.h"
#include "standby_gate.h"
#include "standby_gate_internal.h"
#include "storage/procsignal.h"
#include "storage/shmem.h"

volatile sig_atomic_t gate_walsender_stopping = false;

static bool stop_detector_tried = false;
static pqsigfunc prev_sigusr1_handler = NULL;

/*
 * A mirror of procsignal.c's private ProcSignalSlot and ProcSignalHeader
 * (PostgreSQL 15), to read our PROCSIG_WALSND_INIT_STOPPING flag.
 */
typedef struct MirrorProcSignalSlot
{
	volatile pid_t pss_pid;
	volatile sig_atomic_t pss_signalFlags[NUM_PROCSIGNALS];
	pg_atomic_uint64 pss_barrierGeneration;
	pg_atomic_uint32 pss_barrierCheckMask;
	ConditionVariable pss_barrierCV;
} MirrorProcSignalSlot;

typedef struct MirrorProcSignalHeader
{
	pg_atomic_uint64 psh_barrierGeneration;
	MirrorProcSignalSlot psh_slot[FLEXIBLE_ARRAY_MEMBER];
} MirrorProcSignalHeader;

static MirrorProcSignalSlot *my_procsignal_slot = NULL;

static Size
mirror_size(void)
{
	return add_size(offsetof(MirrorProcSignalHeader, psh_slot),
					mul_size(MaxBackends + NUM_AUXPROCTYPES,
							 sizeof(MirrorProcSignalSlot)));
}

/*
 * Does our mirror have the size of the real thing?  (At startup, once
 * MaxBackends is known.)
 */
bool
gate_procsignal_layout_ok(void)
{
	return mirror_size() == ProcSignalShmemSize();
}

static void
gate_sigusr1_handler(SIGNAL_ARGS)
{
	if (my_procsignal_slot != NULL &&
		my_procsignal_slot->pss_signalFlags[PROCSIG_WALSND_INIT_STOPPING])
		gate_walsender_stopping = true;
	prev_sigusr1_handler(postgres_signal_arg);
}

/*
 * In a walsender: start watching for PROCSIG_WALSND_INIT_STOPPING, if the
 * layout checks pass.
 */
void
gate_install_stop_detector(void)
{
	MirrorProcSignalHeader *header;
	bool		found;
	pqsigfunc	prev;

	if (stop_detector_tried)
		return;
	stop_detector_tried = true;

	header = (MirrorProcSignalHeader *)
		ShmemInitStruct("ProcSignal", ProcSignalShmemSize(), &found);
	if (!found || !gate_procsignal_layout_ok() ||
		MyBackendId < 1 || MyBackendId > MaxBackends ||
		header->psh_slot[MyBackendId - 1].pss_pid != MyProcPid)
	{
		ereport(LOG,
				(errmsg("pg_slotsync cannot detect walsender shutdown on this server"),
				 errdetail("The ProcSignal layout does not match PostgreSQL 15's. A walsender held back by parameter \"%s\" delays shutdown until its client disconnects.",
						   STANDBY_SLOTS_GUC_NAME)));
		return;
	}

	my_procsignal_slot = &header->psh_slot[MyBackendId - 1];
	prev = pqsignal(SIGUSR1, gate_sigusr1_handler);
	if (prev == SIG_ERR || prev == SIG_DFL || prev == SIG_IGN || prev == NULL)
	{
		/* not a handler we could chain to: put it back */
		if (prev != SIG_ERR)
			pqsignal(SIGUSR1, prev);
		my_procsignal_slot = NULL;
		return;
	}
	prev_sigusr1_handler = prev;
}
