#!/usr/bin/env bash
# What pg_slotsync.synchronized_standby_slots costs a consumer of a failover
# slot while the standby keeps up: decoded changes per second and delivery
# latency, with the gate off (empty list) and on (the standby's slot
# listed), measured in one run on the same primary, standby and slot, the
# modes interleaved.  Prints each measurement and the on/off ratios.
#
#   bench/gate_cost.sh [--rows N] [--rounds R] [--seconds S] [--rate TPS]
#
#   --rows     rows in the backlog decoded by the throughput rounds (400000)
#   --rounds   throughput rounds per mode (7; the median is reported)
#   --seconds  length of each live-load phase (10)
#   --rate     transactions per second of the latency phase (200)
#
# Throughput: a backlog of --rows single-row changes (in transactions of
# 1000 rows) that the standby already has is decoded by pg_recvlogical
# (walsender) and by pg_logical_slot_peek_changes (SQL), timed, and the CPU
# time of the decoding process read from /proc.  This is the gate's own
# overhead: nothing is ever waited for.  On a busy machine both times
# follow other load; if perf can sample our processes, the share of the
# decoding process's CPU samples that fall in pg_slotsync.so is reported
# too, which does not.
# Live load: pgbench inserts unthrottled for --seconds while pg_recvlogical
# streams; reported is the rate at which changes reached the consumer,
# load start to last change received.
# Latency: pgbench inserts one row per transaction at --rate for --seconds;
# for each commit, the time from its commit timestamp to its arrival at
# pg_recvlogical (p50/p95/p99).  With the gate on this includes the
# standby's flush and reply, which is what the feature is for.
#
# Needs PostgreSQL 15 with pg_slotsync installed (make install), pgbench,
# pg_recvlogical and perl.  Run as an unprivileged user (as root it re-runs
# itself as postgres).  Uses ports PORT_BASE and PORT_BASE+1 (55600).
set -euo pipefail

if [ "$(id -u)" = 0 ]; then
	exec runuser -u postgres -- "$0" "$@"
fi

rows=400000
rounds=7
seconds=10
rate=200
while [ $# -gt 0 ]; do
	case "$1" in
		--rows) rows=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--seconds) seconds=$2; shift 2 ;;
		--rate) rate=$2; shift 2 ;;
		*) echo "usage: $0 [--rows N] [--rounds R] [--seconds S] [--rate TPS]" >&2; exit 2 ;;
	esac
done

bindir=$(pg_config --bindir)
export PATH="$bindir:$PATH"
port_p=${PORT_BASE:-55600}
port_s=$((port_p + 1))
work=$(mktemp -d /tmp/gate_cost.XXXXXX)
sock=$work/sock
mkdir -p "$sock"

cleanup()
{
	pg_ctl -D "$work/standby" -m immediate stop >/dev/null 2>&1 || true
	pg_ctl -D "$work/primary" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

psql_p() { psql -h "$sock" -p "$port_p" -d postgres -XAtq "$@"; }
now_ms() { date +%s%3N; }

# --- setup: primary, physical standby on slot sb1, failover slot "bench" ---
initdb -D "$work/primary" -A trust >/dev/null
cat >>"$work/primary/postgresql.conf" <<EOF
port = $port_p
unix_socket_directories = '$sock'
listen_addresses = ''
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
shared_preload_libraries = 'pg_slotsync'
timezone = 'UTC'
log_min_messages = warning
EOF
pg_ctl -D "$work/primary" -l "$work/primary.log" -w start >/dev/null
psql_p -c "CREATE EXTENSION pg_slotsync" \
	-c "SELECT pg_create_physical_replication_slot('sb1')" >/dev/null
pg_basebackup -h "$sock" -p "$port_p" -D "$work/standby" -S sb1 -X stream -R
cat >>"$work/standby/postgresql.conf" <<EOF
port = $port_s
EOF
pg_ctl -D "$work/standby" -l "$work/standby.log" -w start >/dev/null
psql_p -c "CREATE TABLE t (id bigserial PRIMARY KEY, v int)" \
	-c "SELECT pg_slotsync.create_logical_replication_slot('bench', 'test_decoding', failover => true)" >/dev/null
echo "INSERT INTO t (v) VALUES (1);" >"$work/insert.sql"

set_gate()
{
	local value=$1
	psql_p -c "ALTER SYSTEM SET pg_slotsync.synchronized_standby_slots = '$value'" \
		-c "SELECT pg_reload_conf()" >/dev/null
	until [ "$(psql_p -c "SHOW pg_slotsync.synchronized_standby_slots")" = "$value" ]; do
		sleep 0.05
	done
}

wait_standby()
{
	local lsn
	lsn=$(psql_p -c "SELECT pg_current_wal_flush_lsn()")
	until [ "$(psql_p -c "SELECT restart_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = 'sb1'")" = t ]; do
		sleep 0.05
	done
}

# consume everything so far, so that each measurement starts clean
drain()
{
	set_gate ''
	psql_p -c "SELECT count(*) FROM pg_logical_slot_get_changes('bench', NULL, NULL)" >/dev/null
}

make_backlog()
{
	# single-row inserts, in transactions of 1000 rows
	psql_p -c "TRUNCATE t" >/dev/null
	drain
	psql_p <<EOF >/dev/null
DO \$\$
BEGIN
	FOR i IN 1..$((rows / 1000)) LOOP
		INSERT INTO t (v) SELECT 1 FROM generate_series(1, 1000);
		COMMIT;
	END LOOP;
END
\$\$;
EOF
	wait_standby
}

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# CPU ticks (user + system) a process has used, into $ticks; false once
# the process is gone.  No fork: this runs every few milliseconds.
read_ticks()
{
	local f
	read -r -a f 2>/dev/null <"/proc/$1/stat" || return 1
	ticks=$((f[13] + f[14]))
}

# If perf may sample our processes, sample the decoding process and report
# the share of its CPU time spent in pg_slotsync.so: a measure of the gate's
# own cost that, unlike times, does not depend on what else the machine
# runs.
use_perf=0
if command -v perf >/dev/null 2>&1 &&
	perf record -e cpu-clock -o "$work/probe.data" true >/dev/null 2>&1; then
	use_perf=1
fi

# Run a command in the background; find the server process doing the work
# with the given query, and follow its CPU time until it exits.  Prints
# "wall_ms cpu_ms share", share being the percentage of the process's
# samples in pg_slotsync.so ("-" without perf).
run_measured()
{
	local find=$1
	shift
	local t0 t1 pid="" ticks=0 perfpid="" share="-"
	t0=$(now_ms)
	"$@" >"$work/measured.out" &
	local cmd=$!
	while [ -z "$pid" ] && kill -0 $cmd 2>/dev/null; do
		pid=$(psql_p -c "$find")
	done
	if [ -n "$pid" ] && [ $use_perf = 1 ]; then
		perf record -q -e cpu-clock -F 4000 -p "$pid" -o "$work/perf.data" >/dev/null 2>&1 &
		perfpid=$!
	fi
	while [ -n "$pid" ] && read_ticks "$pid"; do
		sleep 0.002
	done
	wait $cmd
	t1=$(now_ms)
	if [ -n "$perfpid" ]; then
		wait $perfpid || true
		share=$(perf report -i "$work/perf.data" --sort dso --stdio -q 2>/dev/null |
			awk '/pg_slotsync/ {gsub("%", "", $1); s += $1} END {printf "%.2f", s}')
	fi
	echo "$((t1 - t0)) $((ticks * 1000 / $(getconf CLK_TCK))) $share"
}

per_sec() { awk -v n="${1:-0}" -v ms="${2:-0}" 'BEGIN {printf "%d", (ms > 0 ? n * 1000 / ms : 0)}'; }

# --- throughput over a backlog the standby already has ---
# One backlog, decoded again and again: by peek (which does not consume) and
# by pg_recvlogical from a fresh copy of the slot each time.  The modes are
# interleaved, in alternating order, to cancel drift on a busy machine.
make_backlog
end=$(psql_p -c "SELECT pg_current_wal_flush_lsn()")
declare -A ws_wall ws_cpu ws_share sql_wall sql_cpu sql_share
for ((r = 1; r <= rounds; r++)); do
	if ((r % 2)); then order="off on"; else order="on off"; fi
	for mode in $order; do
		[ $mode = on ] && set_gate sb1 || set_gate ''

		# the sleep lets perf attach before decoding starts; psql times the
		# decoding alone
		read -r wall cpu ins < <(run_measured \
			"SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep(0.2)%' AND pid <> pg_backend_pid()" \
			psql_p -c "SELECT pg_sleep(0.2)" -c '\timing on' \
			-c "SELECT count(*) FROM pg_logical_slot_peek_changes('bench', '$end', NULL)")
		wall=$(awk '/^Time:/ {ms = $2} END {printf "%d", ms}' "$work/measured.out")
		sql_wall[$mode]+=" $(per_sec $rows $wall)"
		sql_cpu[$mode]+=" $(per_sec $rows $cpu)"
		sql_share[$mode]+=" $ins"
		line="SQL $(per_sec $rows $wall) changes/s ($(per_sec $rows $cpu) per CPU s, $ins% in pg_slotsync)"

		psql_p -c "SELECT pg_copy_logical_replication_slot('bench', 'bench_copy')" \
			-c "SELECT pg_slotsync.alter_replication_slot('bench_copy', true)" >/dev/null
		read -r wall cpu ins < <(run_measured \
			"SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'bench_copy' AND active" \
			pg_recvlogical -h "$sock" -p "$port_p" -d postgres -S bench_copy --start \
			-E "$end" -f /dev/null -s 1)
		psql_p -c "SELECT pg_drop_replication_slot('bench_copy')" >/dev/null
		ws_wall[$mode]+=" $(per_sec $rows $wall)"
		ws_cpu[$mode]+=" $(per_sec $rows $cpu)"
		ws_share[$mode]+=" $ins"
		echo "round $r gate $mode: walsender $(per_sec $rows $wall) changes/s ($(per_sec $rows $cpu) per CPU s, $ins% in pg_slotsync), $line"
	done
done

# --- live load and latency, each with a streaming consumer ---
cat >"$work/latency.pl" <<'EOF'
use strict;
use warnings;
use Time::HiRes qw(time);
use Time::Local qw(timegm);
my (@lat, $changes, $first, $last);
$| = 1;
while (my $line = <STDIN>)
{
	my $now = time();
	$first //= $now;
	$last = $now;
	if ($line =~ /^table /) { $changes++; next; }
	next unless $line =~ /^COMMIT.*\(at (\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)(\.\d+)?\+00\)/;
	my $commit = timegm($6, $5, $4, $3, $2 - 1, $1) + ($7 // 0);
	push @lat, ($now - $commit) * 1000;
}
@lat = sort { $a <=> $b } @lat;
my $pct = sub { @lat ? $lat[int($_[0] * $#lat)] : 0 };
printf "%d %d %.3f %.3f %.3f %.3f %.3f\n", scalar(@lat), $changes // 0,
  ($first // 0), ($last // 0), $pct->(0.5), $pct->(0.95), $pct->(0.99);
EOF

# run pgbench with a streaming consumer, the gate set to $1; prints the
# start time and the perl summary line
stream_phase()
{
	local gate=$1 pgbench_args=$2
	local out=$work/phase.out fifo=$work/phase.fifo
	drain
	set_gate "$gate"
	rm -f "$fifo"
	mkfifo "$fifo"
	perl "$work/latency.pl" <"$fifo" >"$out" &
	local summary=$!
	pg_recvlogical -h "$sock" -p "$port_p" -d postgres -S bench --start -f - -s 1 \
		-o include-timestamp=1 -o skip-empty-xacts=1 -o include-xids=0 \
		>"$fifo" 2>>"$work/recvlogical.log" &
	local consumer=$!
	sleep 0.5
	local t0 end
	t0=$(perl -MTime::HiRes=time -e 'printf "%.3f", time')
	pgbench -h "$sock" -p "$port_p" -n $pgbench_args -T "$seconds" -f "$work/insert.sql" postgres >/dev/null
	end=$(psql_p -c "SELECT pg_current_wal_flush_lsn()")
	until [ "$(psql_p -c "SELECT confirmed_flush_lsn >= '$end' FROM pg_replication_slots WHERE slot_name = 'bench'")" = t ]; do
		sleep 0.05
	done
	kill -INT $consumer
	wait $consumer || true
	wait $summary
	echo "$t0 $(cat "$out")"
}

declare -A live lat
for mode in off on; do
	[ $mode = on ] && gate=sb1 || gate=''
	line=$(stream_phase "$gate" "-c 4 -j 4")
	read -r t0 ncommit nchanges first last p50 p95 p99 <<<"$line"
	live[$mode]=$(awk -v n="$nchanges" -v a="$t0" -v b="$last" 'BEGIN {printf "%d", n / (b - a)}')
	echo "live load gate $mode: $nchanges changes, ${live[$mode]} changes/s reached the consumer"

	line=$(stream_phase "$gate" "-c 1 -R $rate")
	read -r t0 ncommit nchanges first last p50 p95 p99 <<<"$line"
	lat[$mode]="$p50 $p95 $p99"
	echo "latency gate $mode: $ncommit commits at $rate/s, delivery p50 $p50 ms, p95 $p95 ms, p99 $p99 ms"
done

echo
echo "== summary (gate on / gate off) =="
ratio()
{
	local what=$1 on off
	on=$(echo "$2" | median)
	off=$(echo "$3" | median)
	awk -v w="$what" -v a="$on" -v b="$off" \
		'BEGIN {printf "%-34s %8d vs %8d changes/s, ratio %.3f\n", w, a, b, (b > 0 ? a / b : 0)}'
}
ratio "backlog, walsender, per CPU s:" "${ws_cpu[on]}" "${ws_cpu[off]}"
ratio "backlog, walsender, wall clock:" "${ws_wall[on]}" "${ws_wall[off]}"
ratio "backlog, SQL, per CPU s:" "${sql_cpu[on]}" "${sql_cpu[off]}"
ratio "backlog, SQL, wall clock:" "${sql_wall[on]}" "${sql_wall[off]}"
if [ $use_perf = 1 ]; then
	for mode in on off; do
		printf "%-34s walsender %s%%, SQL %s%% of the decoding process's CPU (median)\n" \
			"in pg_slotsync.so, gate $mode:" \
			"$(echo "${ws_share[$mode]}" | median)" "$(echo "${sql_share[$mode]}" | median)"
	done
fi
ratio "live load, reaching the consumer:" "${live[on]}" "${live[off]}"
read -r on50 on95 on99 <<<"${lat[on]}"
read -r off50 off95 off99 <<<"${lat[off]}"
awk -v a="$on50" -v b="$off50" -v c="$on99" -v d="$off99" \
	'BEGIN {printf "delivery latency: p50 %.2f vs %.2f ms (ratio %.2f), p99 %.2f vs %.2f ms (ratio %.2f)\n", a, b, (b > 0 ? a / b : 0), c, d, (d > 0 ? c / d : 0)}'
