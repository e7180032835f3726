"""The chaos harness's writer: numbered rows in transactions of every
kind, against whichever node is the primary, with a ledger of what was
committed, rolled back or left in doubt (settled on the next primary)."""
import random
import threading
import time

import psycopg2

from chaos_cluster import WAIT_S, HarnessError, wait_until

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
