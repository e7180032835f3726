"""Servers, consumers and shared helpers of the chaos harness (chaos.py)."""
import os
import re
import signal
import subprocess
import sys
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
