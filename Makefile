# pg_slotsync: failover logical replication slots for PostgreSQL 15
EXTENSION = pg_slotsync
MODULE_big = pg_slotsync
PGFILEDESC = "pg_slotsync - failover logical replication slots"

OBJS = \
	src/pg_slotsync.o \
	src/failover_patterns.o \
	src/slot_copy.o \
	src/slot_marker.o \
	src/snapshot_file.o \
	src/slot_funcs.o \
	src/primary_funcs.o \
	src/primary_watch.o \
	src/primary_look.o \
	src/primary_history.o \
	src/sync_decide.o \
	src/sync_apply.o \
	src/sync_anchor.o \
	src/sync_history.o \
	src/sync_checks.o \
	src/remote_reply.o \
	src/remote_session.o \
	src/remote_values.o \
	src/sync_remote.o \
	src/sync_remote_queries.o \
	src/sync_status.o \
	src/worker_status.o \
	src/sync_views.o \
	src/sync_session.o \
	src/sync_slot_step.o \
	src/sync_cycle.o \
	src/sync_slots.o \
	src/sync_launcher.o \
	src/sync_worker.o \
	src/sync_manual.o \
	src/sync_readiness.o \
	src/sync_stale.o \
	src/standby_slots_guc.o \
	src/standby_gate_quorum.o \
	src/standby_gate.o \
	src/standby_gate_context.o \
	src/standby_gate_read.o \
	src/standby_gate_wait.o \
	src/standby_gate_walsender.o \
	src/standby_gate_sql.o \
	src/standby_gate_shutdown.o \
	src/standby_gate_status.o \
	src/failover_slot_moves.o

SCRIPTS = bin/pg_slotsync_ready

DATA = sql/pg_slotsync--1.0.sql \
	sql/pg_slotsync--1.1.sql \
	sql/pg_slotsync--1.0--1.1.sql

# The regression suite needs the library preloaded, so it runs in a
# temporary instance of its own (like pg_cron) rather than the user's server.
REGRESS = failover_flag failover_patterns privileges primary_side gate_status upgrade install_schema
REGRESS_OPTS = --inputdir=test --outputdir=test \
	--temp-config=$(srcdir)/test/pg_slotsync.conf \
	--temp-instance=$(CURDIR)/tmp_check_regress

TAP_TESTS = 1
PROVE_TESTS = $(wildcard test/t/*.pl)
export PGCTLTIMEOUT = 120

PG_CPPFLAGS = -I$(srcdir)/include -I$(libpq_srcdir)
PG_CFLAGS = -Wshadow
SHLIB_LINK_INTERNAL = $(libpq)
EXTRA_CLEAN = tmp_check_regress test/results test/regression.diffs test/regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: rebuild everything when one changes
$(OBJS): $(wildcard $(srcdir)/include/*.h)

# after PGXS, which sets PROVE_FLAGS empty: our TAP helper module
PROVE_FLAGS += --timer -I $(srcdir)/test/perl

ifneq ($(MAJORVERSION),15)
$(error pg_slotsync supports PostgreSQL 15 only, but $(PG_CONFIG) is version $(MAJORVERSION))
endif

# A one-command failover walk-through (see README)
.PHONY: demo
demo:
	bash $(srcdir)/scripts/demo.sh

# Chaos and soak harness (docs/reliability.md):
#   make chaos [CYCLES=50] [SEED=n] [MODE=ours|core18]
.PHONY: chaos
chaos:
	PG_CONFIG=$(PG_CONFIG) /usr/bin/python3 $(srcdir)/test/chaos/chaos.py
