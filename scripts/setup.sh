#!/usr/bin/env bash
# Set up everything pg_slotsync needs on a fresh Debian 12 machine: the
# PostgreSQL 15 server and headers, the TAP test modules, a compiler, and
# Patroni with etcd for the Patroni test (test/t/080_patroni.pl); then
# build the extension warning-free and install it.  Run as root.
#
# Installing patroni and etcd-server enables their services (Patroni's does
# nothing without /etc/patroni/config.yml; etcd's, where a service manager
# starts it, listens on localhost:2379); the test runs its own etcd and
# Patroni on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "setup.sh installs packages and the extension: run it as root (sudo $0)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	build-essential postgresql-15 postgresql-server-dev-15 \
	postgresql-contrib libpq-dev libkrb5-dev libipc-run-perl make \
	patroni etcd-server python3 python3-psycopg2 >/dev/null

export PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
make clean >/dev/null
make PG_CONFIG="$PG_CONFIG" COPT="-Wall -Werror"
make PG_CONFIG="$PG_CONFIG" install
echo "pg_slotsync built and installed into $("$PG_CONFIG" --pkglibdir)"
