#!/usr/bin/python3
"""Ready bench (issue 12): how long after a standby starts is every failover
slot that existed before its base backup ready, with an idle primary and
idle consumers?  pg_slotsync on PostgreSQL 15 against PostgreSQL 17/18 core
(sync_replication_slots = on), one after the other in the same run.

For each system and each slot count N (--slots, e.g. 10,1000):

  1. a primary with N failover slots (test_decoding), created and consumed
     a little: rows inserted, a running-transactions record (CHECKPOINT),
     each slot advanced over part of the changes, not all;
  2. --gap-wal-mb of WAL the consumers do not read (so the slots' WAL lies
     in segments before the backup), then the primary stays idle;
  3. a base backup of the running primary without WAL
     (pg_backup_start/pg_backup_stop, as pg_basebackup -X none: the standby
     never has the WAL before the backup's start; PostgreSQL 15's
     pg_basebackup cannot back up an 18 server, so both systems use this);
  4. worker: the standby starts with sync on; measured from `pg_ctl start`:
     when it accepts connections, when the first and when every slot is
     ready (pg_slotsync: sync_state = 'ready'; core: synced AND NOT
     temporary AND invalidation_reason IS NULL), polled every --poll-ms, up
     to --cap seconds ("not ready after N s" otherwise, with how many were);
     what our standby fetched from the primary (its log lines "fetched N WAL
     segments and M logical rewrite mapping files") and how its pg_wal grew;
     and that the primary's slots did not move meanwhile;
  5. manual (--modes manual): a second standby from the same backup, sync
     off, caught up; then one call of pg_slotsync.sync_replication_slots()
     / core's pg_sync_replication_slots(), timed, and the ready count after
     it returns.

Results go to --out as JSON (one file per system, slot count and run);
`report` prints Markdown tables from every file there.  Runs may be
repeated (each adds files) and partial (--systems, --slots).

  bench/get_core_binaries.sh 18.4.0-beta.17 /tmp/pgcore/18
  bench/ready_bench.py run --core-bin /tmp/pgcore/18/package/native/bin \\
      --pg15-bin $(pg_config --bindir) --slots 10,1000 --out /tmp/ready_results
  bench/ready_bench.py report --out /tmp/ready_results

As root it runs itself again as postgres.  Needs python3-psycopg2.
"""
import argparse
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

FETCH_RE = re.compile(r"fetched (\d+) WAL segments and (\d+) logical rewrite mapping files")


def prepare_primary(sysm, args, names):
    p = sysm.primary
    t = time.monotonic()
    sysm.create_slots(names)
    create_s = time.monotonic() - t
    c = p.connect()
    cur = c.cursor()
    # consumed a little: over the first changes, not the last
    cur.execute("INSERT INTO t (v) SELECT 'before' FROM generate_series(1, 10)")
    cur.execute("CHECKPOINT")   # a running-transactions record to move restart_lsn over
    cur.execute("INSERT INTO t (v) SELECT 'consumed' FROM generate_series(1, 10)")
    cur.execute("SELECT pg_current_wal_lsn()")
    consumed_to = cur.fetchone()[0]
    cur.execute("INSERT INTO t (v) SELECT 'not consumed' FROM generate_series(1, 10)")
    sysm.advance_all(cur, names, "'%s'::pg_lsn" % consumed_to)
    # WAL nobody consumes, before the backup
    cur.execute("SELECT pg_current_wal_lsn()")
    start = cur.fetchone()[0]
    while True:
        cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (start,))
        if cur.fetchone()[0] >= args.gap_wal_mb * 1024 * 1024:
            break
        cur.execute("INSERT INTO t (v) SELECT repeat('x', 1000) FROM generate_series(1, 4000)")
    cur.execute("SELECT pg_switch_wal()")
    cur.execute("CHECKPOINT")
    c.close()
    return create_s


def primary_slot_state(sysm):
    return sysm.primary.q(
        "SELECT min(restart_lsn)::text, max(restart_lsn)::text, min(confirmed_flush_lsn)::text, "
        "max(confirmed_flush_lsn)::text, count(*) FROM pg_replication_slots WHERE slot_name ~ %s",
        (bl.SLOT_RE,))[0]


def fetched_from_log(node):
    segs = maps = lines = 0
    for m in FETCH_RE.finditer(node.log_text()):
        segs += int(m.group(1))
        maps += int(m.group(2))
        lines += 1
    return {"segments": segs, "mapping_files": maps, "log_lines": lines}


def wait_accepting(node, timeout):
    def ok():
        try:
            node.connect(timeout=2).close()
            return True
        except Exception:
            return False
    return bl.System.wait(ok, timeout, 0.02)


def not_ready_reasons(sysm):
    if sysm.ours:
        rows = sysm.standby.q("SELECT coalesce(reason_code, state), count(*) FROM "
                              "pg_slotsync.sync_status WHERE slot_name ~ %s AND state <> 'ready' "
                              "GROUP BY 1 ORDER BY 2 DESC", (bl.SLOT_RE,))
    else:
        rows = sysm.standby.q("SELECT CASE WHEN temporary THEN 'temporary' ELSE 'other' END, "
                              "count(*) FROM pg_replication_slots WHERE synced AND slot_name ~ %s "
                              "AND (temporary OR invalidation_reason IS NOT NULL) GROUP BY 1",
                              (bl.SLOT_RE,))
    return {r[0]: r[1] for r in rows}


def measure_worker(sysm, args, seg_size):
    s = sysm.standby
    res = {}
    before = primary_slot_state(sysm)
    wal0 = s.dir_bytes("pg_wal")
    machine = bl.MachineWindow()
    t0 = time.monotonic()
    s.start(wait=False)
    if not wait_accepting(s, 300):
        raise RuntimeError("the standby did not start")
    res["accepting_s"] = time.monotonic() - t0
    res["wal_bytes_at_accept"] = s.dir_bytes("pg_wal")
    first = all_ready = None
    ready = total = 0
    sql = sysm.ready_count_sql()
    conn = s.connect()
    cur = conn.cursor()
    while True:
        cur.execute(sql)
        ready, total = cur.fetchone()
        now = time.monotonic() - t0
        if ready > 0 and first is None:
            first = now
        if ready == sysm.nslots:
            all_ready = now
            break
        if now > args.cap:
            break
        time.sleep(args.poll_ms / 1000.0)
    conn.close()
    res["machine"] = machine.stop()
    res.update(first_ready_s=first, all_ready_s=all_ready, ready_at_end=ready,
               copies_at_end=total, observed_s=time.monotonic() - t0)
    if all_ready is None:
        res["not_ready_reasons"] = not_ready_reasons(sysm)
    res["wal_bytes_before_start"] = wal0
    res["wal_bytes_at_end"] = s.dir_bytes("pg_wal")
    res["mapping_files_at_end"] = len(os.listdir(os.path.join(s.datadir, "pg_logical",
                                                              "mappings")))
    res["fetched"] = fetched_from_log(s)
    res["fetched"]["bytes"] = res["fetched"]["segments"] * seg_size
    after = primary_slot_state(sysm)
    res["primary_slots_moved"] = list(before) != list(after)
    bl.log("%s %d slots, worker: accepting %.2f s, first ready %s, all ready %s (%d/%d), "
           "fetched %d segments, %d mapping files"
           % (sysm.kind, sysm.nslots, res["accepting_s"], first, all_ready, ready,
              sysm.nslots, res["fetched"]["segments"], res["fetched"]["mapping_files"]))
    return res


def measure_manual(sysm, args, datadir, seg_size):
    s2 = bl.Node("standby2", sysm.bindir, datadir, sysm.primary.port + 2, sysm.base)
    sysm.standby_conf(s2, slot="sb2_slot", sync=False)
    s2.start()
    target = sysm.primary.q1("SELECT pg_current_wal_lsn()")
    bl.System.wait(lambda: s2.q1("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                 (target,)), 120, 0.05)
    res = {}
    c = s2.connect()
    cur = c.cursor()
    call = ("SELECT pg_slotsync.sync_replication_slots(timeout => make_interval(secs => %s))"
            % int(args.cap) if sysm.ours else "SELECT pg_sync_replication_slots()")
    t0 = time.monotonic()
    try:
        cur.execute(call)
        res["error"] = None
    except Exception as e:  # a timeout or core's error: part of the result
        res["error"] = str(e).strip().splitlines()[0]
    res["call_s"] = time.monotonic() - t0
    sql = sysm.ready_count_sql()
    cur.execute(sql)
    res["ready_after_call"], res["copies_after_call"] = cur.fetchone()
    c.close()
    res["fetched"] = fetched_from_log(s2)
    res["fetched"]["bytes"] = res["fetched"]["segments"] * seg_size
    s2.stop("immediate")
    bl.log("%s %d slots, manual call: %.2f s, %d ready after it%s"
           % (sysm.kind, sysm.nslots, res["call_s"], res["ready_after_call"],
              ", error: " + res["error"] if res["error"] else ""))
    return res


def run_one(kind, bindir, args, base, port, nslots, run_id):
    res = {"bench": "ready", "kind": kind, "slots": nslots, "run_id": run_id,
           "version": bl.server_version(bindir), "complete": False,
           "params": {"cap_s": args.cap, "gap_wal_mb": args.gap_wal_mb,
                      "poll_ms": args.poll_ms, "modes": args.modes},
           "code": bl.code_identity(args.pg15_bin) if kind == "pg_slotsync" else None,
           "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = bl.result_path(args.out, "ready", kind, nslots, run_id)
    sysm = bl.System(kind, bindir, base, port, nslots)
    try:
        sysm.init_primary(physical_slots=("sb1_slot", "sb2_slot"))
        names = ["b%d" % i for i in range(nslots)]
        res["create_slots_s"] = prepare_primary(sysm, args, names)
        seg_size = int(sysm.primary.q1("SELECT setting FROM pg_settings "
                                       "WHERE name = 'wal_segment_size'"))
        st = primary_slot_state(sysm)
        res["primary_slots"] = {"restart_lsn": [st[0], st[1]], "confirmed_flush_lsn": [st[2], st[3]]}
        time.sleep(1)
        res["backup_start_lsn"] = sysm.online_backup(sysm.standby.datadir)
        res["wal_before_backup_bytes"] = int(sysm.primary.q1(
            "SELECT pg_wal_lsn_diff(%s, %s)", (res["backup_start_lsn"], st[0])))
        second = os.path.join(sysm.base, "s2")
        if "manual" in args.modes:
            bl.copy_datadir(sysm.standby.datadir, second, set(), set())
        sysm.standby_conf(sysm.standby, slot="sb1_slot", sync=True)
        time.sleep(args.settle)
        if "worker" in args.modes:
            res["worker"] = measure_worker(sysm, args, seg_size)
            bl.save(path, res)
        sysm.standby.stop("immediate")
        if "manual" in args.modes:
            res["manual"] = measure_manual(sysm, args, second, seg_size)
        res["complete"] = True
        bl.save(path, res)
    finally:
        sysm.stop()
        for n in (sysm.standby, sysm.primary):
            if os.path.exists(n.logfile) and args.keep_logs:
                shutil.copy(n.logfile, path[:-5] + "-" + n.name + ".log")
    return res


def cmd_run(args):
    bl.run_every_pair(args, "ready", run_one)
    cmd_report(args)


def spread(values, fmt):
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    v.sort()
    med = v[len(v) // 2]
    if len(v) == 1:
        return fmt(med)
    return "%s (%s-%s, %d runs)" % (fmt(med), fmt(v[0]), fmt(v[-1]), len(v))


def secs(x):
    return "%.2f s" % x if x < 10 else "%.0f s" % x


def cmd_report(args):
    results = [r for r in bl.load_results(args.out, "ready") if r.get("complete")]
    if not results:
        print("no complete results in %s" % args.out)
        return
    print("\n### Pre-existing failover slots ready after the standby starts (ready_bench.py)\n")
    commits = sorted({(r["code"] or {}).get("commit") or "?" for r in results
                      if r["kind"] == "pg_slotsync"})
    print("pg_slotsync commit: %s; runs: %s\n" % (", ".join(c[:12] for c in commits),
                                                  ", ".join(sorted({r["run_id"] for r in results}))))
    print("| slots | system | accepting connections | first slot ready | every slot ready "
          "| WAL fetched | mapping files fetched | standby pg_wal at start / at end "
          "| primary's slots moved | machine busy |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in sorted({r["slots"] for r in results}):
        for kind in ("pg_slotsync", "core"):
            rs = [r for r in results if r["slots"] == n and r["kind"] == kind and "worker" in r]
            if not rs:
                continue
            w = [r["worker"] for r in rs]
            label = "pg_slotsync (15)" if kind == "pg_slotsync" else "core " + rs[0]["version"]
            if all(x["all_ready_s"] is not None for x in w):
                every = spread([x["all_ready_s"] for x in w], secs)
            else:
                every = "; ".join("%s" % secs(x["all_ready_s"]) if x["all_ready_s"] is not None
                                  else "not ready after %.0f s (%d/%d ready)"
                                  % (x["observed_s"], x["ready_at_end"], n) for x in w)
            fetched = spread([x["fetched"]["bytes"] / 1048576.0 for x in w],
                             lambda v: "%.0f MB" % v)
            segs = spread([x["fetched"]["segments"] for x in w], lambda v: "%d segments" % v)
            maps = spread([x["fetched"]["mapping_files"] for x in w], lambda v: "%d" % v)
            walg = "; ".join("%.0f / %.0f MB" % (x["wal_bytes_at_accept"] / 1048576.0,
                                                  x["wal_bytes_at_end"] / 1048576.0) for x in w)
            moved = "yes" if any(x["primary_slots_moved"] for x in w) else "no"
            busy = "; ".join("%s %%" % x["machine"]["busy_pct"] for x in w)
            print("| %d | %s | %s | %s | %s | %s (%s) | %s | %s | %s | %s |"
                  % (n, label, spread([x["accepting_s"] for x in w], secs),
                     spread([x["first_ready_s"] for x in w], secs), every, fetched, segs, maps,
                     walg, moved, busy))
    rs = [r for r in results if "manual" in r]
    if rs:
        print("\nOne manual call on a caught-up standby with sync off "
              "(pg_slotsync.sync_replication_slots() / core's pg_sync_replication_slots()):\n")
        print("| slots | system | call took | ready after it | WAL fetched | error |")
        print("| --- | --- | --- | --- | --- | --- |")
        for n in sorted({r["slots"] for r in rs}):
            for kind in ("pg_slotsync", "core"):
                m = [r["manual"] for r in rs if r["slots"] == n and r["kind"] == kind]
                if not m:
                    continue
                label = "pg_slotsync (15)" if kind == "pg_slotsync" else "core " + \
                    [r for r in rs if r["kind"] == "core"][0]["version"]
                print("| %d | %s | %s | %s | %s | %s |"
                      % (n, label, spread([x["call_s"] for x in m], secs),
                         "; ".join("%d/%d" % (x["ready_after_call"], n) for x in m),
                         spread([x["fetched"]["bytes"] / 1048576.0 for x in m],
                                lambda v: "%.0f MB" % v),
                         "; ".join(sorted({x["error"] or "none" for x in m}))))
    gap = sorted({r["params"]["gap_wal_mb"] for r in results})
    lack = [r["wal_before_backup_bytes"] / 1048576.0 for r in results]
    print("\n--gap-wal-mb %s; WAL between the oldest slot's restart_lsn and the backup's "
          "start: %.0f-%.0f MB; cap %s s" % (",".join(str(g) for g in gap), min(lack), max(lack),
                        ",".join(str(c) for c in sorted({r["params"]["cap_s"] for r in results}))))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="measure, then print the report")
    bl.add_system_args(r, "10,1000")
    r.add_argument("--modes", default="worker,manual", help="worker, manual or both")
    r.add_argument("--cap", type=float, default=120, help="seconds to wait for readiness")
    r.add_argument("--gap-wal-mb", type=int, default=48,
                   help="WAL written after the consumers stopped, before the backup")
    r.add_argument("--poll-ms", type=float, default=20)
    r.add_argument("--settle", type=float, default=2, help="idle seconds before the start")
    r.add_argument("--port", type=int, default=56100)
    r.add_argument("--out", default="/tmp/slotsync_bench/ready")
    r.add_argument("--skip-done", action="store_true",
                   help="skip system/slot-count pairs with a complete result in --out")
    r.add_argument("--keep-logs", action="store_true", help="keep the server logs in --out")
    rep = sub.add_parser("report", help="Markdown tables from the results in --out")
    rep.add_argument("--out", default="/tmp/slotsync_bench/ready")
    args = ap.parse_args()
    if args.cmd == "run":
        cmd_run(args)
    else:
        cmd_report(args)


if __name__ == "__main__":
    main()
