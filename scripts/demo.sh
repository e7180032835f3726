#!/usr/bin/env bash
# pg_slotsync in one command: a primary, a physical standby and a logical
# subscriber on loopback under a temporary directory; a failover slot synced
# to the standby; a subscription that survives promoting the standby.
# Prints what a DBA would see in psql at each step, cleans up after itself
# (also on Ctrl-C or failure), and exits non-zero if any step does not hold.
#
#   make demo        (after scripts/setup.sh)
set -euo pipefail

BIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}

# PostgreSQL refuses to run as root: become the postgres user
# (from a copy the postgres user can read, wherever this tree lives)
if [ "$(id -u)" -eq 0 ]; then
	copy=$(mktemp "${TMPDIR:-/tmp}/pg_slotsync_demo_script.XXXXXX")
	cp "$0" "$copy"
	chmod 755 "$copy"
	status=0
	runuser -u postgres -- env PG_BINDIR="$BIN" bash "$copy" "$@" || status=$?
	rm -f "$copy"
	exit $status
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pg_slotsync_demo.XXXXXX")
PRIMARY_PORT=${DEMO_PRIMARY_PORT:-55430}
STANDBY_PORT=${DEMO_STANDBY_PORT:-$((PRIMARY_PORT + 1))}
SUBSCRIBER_PORT=${DEMO_SUBSCRIBER_PORT:-$((PRIMARY_PORT + 2))}

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }
fail() { printf '\n\033[31mDEMO FAILED: %s\033[0m\n' "$*" >&2; exit 1; }

cleanup() {
	status=$?
	for node in subscriber standby primary; do
		if [ -f "$WORK/$node/postmaster.pid" ]; then
			"$BIN/pg_ctl" -D "$WORK/$node" -m immediate -w stop >/dev/null 2>&1 || true
		fi
	done
	if [ $status -ne 0 ]; then
		for node in primary standby subscriber; do
			[ -f "$WORK/$node.log" ] && { echo "--- last lines of the $node's log:"; tail -n 15 "$WORK/$node.log"; }
		done
	fi
	rm -rf "$WORK"
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# psql on a node: show the query and its result as a DBA would see them
show() {
	local port=$1 sql=$2
	printf '\n%s=# %s\n' "$3" "$sql"
	"$BIN/psql" -X -h "$WORK" -p "$port" -d postgres -P pager=off -c "$sql"
}
val() {
	"$BIN/psql" -X -qAt -h "$WORK" -p "$1" -d postgres -c "$2"
}
# wait until a query returns t (up to 30 s)
wait_true() {
	local port=$1 sql=$2 what=$3
	for _ in $(seq 1 300); do
		[ "$(val "$port" "$sql" 2>/dev/null)" = "t" ] && return 0
		sleep 0.1
	done
	fail "$what"
}

start_node() {
	"$BIN/pg_ctl" -D "$WORK/$1" -l "$WORK/$1.log" -w start >/dev/null
}

bold "Setting up a primary, a physical standby and a subscriber in $WORK"
"$BIN/initdb" -D "$WORK/primary" -A trust --no-sync >/dev/null
cat >>"$WORK/primary/postgresql.conf" <<EOF
port = $PRIMARY_PORT
listen_addresses = ''
unix_socket_directories = '$WORK'
shared_preload_libraries = 'pg_slotsync'
wal_level = logical
max_replication_slots = 10
EOF
start_node primary
val $PRIMARY_PORT "CREATE EXTENSION pg_slotsync" >/dev/null
val $PRIMARY_PORT "SELECT pg_create_physical_replication_slot('standby1_slot')" >/dev/null
val $PRIMARY_PORT "CREATE TABLE orders (id int PRIMARY KEY, item text)" >/dev/null
say "primary on port $PRIMARY_PORT: pg_slotsync preloaded, physical slot standby1_slot for the standby"

"$BIN/pg_basebackup" -h "$WORK" -p $PRIMARY_PORT -D "$WORK/standby" -R --no-sync >/dev/null
cat >>"$WORK/standby/postgresql.auto.conf" <<EOF
port = $STANDBY_PORT
primary_conninfo = 'host=$WORK port=$PRIMARY_PORT dbname=postgres'
primary_slot_name = 'standby1_slot'
hot_standby_feedback = on
pg_slotsync.sync_replication_slots = on
EOF
start_node standby
say "standby on port $STANDBY_PORT: streaming from the primary, pg_slotsync.sync_replication_slots = on"

"$BIN/initdb" -D "$WORK/subscriber" -A trust --no-sync >/dev/null
cat >>"$WORK/subscriber/postgresql.conf" <<EOF
port = $SUBSCRIBER_PORT
listen_addresses = ''
unix_socket_directories = '$WORK'
EOF
start_node subscriber
val $SUBSCRIBER_PORT "CREATE TABLE orders (id int PRIMARY KEY, item text)" >/dev/null
say "subscriber on port $SUBSCRIBER_PORT"

bold "1. A test_decoding failover slot on the primary, synchronized to the standby"
show $PRIMARY_PORT "SELECT * FROM pg_slotsync.create_logical_replication_slot('cdc_slot', 'test_decoding', failover => true);" primary
show $PRIMARY_PORT "INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 5) g;" primary
say "a CDC consumer reads the changes on the primary:"
show $PRIMARY_PORT "SELECT data FROM pg_logical_slot_get_changes('cdc_slot', NULL, NULL);" primary
wait_true $STANDBY_PORT "SELECT sync_state = 'ready' FROM pg_slotsync.replication_slots WHERE slot_name = 'cdc_slot'" \
	"cdc_slot did not become sync-ready on the standby"
P=$(val $PRIMARY_PORT "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'cdc_slot'")
wait_true $STANDBY_PORT "SELECT confirmed_flush_lsn = '$P' FROM pg_replication_slots WHERE slot_name = 'cdc_slot'" \
	"the standby's copy did not reach the primary's position"
say "the same slot on both nodes:"
Q="SELECT slot_name, catalog_xmin, restart_lsn, confirmed_flush_lsn, failover, synced FROM pg_slotsync.replication_slots WHERE slot_name = 'cdc_slot';"
show $PRIMARY_PORT "$Q" primary
show $STANDBY_PORT "$Q" standby
[ "$(val $PRIMARY_PORT "SELECT catalog_xmin, restart_lsn, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'cdc_slot'")" = \
  "$(val $STANDBY_PORT "SELECT catalog_xmin, restart_lsn, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'cdc_slot'")" ] ||
	fail "the standby's copy differs from the primary's slot"
say "equal: after a failover the consumer resumes from the standby where it was"

bold "2. A publication and a subscription whose slot is a failover slot"
show $PRIMARY_PORT "CREATE PUBLICATION orders_pub FOR TABLE orders;" primary
show $PRIMARY_PORT "SELECT * FROM pg_slotsync.create_logical_replication_slot('orders_sub', 'pgoutput', failover => true);" primary
show $SUBSCRIBER_PORT "CREATE SUBSCRIPTION orders_sub CONNECTION 'host=$WORK port=$PRIMARY_PORT dbname=postgres' PUBLICATION orders_pub WITH (create_slot = false, slot_name = 'orders_sub');" subscriber
wait_true $SUBSCRIBER_PORT "SELECT count(*) = 5 FROM orders" "the initial copy did not reach the subscriber"
show $PRIMARY_PORT "INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(6, 10) g;" primary
wait_true $SUBSCRIBER_PORT "SELECT count(*) = 10 FROM orders" "new rows did not reach the subscriber"
show $SUBSCRIBER_PORT "SELECT count(*) AS rows, max(id) FROM orders;" subscriber
P=$(val $PRIMARY_PORT "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'orders_sub'")
wait_true $STANDBY_PORT "SELECT sync_state = 'ready' AND confirmed_flush_lsn >= '$P' FROM pg_slotsync.replication_slots WHERE slot_name = 'orders_sub'" \
	"orders_sub is not ready on the standby"
say "on the standby, before the failover:"
show $STANDBY_PORT "SELECT slot_name, sync_state, confirmed_flush_lsn, last_sync_time IS NOT NULL AS synced_recently FROM pg_slotsync.replication_slots WHERE synced;" standby

bold "3. The primary fails; the standby is promoted; the subscription follows"
say "stopping the primary (as if it crashed)"
"$BIN/pg_ctl" -D "$WORK/primary" -m immediate -w stop >/dev/null
say "promoting the standby"
"$BIN/pg_ctl" -D "$WORK/standby" -w promote >/dev/null
show $STANDBY_PORT "SELECT slot_name, temporary, failover, synced FROM pg_slotsync.replication_slots WHERE slot_type = 'logical' ORDER BY 1;" "new primary"
show $SUBSCRIBER_PORT "ALTER SUBSCRIPTION orders_sub CONNECTION 'host=$WORK port=$STANDBY_PORT dbname=postgres';" subscriber
show $STANDBY_PORT "INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(11, 15) g;" "new primary"
wait_true $SUBSCRIBER_PORT "SELECT count(*) = 15 FROM orders" "rows from the new primary did not reach the subscriber"
show $SUBSCRIBER_PORT "SELECT count(*) AS rows, count(DISTINCT id) AS distinct_ids, min(id), max(id) FROM orders;" subscriber
[ "$(val $SUBSCRIBER_PORT "SELECT count(*) = 15 AND count(DISTINCT id) = 15 AND min(id) = 1 AND max(id) = 15 FROM orders")" = t ] ||
	fail "the subscriber does not have every row exactly once"
say "the CDC consumer resumes on the new primary exactly after what it had read:"
show $STANDBY_PORT "SELECT count(*) AS changes_after_failover FROM pg_logical_slot_get_changes('cdc_slot', NULL, NULL) WHERE data LIKE 'table public.orders: INSERT%';" "new primary"

bold "Done: every row exactly once on the subscriber, no slot lost in the failover"
