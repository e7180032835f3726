"""The checks the chaos harness makes after every cycle, as a part of the
Harness class (chaos.py).  See docs/reliability.md."""
import re

from chaos_cluster import LOGICAL_SLOTS, SUB_DBS, WAIT_S, wait_until


class Checks:
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
        seen, dup, redelivered = set(), 0, 0
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
        # transient slots (a copy being made) get 60 s to settle; a planted
        # leak (--inject leak) never does, so the self-test need not wait
        wait_until(clean, 5 if "leak" in (self.args.inject or []) else 60, 0.5)
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
