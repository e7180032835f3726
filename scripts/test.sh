#!/usr/bin/env bash
# Run the whole pg_slotsync test suite: pg_regress tests, then TAP tests.
# Every test starts its own throw-away servers on loopback and stops them.
# PostgreSQL refuses to run as root, so as root the suite runs as the
# "postgres" user on a copy of this tree.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}

if [ "$(id -u)" -eq 0 ]; then
	workdir=$(mktemp -d /tmp/pg_slotsync_test.XXXXXX)
	trap 'rm -rf "$workdir"' EXIT
	tar --exclude=./.git --exclude=./tmp_check --exclude=./tmp_check_regress -cf - . |
		tar -xf - -C "$workdir"
	chown -R postgres: "$workdir"
	status=0
	runuser -u postgres -- make -C "$workdir" PG_CONFIG="$PG_CONFIG" installcheck "$@" || status=$?
	if [ "$status" -ne 0 ]; then
		# keep the logs where a person (or CI) can read them
		rm -rf ./test_logs && mkdir -p ./test_logs
		cp -r "$workdir"/tmp_check/log ./test_logs/tap 2>/dev/null || true
		cp "$workdir"/test/regression.diffs ./test_logs/ 2>/dev/null || true
		for f in ./test_logs/tap/regress_log_*; do
			[ -f "$f" ] && grep -q "not ok\|Dubious\|died\|timed out" "$f" && { echo "=== $f"; tail -40 "$f"; }
		done
		[ -f ./test_logs/regression.diffs ] && cat ./test_logs/regression.diffs
	fi
	exit "$status"
fi

exec make PG_CONFIG="$PG_CONFIG" installcheck "$@"
