#!/usr/bin/python3
"""Scale bench (issue 13): sync lag and CPU against the number of failover
slots, pg_slotsync on PostgreSQL 15 against PostgreSQL 17/18 core, one
after the other in the same run, same workload.

For each system and each slot count N (--slots, default 10,100,1000,5000) a
primary and a standby (a copy of the stopped primary, so the standby's sync
runs before the slots exist), max_replication_slots = N + 20 on both, N
failover slots (test_decoding) made on the primary (as copies of one
template slot, see benchlib.System.create_slots_by_copy) and ready on the
standby (core needs each slot to move past the standby's catalog_xmin
first: rows, a running-transactions record and every slot advanced, until
all are ready).  A tenth of them (at least 2, at most 10), spread over the
slot array, are the sample slots.  Then, each phase optional (--phases):

  cpu_idle     --cpu-seconds of nothing: CPU of the standby's sync worker
               and of the primary backend serving it (ours: the one waiting
               in wait_for_failover_slot_changes(); core's: the backend its
               worker polls through), in % of one core, from
               /proc/PID/schedstat; and transactions per second on the
               primary (the sync's queries);
  cpu_one      the same while one slot moves per second (a row inserted,
               then a sample slot advanced over it, once a second), from
               when the first move has reached the standby (core's worker
               may be in a long nap after the idle phase);
  idle         sync lag after idle gaps: --idle-samples gaps spread evenly
               over (0, --max-idle] in a fixed shuffled order; after each,
               a row is inserted and a sample slot advanced over it; lag is
               from the moment pg_replication_slot_advance() returns until
               the standby's copy shows the same confirmed_flush_lsn
               (polled every --poll-ms, more if one poll costs more than
               half of that: the poll interval used is recorded);
  walsender    sync lag of moves a logical walsender makes: a consumer
               (psycopg2's replication protocol, test_decoding) streams
               each of up to 4 sample slots through the phase; per sample,
               after a pause (uniform over (0.05, --move-gap] s), a row is
               inserted, its COMMIT read from the stream and confirmed with
               a standby status update (flush = the COMMIT's LSN); lag is
               from when that feedback was sent until the standby's copy
               shows it (the delay until the primary's pg_replication_slots
               shows it is recorded too);
  sql_decoding the same with pg_logical_slot_get_changes(slot, NULL, NULL)
               moving a sample slot over the row; lag from its return;
               the target is the slot's confirmed_flush_lsn after it;
  load_all     as idle, while every other slot moves too: a mover advances
               all of them to the current end of WAL, 100 per statement,
               round after round, over a light insert load (one row every
               10 ms) that gives each round something to move over; the
               slot moves per second it achieved are recorded (each advance
               decodes from the slot's restart_lsn: with a heavy insert load
               the rounds would take minutes at 1000 slots and more);
  load_one     the same under a continuous insert load (50-row inserts
               every 5 ms), only the sampled slot moving.

Every lag is also recorded "after WAL": from when the standby had received
the WAL (pg_last_wal_receive_lsn()), which leaves out physical replication.
CPU is also recorded over the load phases.  Each phase records how busy the
machine was while it ran.  The walsender and sql_decoding phases show
whether moves on the common paths wake the primary's waiting call at once
(pg_slotsync 1.1 broadcasts them; a move nothing broadcasts waits for its
500 ms safety poll, which shows as a lag spread over 0-500 ms).  A sample
still not on the standby after 1 s is logged and stored with what both
sides showed then (slow_samples).

Results go to --out, one JSON file per system, slot count and run, saved
after every phase; `report` turns every file there into Markdown tables (one
per metric, against slot count; medians over runs with their range) and
gnuplot plots (--plot-dir).  Partial and repeated runs: --slots 5000 only,
--systems core only, --phases idle only, --skip-done.

  bench/get_core_binaries.sh 18.4.0-beta.17 /tmp/pgcore/18
  bench/scale_bench.py run --core-bin /tmp/pgcore/18/package/native/bin \\
      --pg15-bin $(pg_config --bindir) --slots 10,100,1000,5000 --out /tmp/scale
  bench/scale_bench.py report --out /tmp/scale --plot-dir docs/img

As root `run` runs itself again as postgres; `report` as root installs
gnuplot-nox when it is missing.  Needs python3-psycopg2.
"""
import argparse
import os
import random
import select
import shutil
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

# load_all before load_one: each slot advance decodes from the slot's
# restart_lsn, and load_one's WAL would make the mover's first rounds slow;
# walsender and sql_decoding before both, for the same reason (a consumer
# starting on a sample slot decodes all the WAL since its last move)
PHASES = ("cpu_idle", "cpu_one", "idle", "walsender", "sql_decoding", "load_all", "load_one")
LAG_PHASES = ("idle", "walsender", "sql_decoding", "load_one", "load_all")


# --------------------------------------------------------------- workloads

class Repeater(threading.Thread):
    """Runs step(cursor) on its own primary connection until stopped."""

    def __init__(self, node, step, pause):
        super().__init__(daemon=True)
        self.node, self.step, self.pause = node, step, pause
        self.stop_flag, self.count, self.error = False, 0, None

    def run(self):
        try:
            c = self.node.connect()
            cur = c.cursor()
            while not self.stop_flag:
                self.count += self.step(cur)
                time.sleep(self.pause)
            c.close()
        except Exception as e:  # reported with the phase's results
            self.error = str(e).strip()

    def finish(self):
        self.stop_flag = True
        self.join()


def insert_rows(n):
    def step(cur):
        cur.execute("INSERT INTO t (v) SELECT 'load' FROM generate_series(1, %s)", (n,))
        return n
    return step


class Mover(threading.Thread):
    """Advances every slot in `names` to the end of WAL, `batch` per
    statement, round after round, until stopped."""

    def __init__(self, node, names, batch=100):
        super().__init__(daemon=True)
        self.node, self.names, self.batch = node, names, batch
        self.stop_flag, self.moves, self.rounds, self.error = False, 0, 0, None
        self.round_times = []

    def run(self):
        try:
            c = self.node.connect()
            cur = c.cursor()
            while not self.stop_flag:
                t = time.monotonic()
                for i in range(0, len(self.names), self.batch):
                    if self.stop_flag:
                        break
                    part = self.names[i:i + self.batch]
                    cur.execute("SELECT count(pg_replication_slot_advance(n, pg_current_wal_lsn())) "
                                "FROM unnest(%s::name[]) n", (part,))
                    self.moves += len(part)
                    time.sleep(0.005)
                else:
                    self.rounds += 1
                    self.round_times.append(time.monotonic() - t)
            c.close()
        except Exception as e:
            self.error = str(e).strip()

    def finish(self):
        self.stop_flag = True
        self.join()


class LagProbe:
    """Moves one slot on the primary and waits for the standby's copy.

    How the slot moves is the caller's choice (`move`, default
    pg_replication_slot_advance()): a move function takes the probe and the
    slot name and returns (target LSN, t0, primary_s): the confirmed_flush_lsn
    the standby's copy must reach, the instant the lag counts from, and how
    many seconds after t0 the primary's pg_replication_slots showed the
    target (None when t0 is already that moment)."""

    CHECK = ("SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn, "
             "(SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
             "WHERE slot_name = %s)")
    PRIMARY_CHECK = ("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                     "WHERE slot_name = %s")

    STALL_S = 1.0   # a sample this late: what both sides show is recorded

    def __init__(self, sysm, poll_ms):
        self.sysm = sysm
        self.stalls = []
        self.pc = sysm.primary.connect()
        self.sc = sysm.standby.connect()
        self.pcur, self.scur = self.pc.cursor(), self.sc.cursor()
        self.poll_s = poll_ms / 1000.0

    def poll_cost(self, slot, n=20):
        costs = []
        for _ in range(n):
            t = time.monotonic()
            self.scur.execute(self.CHECK, ("0/0", "0/0", slot))
            self.scur.fetchall()
            costs.append(time.monotonic() - t)
        return statistics.median(costs)

    @staticmethod
    def move_by_advance(probe, slot):
        """A row, then pg_replication_slot_advance() over it; t0 is its
        return (the slot has moved in shared memory by then)."""
        probe.pcur.execute("INSERT INTO t (v) VALUES ('sample')")
        probe.pcur.execute("SELECT end_lsn FROM pg_replication_slot_advance(%s, "
                           "pg_current_wal_lsn())", (slot,))
        target = probe.pcur.fetchone()[0]
        return target, time.monotonic(), None

    @staticmethod
    def move_by_sql_decoding(probe, slot):
        """A row, then pg_logical_slot_get_changes(slot, NULL, NULL): it
        decodes to the end of WAL and confirms what it returned; t0 is its
        return, the target the slot's confirmed_flush_lsn read right after
        (nothing else moves the slot)."""
        probe.pcur.execute("INSERT INTO t (v) VALUES ('sample')")
        probe.pcur.execute("SELECT count(*) FROM pg_logical_slot_get_changes(%s, NULL, NULL)",
                           (slot,))
        t0 = time.monotonic()
        probe.pcur.fetchall()
        probe.pcur.execute("SELECT confirmed_flush_lsn FROM pg_replication_slots "
                           "WHERE slot_name = %s", (slot,))
        return probe.pcur.fetchone()[0], t0, None

    def primary_shows(self, slot, target, t0, timeout=10):
        """Seconds from t0 until the primary's pg_replication_slots shows the
        slot at target or beyond (polled without pause)."""
        while True:
            self.pcur.execute(self.PRIMARY_CHECK, (target, slot))
            now = time.monotonic()
            if self.pcur.fetchone()[0]:
                return now - t0
            if now - t0 > timeout:
                return float("inf")

    def stall_report(self, slot, target, t0):
        """What the primary and the standby show for a slot whose move is
        late (once per sample, after STALL_S): the slot on both, and for
        pg_slotsync its sync status and worker rows."""
        row = "SELECT row_to_json(s) FROM %s s WHERE slot_name = %%s"
        out = {"slot": slot, "target": target, "after_s": round(time.monotonic() - t0, 3),
               "at": time.strftime("%H:%M:%S")}
        for key, cur, sql in (("primary_slot", self.pcur, row % "pg_replication_slots"),
                              ("standby_slot", self.scur, row % "pg_replication_slots"),
                              ("standby_sync_status", self.scur,
                               row % "pg_slotsync.sync_status" if self.sysm.ours else None),
                              ("standby_worker", self.scur, "SELECT row_to_json(w) FROM "
                               "pg_slotsync.sync_worker w" if self.sysm.ours else None)):
            if sql is None:
                continue
            try:
                cur.execute(sql, (slot,) if "%s" in sql else None)
                out[key] = [r[0] for r in cur.fetchall()]
            except Exception as e:
                out[key] = "error: %s" % str(e).strip()
        bl.log("%s %d: slow sample: %s" % (self.sysm.kind, self.sysm.nslots, out))
        self.stalls.append(out)

    def sample(self, slot, timeout=120, move=None, tick=None):
        target, t0, primary_s = (move or self.move_by_advance)(self, slot)
        received, reported = None, False
        while True:
            if tick:
                tick()
            if not reported and time.monotonic() - t0 > self.STALL_S:
                self.stall_report(slot, target, t0)
                reported = True
            self.scur.execute(self.CHECK, (target, target, slot))
            got_wal, synced = self.scur.fetchone()
            now = time.monotonic()
            if got_wal and received is None:
                received = now
            if synced:
                return now - t0, now - max(received or now, t0), primary_s
            if now - t0 > timeout:
                return float("inf"), float("inf"), primary_s
            time.sleep(self.poll_s)

    def close(self):
        self.pc.close()
        self.sc.close()


class WalsenderConsumers:
    """Logical replication consumers on the primary, one walsender per slot
    (test_decoding through psycopg2's replication protocol, which both
    servers speak; core's package has no pg_recvlogical), opened at the
    first sample of a slot and kept streaming through the phase.

    A move: a row inserted, the stream read until that transaction's COMMIT
    (the first COMMIT whose LSN, the end of its commit record, is past the
    insert position taken before the row), then a standby status update
    with that LSN as flush position, sent at once (force).  The walsender
    confirms it (LogicalConfirmReceivedLocation) when it reads the reply.
    t0 is the moment the feedback has been written to the socket: the
    primary cannot show the move before it, and polling the primary for it
    instead would start the clock up to a poll late; so the lag includes
    the walsender reading the reply, which a real consumer's confirmation
    goes through too.  How long after t0 the primary's
    pg_replication_slots showed it is recorded next to each sample
    ("primary_shows")."""

    def __init__(self, sysm):
        self.sysm, self.conns = sysm, {}

    def cursor(self, slot):
        if slot not in self.conns:
            import psycopg2.extras
            p = self.sysm.primary
            c = bl.psycopg2().connect(host=p.sockdir, port=p.port, dbname="postgres",
                                      connection_factory=psycopg2.extras.LogicalReplicationConnection)
            cur = c.cursor()
            cur.start_replication(slot_name=slot, options={"skip-empty-xacts": "1"})
            self.conns[slot] = (c, cur)
        return self.conns[slot][1]

    @staticmethod
    def drain(cur):
        while cur.read_message() is not None:   # keepalives are answered inside
            pass

    def drain_all(self):
        """Between the polls of a sample: the other consumers read their
        streams too (psycopg2 answers keepalives and sends its periodic
        status inside read_message()), so that none is dropped by
        wal_sender_timeout while a sample waits."""
        for _c, cur in self.conns.values():
            self.drain(cur)

    def move(self, probe, slot, timeout=60):
        cur = self.cursor(slot)
        self.drain(cur)
        probe.pcur.execute("SELECT pg_current_wal_insert_lsn()")
        before = lsn_int(probe.pcur.fetchone()[0])
        probe.pcur.execute("INSERT INTO t (v) VALUES ('sample')")
        end = time.monotonic() + timeout
        while True:
            msg = cur.read_message()
            if msg is None:
                if time.monotonic() > end:
                    raise RuntimeError("walsender of %s: no COMMIT of the sample row" % slot)
                select.select([cur], [], [], 0.05)
                continue
            if msg.payload.startswith(b"COMMIT") and msg.data_start > before:
                break
        target = lsn_str(msg.data_start)
        cur.send_feedback(write_lsn=msg.data_start, flush_lsn=msg.data_start, force=True)
        t0 = time.monotonic()
        return target, t0, probe.primary_shows(slot, target, t0)

    def close(self):
        for c, _cur in self.conns.values():
            try:
                c.close()
            except Exception:
                pass
        self.conns = {}


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_str(v):
    return "%X/%X" % (v >> 32, v & 0xFFFFFFFF)


# ------------------------------------------------------------------- phases

def make_ready(sysm, names):
    """Every slot ready on the standby; core needs them to move first."""
    p, s = sysm.primary, sysm.standby
    sql = sysm.ready_count_sql()
    wait_s = max(10, len(names) / 50)
    if sysm.ours and sysm.wait(lambda: s.q(sql)[0][0] == len(names), wait_s, 0.2):
        return 0
    c = p.connect()
    cur = c.cursor()
    try:
        for kick in range(1, 21):
            cur.execute("INSERT INTO t (v) VALUES ('kick')")
            cur.execute("CHECKPOINT" if sysm.ours else "SELECT pg_log_standby_snapshot()")
            cur.execute("INSERT INTO t (v) VALUES ('kick')")
            sysm.advance_all(cur, names)
            if sysm.wait(lambda: s.q(sql)[0][0] == len(names), wait_s, 0.2):
                return kick
    finally:
        c.close()
    raise RuntimeError("%s: not all %d slots became ready: %s"
                       % (sysm.kind, len(names), s.q(sql)[0]))


def phase_cpu_idle(sysm, args, ctx):
    x0 = sysm.primary.q1("SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")
    w = bl.CpuWindow(sysm)
    time.sleep(args.cpu_seconds)
    out = w.stop()
    x1 = sysm.primary.q1("SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")
    out["primary_xacts_per_s"] = round((x1 - x0 - 2) / out["seconds"], 2)  # less our own two
    return out


def phase_cpu_one(sysm, args, ctx):
    samples = ctx["sample_slots"]
    state = {"i": 0}

    def step(cur):
        cur.execute("INSERT INTO t (v) VALUES ('one per second')")
        cur.execute("SELECT pg_replication_slot_advance(%s, pg_current_wal_lsn())",
                    (samples[state["i"] % len(samples)],))
        state["i"] += 1
        return 1
    mover = Repeater(sysm.primary, step, 1.0)
    mover.start()
    # steady state first: core's worker may be in a long nap after idling
    t = time.monotonic()
    sysm.wait(lambda: mover.count >= 1 or mover.error, 10, 0.05)
    first = sysm.primary.q1("SELECT confirmed_flush_lsn FROM pg_replication_slots "
                            "WHERE slot_name = %s", (samples[0],))
    sysm.wait(lambda: sysm.standby.q1("SELECT count(*) FROM pg_replication_slots WHERE "
                                      "slot_name = %s AND confirmed_flush_lsn >= %s::pg_lsn",
                                      (samples[0], first)) == 1, 90, 0.1)
    time.sleep(2)
    warmup = time.monotonic() - t
    w = bl.CpuWindow(sysm)
    time.sleep(args.cpu_seconds)
    out = w.stop()
    mover.finish()
    out["moves"] = mover.count
    out["warmup_s"] = round(warmup, 1)
    out["error"] = mover.error
    return out


def gaps(n, max_idle, seed):
    g = [max_idle * (i + 1) / n for i in range(n)]
    random.Random(seed).shuffle(g)
    return g


def lag_phase(sysm, args, ctx, nsamples, between, label, move=None, slots=None, tick=None):
    probe = LagProbe(sysm, ctx["poll_ms"])
    rnd = random.Random(args.seed)
    lags, own, primary = [], [], []
    try:
        for i in range(nsamples):
            between(i)
            slot = rnd.choice(slots or ctx["sample_slots"])
            a, b, c = probe.sample(slot, move=move, tick=tick)
            lags.append(a)
            own.append(b)
            if c is not None:
                primary.append(c)
            if label == "idle" or args.verbose:
                bl.log("%s %d %s sample %d (%s): %s ms, after WAL %s ms%s"
                       % (sysm.kind, sysm.nslots, label, i, slot, bl.fmt_ms(a), bl.fmt_ms(b),
                          "" if c is None else ", primary showed it after %s ms" % bl.fmt_ms(c)))
    finally:
        probe.close()
    out = {"lag": lags, "after_wal": own, "summary": bl.summary(lags),
           "summary_after_wal": bl.summary(own), "slow_samples": probe.stalls}
    if primary:
        out["primary_shows"] = primary
        out["summary_primary_shows"] = bl.summary(primary)
    return out


def phase_idle(sysm, args, ctx):
    n = ctx["idle_samples"]
    g = gaps(n, args.max_idle, args.seed)
    m = bl.MachineWindow()
    out = lag_phase(sysm, args, ctx, n, lambda i: time.sleep(g[i]), "idle")
    out["gaps_s"] = g
    out["machine"] = m.stop()
    return out


def phase_load_one(sysm, args, ctx):
    load = Repeater(sysm.primary, insert_rows(50), 0.005)
    load.start()
    time.sleep(1)
    w = bl.CpuWindow(sysm)
    rnd = random.Random(args.seed + 1)
    out = lag_phase(sysm, args, ctx, ctx["load_samples"],
                    lambda i: time.sleep(rnd.uniform(0, 0.1)), "load_one")
    out["cpu"] = w.stop()
    out["machine"] = out["cpu"]["machine"]
    load.finish()
    out["load_rows_per_s"] = round(load.count / out["cpu"]["seconds"])
    out["error"] = load.error
    return out


def phase_load_all(sysm, args, ctx):
    others = [n for n in ctx["names"] if n not in set(ctx["sample_slots"])]
    load = Repeater(sysm.primary, insert_rows(1), 0.01)
    mover = Mover(sysm.primary, others)
    load.start()
    mover.start()
    # every slot has moved once before the first sample (bounded)
    sysm.wait(lambda: mover.rounds >= 1 or mover.error, 300, 0.1)
    moves0, t0 = mover.moves, time.monotonic()
    w = bl.CpuWindow(sysm)
    rnd = random.Random(args.seed + 2)
    out = lag_phase(sysm, args, ctx, ctx["load_samples"],
                    lambda i: time.sleep(rnd.uniform(0, 0.1)), "load_all")
    out["cpu"] = w.stop()
    out["machine"] = out["cpu"]["machine"]
    dt = time.monotonic() - t0
    moves = mover.moves - moves0
    mover.finish()
    load.finish()
    out["slot_moves_per_s"] = round(moves / dt, 1)
    out["round_s"] = bl.summary(mover.round_times)
    out["error"] = mover.error or load.error
    return out


def walsender_slots(ctx):
    """Up to 4 of the sample slots, spread like them: one walsender each
    stays open through the phase, and max_wal_senders is 10 (one is the
    standby's)."""
    s = ctx["sample_slots"]
    m = min(4, len(s))
    return [s[i * len(s) // m] for i in range(m)]


def phase_walsender(sysm, args, ctx):
    consumers = WalsenderConsumers(sysm)
    slots = walsender_slots(ctx)
    try:
        for slot in slots:   # connected and streaming before the first sample
            consumers.drain(consumers.cursor(slot))
        time.sleep(1)
        m = bl.MachineWindow()
        rnd = random.Random(args.seed + 3)
        out = lag_phase(sysm, args, ctx, ctx["load_samples"],
                        lambda i: time.sleep(rnd.uniform(0.05, args.move_gap)), "walsender",
                        move=consumers.move, slots=slots, tick=consumers.drain_all)
    finally:
        consumers.close()
    out["machine"] = m.stop()
    out["slots"] = slots
    return out


def phase_sql_decoding(sysm, args, ctx):
    m = bl.MachineWindow()
    rnd = random.Random(args.seed + 4)
    out = lag_phase(sysm, args, ctx, ctx["load_samples"],
                    lambda i: time.sleep(rnd.uniform(0.05, args.move_gap)), "sql_decoding",
                    move=LagProbe.move_by_sql_decoding)
    out["machine"] = m.stop()
    return out


PHASE_FUNCS = {"cpu_idle": phase_cpu_idle, "cpu_one": phase_cpu_one, "idle": phase_idle,
               "walsender": phase_walsender, "sql_decoding": phase_sql_decoding,
               "load_one": phase_load_one, "load_all": phase_load_all}


def run_one(kind, bindir, args, base, port, nslots, run_id):
    path = bl.result_path(args.out, "scale", kind, nslots, run_id)
    small = nslots <= 1000
    ctx = {"names": ["b%d" % i for i in range(nslots)],
           "idle_samples": args.idle_samples or (8 if small else 4),
           "load_samples": args.load_samples or (60 if small else 30)}
    k = max(2, min(10, nslots // 10))   # the others move in load_all
    ctx["sample_slots"] = ["b%d" % (i * nslots // k) for i in range(k)]
    res = {"bench": "scale", "kind": kind, "slots": nslots, "run_id": run_id,
           "version": bl.server_version(bindir), "complete": False, "label": args.label,
           "code": bl.code_identity(args.pg15_bin) if kind == "pg_slotsync" else None,
           "params": {"cpu_seconds": args.cpu_seconds, "max_idle": args.max_idle,
                      "idle_samples": ctx["idle_samples"], "load_samples": ctx["load_samples"],
                      "poll_ms": args.poll_ms, "phases": args.phases, "seed": args.seed},
           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "phases": {}}
    sysm = bl.System(kind, bindir, base, port, nslots)
    try:
        t = time.monotonic()
        sysm.init_primary()
        sysm.standby_by_copy_stopped()
        sysm.standby.start()
        if not sysm.wait(lambda: sysm.standby.q1("SELECT count(*) FROM pg_stat_wal_receiver") == 1,
                         60):
            raise RuntimeError("the standby does not stream")
        time.sleep(2)
        sysm.create_slots_by_copy(ctx["names"])
        res["setup"] = {"kicks": make_ready(sysm, ctx["names"])}
        res["setup"]["seconds"] = round(time.monotonic() - t, 1)
        time.sleep(args.settle)
        probe = LagProbe(sysm, args.poll_ms)
        cost = probe.poll_cost(ctx["sample_slots"][0])
        probe.close()
        ctx["poll_ms"] = max(args.poll_ms, round(2000 * cost, 1))
        res["setup"].update(poll_cost_ms=round(cost * 1000, 2), poll_ms_used=ctx["poll_ms"])
        bl.log("%s %d slots ready after %.0f s (%d kicks); lag polls every %.1f ms (a poll: %.2f ms)"
               % (kind, nslots, res["setup"]["seconds"], res["setup"]["kicks"], ctx["poll_ms"],
                  cost * 1000))
        bl.save(path, res)
        for ph in PHASES:
            if ph not in args.phases.split(","):
                continue
            t = time.monotonic()
            res["phases"][ph] = PHASE_FUNCS[ph](sysm, args, ctx)
            res["phases"][ph]["wall_s"] = round(time.monotonic() - t, 1)
            bl.log("%s %d %s: %s" % (kind, nslots, ph, short(res["phases"][ph])))
            bl.save(path, res)
        res["complete"] = True
        bl.save(path, res)
    finally:
        sysm.stop()
        if args.keep_logs:
            for n in (sysm.standby, sysm.primary):
                if os.path.exists(n.logfile):
                    shutil.copy(n.logfile, path[:-5] + "-" + n.name + ".log")
    return res


def short(ph):
    if "summary" in ph:
        s = ph["summary"]
        return "lag p50/p90/p99 %s/%s/%s ms (n=%d)" % (bl.fmt_ms(s["p50"]), bl.fmt_ms(s["p90"]),
                                                      bl.fmt_ms(s["p99"]), s["n"])
    return "cpu standby worker %s %%, primary backend %s %%; machine busy %s %%" % (
        ph.get("standby_worker"), ph.get("primary_backend"), ph["machine"]["busy_pct"])


def cmd_run(args):
    bl.run_every_pair(args, "scale", run_one)
    cmd_report(args)


# ------------------------------------------------------------------ report

def label(kind, results):
    if kind == "pg_slotsync":
        return "pg_slotsync (15)"
    vers = sorted({r["version"] for r in results if r["kind"] == "core"})
    return "core " + "/".join(vers)


def median(v):
    v = sorted(x for x in v if x is not None)
    if not v:
        return None
    h = len(v) // 2
    return v[h] if len(v) % 2 else (v[h - 1] + v[h]) / 2


def runs_of(results, kind, n, phase):
    return [r["phases"][phase] for r in results
            if r["kind"] == kind and r["slots"] == n and phase in r["phases"]]


def lag_cells(runs, key="summary"):
    if not runs:
        return "-", "-", None
    s = [r[key] for r in runs]
    p = {q: median([x[q] for x in s]) for q in ("p50", "p90", "p99")}
    trip = "%s / %s / %s" % tuple(bl.fmt_ms(p[q]) for q in ("p50", "p90", "p99"))
    n = "%d" % s[0]["n"] if len(s) == 1 else "%d runs x %s" % (len(s), "/".join(
        str(x["n"]) for x in s))
    if len(s) > 1:
        lo = min(x["p99"] for x in s)
        hi = max(x["p99"] for x in s)
        n += ", p99 %s-%s" % (bl.fmt_ms(lo), bl.fmt_ms(hi))
    # p99 of 60 samples is the second largest: say when some took over a second
    slow = [v for r in runs if key == "summary" for v in r.get("lag", []) if v > 1.0]
    if slow:
        n += "; %d over 1 s, max %s" % (len(slow), bl.fmt_ms(max(slow)))
    return trip, n, p["p99"]


def busy(runs):
    b = [r["machine"]["busy_pct"] for r in runs if r.get("machine")]
    if not b:
        return "-"
    return "%.0f" % b[0] if len(b) == 1 else "%.0f-%.0f" % (min(b), max(b))


LAG_TITLES = {
    "idle": "Sync lag after idle gaps (up to --max-idle s), ms",
    "walsender": "Sync lag of a move confirmed by a logical walsender consumer "
                 "(from the feedback sent), ms",
    "sql_decoding": "Sync lag of a move by pg_logical_slot_get_changes() "
                    "(from its return), ms",
    "load_one": "Sync lag under an insert load, one slot moving, ms",
    "load_all": "Sync lag while every slot moves (light insert load), ms",
}


def report_lag(results, phase, key, sizes, out):
    title = LAG_TITLES[phase] + (" (after the standby received the WAL)"
                                 if key == "summary_after_wal" else "")
    head = len(out)
    out.append("\n#### %s\n" % title)
    extra = " | slot moves/s ours / core" if phase == "load_all" else ""
    out.append("| slots | %s p50 / p90 / p99 | samples | %s p50 / p90 / p99 | samples | p99 ratio "
               "| machine busy %% ours / core%s |" % (label("pg_slotsync", results),
                                                      label("core", results), extra))
    out.append("| --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if extra else ""))
    for n in sizes:
        a = runs_of(results, "pg_slotsync", n, phase)
        b = runs_of(results, "core", n, phase)
        if not a and not b:
            continue
        ta, na, pa = lag_cells(a, key)
        tb, nb, pb = lag_cells(b, key)
        ratio = "%.3f" % (pa / pb) if pa is not None and pb not in (None, 0) else "-"
        row = "| %d | %s | %s | %s | %s | %s | %s / %s |" % (n, ta, na, tb, nb, ratio, busy(a),
                                                             busy(b))
        if extra:
            row += " %s / %s |" % tuple("/".join("%.0f" % r["slot_moves_per_s"] for r in x) or "-"
                                        for x in (a, b))
        out.append(row)
    if len(out) == head + 3:   # no phase measured: no table
        del out[head:]


def cpu_cell(runs, key):
    v = [r[key] for r in runs if r.get(key) is not None]
    if not v:
        return "-"
    m = median(v)
    return "%.2f" % m if len(v) == 1 else "%.2f (%.2f-%.2f)" % (m, min(v), max(v))


def report_cpu(results, sizes, out, who, title):
    head = len(out)
    out.append("\n#### %s, %% of one core\n" % title)
    out.append("| slots | %s idle | %s 1 move/s | %s idle | %s 1 move/s | ours under load "
               "(one / all moving) | core under load (one / all moving) | machine busy %% |"
               % ((label("pg_slotsync", results),) * 2 + (label("core", results),) * 2))
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        cells = []
        for kind in ("pg_slotsync", "core"):
            for ph in ("cpu_idle", "cpu_one"):
                cells.append(cpu_cell(runs_of(results, kind, n, ph), who))
        for kind in ("pg_slotsync", "core"):
            cells.append(" / ".join(cpu_cell([r["cpu"] for r in runs_of(results, kind, n, ph)],
                                             who) for ph in ("load_one", "load_all")))
        allruns = [r for k in ("pg_slotsync", "core") for ph in ("cpu_idle", "cpu_one")
                   for r in runs_of(results, k, n, ph)]
        if all(c in ("-", "- / -") for c in cells):
            continue
        out.append("| %d | %s | %s |" % (n, " | ".join(cells), busy(allruns)))
    if len(out) == head + 3:
        del out[head:]


PLOT_NAMES = {"idle": "idle gaps", "walsender": "walsender moves", "sql_decoding": "SQL decoding",
              "load_one": "one moving", "load_all": "all moving"}


def lag_plot_command():
    """gnuplot's plot of scale-lag.dat: a line per system and lag phase,
    columns in LAG_PHASES order, ours then core (dashed)."""
    lines = []
    for k, kind in enumerate(("pg_slotsync", "core")):
        for i, ph in enumerate(LAG_PHASES):
            col = 2 + k * len(LAG_PHASES) + i
            lines.append('%s u 1:%d w lp lw 2 %spt %d lc %d t "%s %s"' % (
                '"scale-lag.dat"' if col == 2 else '""', col, "dt 2 " if k else "",
                (5, 7, 9, 11, 13)[i] - k, i + 1, kind, PLOT_NAMES[ph]))
    return "plot " + ", \\\n     ".join(lines)


def write_plots(results, sizes, plot_dir):
    if not bl.ensure_gnuplot():
        return None
    os.makedirs(plot_dir, exist_ok=True)
    lagdat = os.path.join(plot_dir, "scale-lag.dat")
    cpudat = os.path.join(plot_dir, "scale-cpu.dat")
    with open(lagdat, "w") as f:
        f.write("# slots, p99 lag in ms: ours %s; core the same ('-' = not measured)\n"
                % ", ".join(LAG_PHASES))
        for n in sizes:
            row = [str(n)]
            for kind in ("pg_slotsync", "core"):
                for ph in LAG_PHASES:
                    p = lag_cells(runs_of(results, kind, n, ph))[2]
                    row.append("-" if p is None or p == float("inf") else "%.2f" % (p * 1000))
            f.write(" ".join(row) + "\n")
    with open(cpudat, "w") as f:
        f.write("# slots, %% of one core: ours primary idle, 1/s, standby idle, 1/s; "
                "core the same\n")
        for n in sizes:
            row = [str(n)]
            for kind in ("pg_slotsync", "core"):
                for who in ("primary_backend", "standby_worker"):
                    for ph in ("cpu_idle", "cpu_one"):
                        v = median([r.get(who) for r in runs_of(results, kind, n, ph)])
                        row.append("-" if v is None else "%.3f" % v)
            f.write(" ".join(row) + "\n")
    gp = os.path.join(plot_dir, "scale.gp")
    with open(gp, "w") as f:
        f.write("""# made by bench/scale_bench.py report; run: gnuplot scale.gp (in this directory)
set terminal svg size 860,480 dynamic font "sans,11"
set datafile missing "-"
set logscale xy
set xlabel "failover slots"
set key outside right
set grid
set xtics (10, 100, 1000, 5000)
set output "scale-lag.svg"
set ylabel "sync lag p99, ms"
%s
set output "scale-cpu.svg"
set ylabel "%% of one core"
set logscale y
plot "scale-cpu.dat" u 1:($2>0?$2:0.001) w lp lw 2 pt 7 lc 1 t "pg_slotsync primary, idle", \\
     "" u 1:($3>0?$3:0.001) w lp lw 2 pt 5 lc 2 t "pg_slotsync primary, 1 move/s", \\
     "" u 1:($4>0?$4:0.001) w lp lw 2 pt 9 lc 3 t "pg_slotsync standby, idle", \\
     "" u 1:($5>0?$5:0.001) w lp lw 2 pt 11 lc 4 t "pg_slotsync standby, 1 move/s", \\
     "" u 1:($6>0?$6:0.001) w lp lw 2 dt 2 pt 6 lc 1 t "core primary, idle", \\
     "" u 1:($7>0?$7:0.001) w lp lw 2 dt 2 pt 4 lc 2 t "core primary, 1 move/s", \\
     "" u 1:($8>0?$8:0.001) w lp lw 2 dt 2 pt 8 lc 3 t "core standby, idle", \\
     "" u 1:($9>0?$9:0.001) w lp lw 2 dt 2 pt 10 lc 4 t "core standby, 1 move/s"
""" % lag_plot_command())
    r = subprocess.run(["gnuplot", "scale.gp"], cwd=plot_dir, capture_output=True, text=True)
    if r.returncode != 0:
        bl.log("gnuplot failed: " + r.stderr.strip())
        return None
    return plot_dir


def cmd_report(args):
    results = bl.load_results(args.out, "scale")
    if not results:
        print("no results in %s" % args.out)
        return
    sizes = sorted({r["slots"] for r in results})
    out = ["\n### Sync lag and CPU against the number of failover slots (scale_bench.py)\n"]
    commits = sorted({(r.get("code") or {}).get("commit") or "?" for r in results
                      if r["kind"] == "pg_slotsync"})
    out.append("pg_slotsync commit %s; runs %s; %s.\n" % (
        ", ".join(c[:12] for c in commits), ", ".join(sorted({r["run_id"] for r in results})),
        "; ".join("%s %d: %s" % (r["kind"], r["slots"], "complete" if r.get("complete")
                                 else "partial (%s)" % ",".join(r["phases"]))
                  for r in sorted(results, key=lambda r: (r["slots"], r["kind"]))
                  if not r.get("complete"))
        or "every run complete"))
    for ph in LAG_PHASES:
        report_lag(results, ph, "summary", sizes, out)
    # walsender and sql_decoding move a slot over WAL that was flushed before
    # t0 and is on the standby at the first poll: "after WAL" says nothing there
    out.append("\n#### The same, counted from when the standby had received the WAL: "
               "p50 / p90 / p99, ms\n")
    out.append("| slots | phase | %s | %s |" % (label("pg_slotsync", results),
                                              label("core", results)))
    out.append("| --- | --- | --- | --- |")
    head = len(out) - 4
    for n in sizes:
        for ph in ("idle", "load_one", "load_all"):
            a = lag_cells(runs_of(results, "pg_slotsync", n, ph), "summary_after_wal")[0]
            b = lag_cells(runs_of(results, "core", n, ph), "summary_after_wal")[0]
            if a != "-" or b != "-":
                out.append("| %d | %s | %s | %s |" % (n, ph, a, b))
    if len(out) == head + 4:
        del out[head:]
    rows = [(n, [lag_cells(runs_of(results, k, n, "walsender"), "summary_primary_shows")[0]
                 for k in ("pg_slotsync", "core")]) for n in sizes]
    rows = [(n, c) for n, c in rows if c != ["-", "-"]]
    if rows:
        out.append("\n#### Walsender moves: from the feedback sent until the primary's "
                   "pg_replication_slots showed it (part of the walsender lag): "
                   "p50 / p90 / p99, ms\n")
        out.append("| slots | %s | %s |" % (label("pg_slotsync", results), label("core", results)))
        out.append("| --- | --- | --- |")
        for n, c in rows:
            out.append("| %d | %s | %s |" % (n, c[0], c[1]))
    report_cpu(results, sizes, out, "primary_backend",
               "Primary-side CPU of the backend serving the standby's sync")
    report_cpu(results, sizes, out, "standby_worker", "CPU of the standby's sync worker")
    out.append("\n#### Idle transactions per second on the primary, and setup\n")
    out.append("| slots | system | xacts/s idle | lag poll interval | one poll | setup |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        for kind in ("pg_slotsync", "core"):
            rs = [r for r in results if r["kind"] == kind and r["slots"] == n and "setup" in r]
            if not rs:
                continue
            x = [r["phases"]["cpu_idle"]["primary_xacts_per_s"] for r in rs
                 if "cpu_idle" in r["phases"]]
            out.append("| %d | %s | %s | %s ms | %s ms | %s |" % (
                n, label(kind, results), "/".join("%.1f" % v for v in x) or "-",
                "/".join(str(r["setup"]["poll_ms_used"]) for r in rs),
                "/".join(str(r["setup"]["poll_cost_ms"]) for r in rs),
                "/".join("%.0f s, %d kicks" % (r["setup"]["seconds"], r["setup"]["kicks"])
                         for r in rs)))
    text = "\n".join(out) + "\n"
    print(text)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(text)
    if args.plot_dir:
        d = write_plots(results, sizes, args.plot_dir)
        if d:
            print("plots: %s/scale-lag.svg, %s/scale-cpu.svg" % (d, d))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="measure, then print the report")
    bl.add_system_args(r, "10,100,1000,5000")
    r.add_argument("--phases", default=",".join(PHASES))
    r.add_argument("--idle-samples", type=int, default=0,
                   help="default 8, 4 above 1000 slots")
    r.add_argument("--load-samples", type=int, default=0,
                   help="per load phase, walsender and sql_decoding; default 60, 30 above 1000 slots")
    r.add_argument("--max-idle", type=float, default=60)
    r.add_argument("--cpu-seconds", type=float, default=30)
    r.add_argument("--poll-ms", type=float, default=2)
    r.add_argument("--move-gap", type=float, default=1.0,
                   help="walsender and sql_decoding: pause before each sample, uniform "
                        "over (0.05, this) s")
    r.add_argument("--settle", type=float, default=5, help="idle seconds after setup")
    r.add_argument("--seed", type=int, default=13)
    r.add_argument("--port", type=int, default=56200)
    r.add_argument("--label", default="", help="free text stored with the results")
    r.add_argument("--out", default="/tmp/slotsync_bench/scale")
    r.add_argument("--plot-dir", help="also write the plots here (with the report)")
    r.add_argument("--skip-done", action="store_true",
                   help="skip system/slot-count pairs with a complete result in --out")
    r.add_argument("--keep-going", action="store_true", help="go on after a failed pair")
    r.add_argument("--keep-logs", action="store_true", help="keep the server logs in --out")
    r.add_argument("--verbose", action="store_true", help="log every sample")
    rep = sub.add_parser("report", help="Markdown tables (and plots) from the results in --out")
    rep.add_argument("--out", default="/tmp/slotsync_bench/scale")
    rep.add_argument("--plot-dir", help="write scale-lag.svg and scale-cpu.svg here")
    args = ap.parse_args()
    if args.cmd == "run":
        cmd_run(args)
    else:
        cmd_report(args)


if __name__ == "__main__":
    main()
