"""Pieces shared by the slot sync benchmarks (ready_bench.py, scale_bench.py).

A System is a primary and a physical standby of one kind on loopback (Unix
sockets only), either pg_slotsync on PostgreSQL 15 or PostgreSQL 17/18 core,
configured alike.  The standby is made in one of two ways:

  copy_stopped    a copy of the stopped primary's data directory (the standby
                  exists before the benchmark's slots: the scale bench);
  online_backup   a base backup taken with pg_backup_start()/pg_backup_stop()
                  while the primary runs, without its pg_wal, like
                  pg_basebackup -X none (the standby never had the WAL from
                  before the backup: the ready bench).  PostgreSQL 15's
                  pg_basebackup refuses newer servers, and the same method is
                  used for both systems.

CPU time of a process is read from /proc/PID/schedstat (nanoseconds on the
CPU), which is exact, rather than from the tick-sampled /proc/PID/stat.
Machine noise is recorded with each measurement: the load average and how
busy both cores were (/proc/stat) while it ran.

Results are JSON files, one per system, slot count and run, in the output
directory; the report steps read whatever is there, so runs can be partial,
repeated, and resumed.
"""
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

PG15_BIN_DEFAULT = os.environ.get("PG15_BIN", "/usr/lib/postgresql/15/bin")
SLOT_RE = "^b[0-9]+$"   # the benchmark's failover slots are b0, b1, ...


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, file=sys.stderr, flush=True)


def reexec_unprivileged():
    """PostgreSQL refuses to run as root: run the script again as postgres,
    with the Debian Python that has psycopg2."""
    if os.geteuid() == 0:
        script = os.path.abspath(sys.argv[0])
        os.execvp("runuser", ["runuser", "-u", "postgres", "--",
                              "/usr/bin/python3", script] + sys.argv[1:])


def psycopg2():
    import psycopg2 as mod   # python3-psycopg2 (Debian)
    return mod


# ---------------------------------------------------------------- machine noise

def _cpu_totals():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]), idle


class MachineWindow:
    """How busy the machine was between start() and stop(): busy share of
    all cores in %, and the load average at both ends."""

    def __init__(self):
        self.t0 = _cpu_totals()
        self.load0 = os.getloadavg()[0]

    def stop(self):
        t1 = _cpu_totals()
        total, idle = t1[0] - self.t0[0], t1[1] - self.t0[1]
        return {"busy_pct": round(100.0 * (total - idle) / total, 1) if total else None,
                "loadavg": [round(self.load0, 2), round(os.getloadavg()[0], 2)],
                "ncpu": os.cpu_count()}


def cpu_ns(pid):
    """CPU time of a process in nanoseconds, or None if it is gone."""
    if pid is None:
        return None
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------- build ids

def code_identity(pg15_bin):
    """Which code was measured: the repository's commit (and whether the
    tree was clean) and a hash of the installed library."""
    here = os.path.dirname(os.path.abspath(__file__))
    ident = {}
    try:
        git = ["git", "-c", "safe.directory=*", "-C", here]
        ident["commit"] = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True,
                                         text=True).stdout.strip() or None
        dirty = subprocess.run(git + ["status", "--porcelain", "--", "../src", "../include", "../sql"],
                               capture_output=True, text=True).stdout.strip()
        ident["src_dirty"] = bool(dirty)
    except OSError:
        ident["commit"] = None
    so = os.path.join(os.path.dirname(pg15_bin), "lib", "pg_slotsync.so")
    try:
        with open(so, "rb") as f:
            ident["library_md5"] = hashlib.md5(f.read()).hexdigest()
        ident["library"] = so
    except OSError:
        ident["library_md5"] = None
    return ident


def server_version(bindir):
    out = subprocess.run([os.path.join(bindir, "postgres"), "--version"], capture_output=True,
                         text=True, env=bin_env(bindir)).stdout
    return out.split()[-1] if out else "?"


def bin_env(bindir):
    lib = os.path.join(os.path.dirname(bindir), "lib")
    env = dict(os.environ)
    if os.path.isfile(os.path.join(lib, "libpq.so.5")) or glob.glob(os.path.join(lib, "libicu*")):
        env["LD_LIBRARY_PATH"] = lib   # the npm package's own libraries
    return env


# ----------------------------------------------------------------------- nodes

class Node:
    def __init__(self, name, bindir, datadir, port, sockdir):
        self.name, self.bindir, self.datadir = name, bindir, datadir
        self.port, self.sockdir = port, sockdir
        self.logfile = datadir + ".log"

    def run(self, *args):
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env=bin_env(self.bindir))

    def initdb(self):
        self.run(os.path.join(self.bindir, "initdb"), "-D", self.datadir, "-A", "trust",
                 "--no-sync")

    def conf(self, text):
        with open(os.path.join(self.datadir, "postgresql.auto.conf"), "a") as f:
            f.write(text + "\n")

    def start(self, wait=True):
        self.run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir,
                 "-w" if wait else "-W", "-t", "300", "-l", self.logfile, "start")

    def running(self):
        return os.path.exists(os.path.join(self.datadir, "postmaster.pid"))

    def stop(self, mode="fast"):
        if self.running():
            self.run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-w",
                     "-t", "300", "-m", mode, "stop")

    def connect(self, timeout=None):
        c = psycopg2().connect(host=self.sockdir, port=self.port, dbname="postgres",
                               connect_timeout=timeout or 10)
        c.autocommit = True
        return c

    def q(self, sql, args=None):
        c = self.connect()
        try:
            with c.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall() if cur.description else None
        finally:
            c.close()

    def q1(self, sql, args=None):
        return self.q(sql, args)[0][0]

    def dir_bytes(self, sub):
        total = 0
        for root, _dirs, files in os.walk(os.path.join(self.datadir, sub)):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(root, f))
                except OSError:
                    pass
        return total

    def log_text(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


COMMON_CONF = """
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
log_line_prefix = '%m [%p] '
"""

# what pg_basebackup leaves out of a base backup (PostgreSQL 15 and 18)
BACKUP_EXCLUDED_CONTENTS = {"pg_wal", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial",
                            "pg_snapshots", "pg_stat_tmp", "pg_subtrans"}
BACKUP_EXCLUDED_FILES = {"postmaster.pid", "postmaster.opts", "backup_label", "tablespace_map",
                         "backup_manifest", "pg_internal.init", "postgresql.auto.conf.tmp",
                         "current_logfiles", "current_logfiles.tmp"}


def copy_datadir(src, dst, exclude_contents, exclude_files=BACKUP_EXCLUDED_FILES):
    """Copy a data directory file by file, tolerating files that vanish
    (the source may be running)."""
    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        os.makedirs(os.path.join(dst, rel), mode=0o700, exist_ok=True)
        if rel in exclude_contents:
            for d in dirs:
                if rel == "pg_wal" and d == "archive_status":
                    os.makedirs(os.path.join(dst, rel, d), mode=0o700, exist_ok=True)
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if not d.startswith("pgsql_tmp")]
        for f in files:
            if f in exclude_files or f.startswith("pgsql_tmp"):
                continue
            try:
                shutil.copy2(os.path.join(root, f), os.path.join(dst, rel, f))
            except FileNotFoundError:
                pass
    os.chmod(dst, 0o700)


class System:
    """One primary and one standby of one kind ("pg_slotsync" or "core")."""

    def __init__(self, kind, bindir, base, port, nslots, extra_conf=""):
        self.kind, self.bindir, self.nslots = kind, bindir, nslots
        self.ours = kind == "pg_slotsync"
        self.base = os.path.join(base, kind)
        os.makedirs(self.base)
        self.primary = Node("primary", bindir, os.path.join(self.base, "p"), port, self.base)
        self.standby = Node("standby", bindir, os.path.join(self.base, "s"), port + 1, self.base)
        self.extra_conf = extra_conf

    @property
    def maxslots(self):
        return self.nslots + 20

    def init_primary(self, physical_slots=("sb1_slot",)):
        p = self.primary
        p.initdb()
        p.conf(COMMON_CONF.format(sock=self.base, port=p.port, maxslots=self.maxslots))
        if self.ours:
            p.conf("shared_preload_libraries = 'pg_slotsync'")
        if self.extra_conf:
            p.conf(self.extra_conf)
        p.start()
        p.q("CREATE TABLE t (id bigserial primary key, v text)")
        for s in physical_slots:
            p.q("SELECT pg_create_physical_replication_slot(%s, true)", (s,))
        if self.ours:
            p.q("CREATE EXTENSION pg_slotsync")

    def standby_conf(self, node, slot="sb1_slot", sync=True):
        node.conf("port = %d" % node.port)
        node.conf("max_replication_slots = %d" % self.maxslots)
        node.conf("primary_conninfo = 'host=%s port=%d dbname=postgres'"
                  % (self.base, self.primary.port))
        node.conf("primary_slot_name = '%s'" % slot)
        node.conf("hot_standby_feedback = on")
        node.conf("%s = %s" % ("pg_slotsync.sync_replication_slots" if self.ours
                                else "sync_replication_slots", "on" if sync else "off"))
        open(os.path.join(node.datadir, "standby.signal"), "w").close()

    def standby_by_copy_stopped(self):
        """A standby from a copy of the stopped primary: it has all WAL."""
        p, s = self.primary, self.standby
        p.stop()
        copy_datadir(p.datadir, s.datadir, {"pg_replslot"})
        for f in ("postmaster.pid", "postmaster.opts"):
            if os.path.exists(os.path.join(s.datadir, f)):
                os.remove(os.path.join(s.datadir, f))
        self.standby_conf(s)
        p.start()

    def online_backup(self, dest):
        """A base backup of the running primary into dest, without WAL: the
        standby streams from the backup's start on, like pg_basebackup -X
        none followed by streaming.  Returns the backup's start LSN."""
        c = self.primary.connect()
        try:
            cur = c.cursor()
            cur.execute("SELECT pg_backup_start('bench', true)")
            start_lsn = cur.fetchone()[0]
            copy_datadir(self.primary.datadir, dest, BACKUP_EXCLUDED_CONTENTS)
            cur.execute("SELECT labelfile, spcmapfile FROM pg_backup_stop(false)")
            label, spcmap = cur.fetchone()
        finally:
            c.close()
        with open(os.path.join(dest, "backup_label"), "w") as f:
            f.write(label)
        if spcmap:
            with open(os.path.join(dest, "tablespace_map"), "w") as f:
                f.write(spcmap)
        return start_lsn

    # slots ----------------------------------------------------------------
    def create_slots(self, names, batch=100):
        """Failover slots, in statements of up to `batch` slots."""
        if self.ours:
            fn = "pg_slotsync.create_logical_replication_slot(n, 'test_decoding', failover => true)"
        else:
            fn = "pg_create_logical_replication_slot(n, 'test_decoding', false, false, true)"
        c = self.primary.connect()
        try:
            cur = c.cursor()
            for i in range(0, len(names), batch):
                cur.execute("SELECT count(*) FROM unnest(%%s::name[]) n, LATERAL %s" % fn,
                            (names[i:i + batch],))
        finally:
            c.close()

    def create_slots_by_copy(self, names, batch=100):
        """Failover slots as copies of one template slot whose restart_lsn
        was just moved past a running-transactions record.  A slot created
        with pg_create_logical_replication_slot() logs such a record, so N
        slots created one after the other leave N of them behind each
        slot's restart_lsn; every slot's restart_lsn then has to step
        through them, a save of the slot per record, and the first rounds
        of advancing every slot cost O(N^2) (about 1 s per advance at 5000
        slots).  Copies log nothing; they are failover slots once flagged
        (core: ALTER_REPLICATION_SLOT on a replication connection, as
        PostgreSQL 17+ has no SQL function for it)."""
        c = self.primary.connect()
        try:
            cur = c.cursor()
            cur.execute("SELECT pg_create_logical_replication_slot('template', 'test_decoding')")
            cur.execute("CHECKPOINT")
            cur.execute("INSERT INTO t (v) VALUES ('template')")
            for _ in range(2):   # the second moves restart_lsn to the first's candidate
                cur.execute("SELECT pg_replication_slot_advance('template', pg_current_wal_lsn())")
            for i in range(0, len(names), batch):
                cur.execute("SELECT count(*) FROM unnest(%s::name[]) n, "
                            "LATERAL pg_copy_logical_replication_slot('template', n)",
                            (names[i:i + batch],))
            cur.execute("SELECT pg_drop_replication_slot('template')")
            if self.ours:
                for i in range(0, len(names), batch):
                    cur.execute("SELECT count(pg_slotsync.alter_replication_slot(n, true)) "
                                "FROM unnest(%s::name[]) n", (names[i:i + batch],))
        finally:
            c.close()
        if not self.ours:
            r = psycopg2().connect(host=self.base, port=self.primary.port, dbname="postgres",
                                   replication="database")
            try:
                r.autocommit = True
                rc = r.cursor()
                for n in names:
                    rc.execute('ALTER_REPLICATION_SLOT "%s" (FAILOVER true)' % n.replace('"', '""'))
            finally:
                r.close()

    def advance_all(self, cur, names, target_sql="pg_current_wal_lsn()", batch=100):
        for i in range(0, len(names), batch):
            cur.execute("SELECT count(pg_replication_slot_advance(n, %s)) "
                        "FROM unnest(%%s::name[]) n" % target_sql, (names[i:i + batch],))

    def ready_count_sql(self, names_re=SLOT_RE):
        if self.ours:
            return ("SELECT count(*) FILTER (WHERE sync_state = 'ready'), count(*) "
                    "FROM pg_slotsync.replication_slots WHERE synced AND slot_name ~ '%s'"
                    % names_re)
        return ("SELECT count(*) FILTER (WHERE NOT temporary AND invalidation_reason IS NULL), "
                "count(*) FROM pg_replication_slots WHERE synced AND slot_name ~ '%s'" % names_re)

    def worker_pids(self):
        """(standby sync worker, primary backend serving it)"""
        btype = "pg_slotsync worker" if self.ours else "slotsync worker"
        sp = self.standby.q("SELECT pid FROM pg_stat_activity WHERE backend_type = %s", (btype,))
        app = "pg_slotsync worker" if self.ours else "slotsync worker"
        pp = self.primary.q("SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s "
                            "AND pid <> pg_backend_pid()", ("%" + app,))
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


class CpuWindow:
    """CPU of the standby's sync worker and of the primary backend serving
    it over a window, in % of one core; None if either process changed."""

    def __init__(self, sysm):
        self.sysm = sysm
        self.pids = sysm.worker_pids()
        self.t = time.monotonic()
        self.ns = [cpu_ns(p) for p in self.pids]
        self.machine = MachineWindow()

    def stop(self):
        dt = time.monotonic() - self.t
        pids = self.sysm.worker_pids()
        ns = [cpu_ns(p) for p in self.pids]
        out = {"seconds": round(dt, 1), "machine": self.machine.stop()}
        for key, p0, p1, a, b in zip(("standby_worker", "primary_backend"), self.pids, pids,
                                     self.ns, ns):
            ok = p0 is not None and p0 == p1 and a is not None and b is not None
            out[key] = round(100.0 * (b - a) / 1e9 / dt, 3) if ok else None
        return out


# --------------------------------------------------------------- statistics

def pct(values, q):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    k = min(len(v) - 1, max(0, int(round(q / 100.0 * (len(v) - 1)))))
    return v[k]


def summary(values):
    return {"n": len(values), "p50": pct(values, 50), "p90": pct(values, 90),
            "p99": pct(values, 99), "max": max(values) if values else None}


# ----------------------------------------------------------------- results

def result_path(outdir, bench, kind, nslots, run_id):
    return os.path.join(outdir, "%s-%s-%05d-%s.json" % (bench, kind, nslots, run_id))


def save(path, res):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def load_results(outdir, bench):
    out = []
    for path in sorted(glob.glob(os.path.join(outdir, bench + "-*.json"))):
        with open(path) as f:
            r = json.load(f)
        r["_file"] = os.path.basename(path)
        out.append(r)
    return out


def done_already(outdir, bench, kind, nslots):
    return any(r.get("kind") == kind and r.get("slots") == nslots and r.get("complete")
               for r in load_results(outdir, bench))




def add_system_args(parser, default_slots):
    """The options every "run" command shares: which systems, where their
    binaries are, and the slot counts."""
    parser.add_argument("--core-bin", help="bin directory of PostgreSQL 17/18 core")
    parser.add_argument("--pg15-bin", default=PG15_BIN_DEFAULT,
                        help="bin directory of PostgreSQL 15 with pg_slotsync installed")
    parser.add_argument("--systems", default="pg_slotsync,core")
    parser.add_argument("--slots", default=default_slots, help="comma-separated slot counts")

def run_every_pair(args, bench, run_one):
    """Runs run_one(kind, bindir, args, base, port, nslots, run_id) for every
    slot count and system of args, each in a directory of its own under a
    temporary one (removed afterwards), skipping what --skip-done finds
    measured; with args.keep_going a failed pair is logged and the others
    run."""
    reexec_unprivileged()
    os.makedirs(args.out, exist_ok=True)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    base = tempfile.mkdtemp(prefix=bench + "_bench.")
    try:
        for nslots in [int(x) for x in args.slots.split(",")]:
            for i, kind in enumerate(args.systems.split(",")):
                if args.skip_done and done_already(args.out, bench, kind, nslots):
                    log("%s %d: done already, skipped" % (kind, nslots))
                    continue
                if kind == "core" and not args.core_bin:
                    sys.exit("--core-bin is needed for the core system")
                bindir = args.core_bin if kind == "core" else args.pg15_bin
                sub = os.path.join(base, "%s-%d" % (kind, nslots))
                os.makedirs(sub)
                try:
                    run_one(kind, bindir, args, sub, args.port + 10 * i, nslots, run_id)
                except Exception as e:
                    log("%s %d failed: %s" % (kind, nslots, e))
                    if not getattr(args, "keep_going", False):
                        raise
                shutil.rmtree(sub, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

def ensure_gnuplot():
    """gnuplot for the plots: Debian's gnuplot-nox, installed here when
    missing (only when running as root), never by scripts/setup.sh."""
    if shutil.which("gnuplot"):
        return True
    if os.geteuid() == 0:
        log("installing gnuplot-nox (Debian) for the plots")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                            "gnuplot-nox"], env=env)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                            "gnuplot-nox"], env=env)
        return shutil.which("gnuplot") is not None
    log("gnuplot is missing: run this report step as root once to install gnuplot-nox, "
        "or apt-get install gnuplot-nox; tables are written without the plots")
    return False


def fmt_ms(v):
    if v is None:
        return "-"
    if v == float("inf"):
        return "inf"
    return "%.0f" % (v * 1000) if v >= 0.0095 else "%.1f" % (v * 1000)


def natural_key(s):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", s)]
