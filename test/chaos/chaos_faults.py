"""The faults of the chaos harness and the failover procedure, as a part
of the Harness class (chaos.py).  See docs/reliability.md."""
import os
import signal
import threading
import time

from chaos_cluster import LOGICAL_SLOTS, SUB_DBS, WAIT_S, WAL_SENDER_TIMEOUT_S, HarnessError, log, wait_until


class Faults:
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
