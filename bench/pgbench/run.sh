#!/usr/bin/env bash
# The raw database rate for the service's status-update transaction, for comparison with
# `portauthority bench --spawn postgres`. Usage: bench/pgbench/run.sh [ADMIN_URL] [CLIENTS] [SECONDS]
set -euo pipefail
admin="${1:-postgres://postgres@127.0.0.1:5432/postgres}"
clients="${2:-16}"
seconds="${3:-10}"
here="$(cd "$(dirname "$0")" && pwd)"
db="pa_pgbench_$$"
base="${admin%/*}"
psql "$admin" -qc "CREATE DATABASE $db"
trap 'psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
portauthority=${PORTAUTHORITY:-"$here/../../target/release/portauthority"}
"$portauthority" migrate --database-url "$base/$db" >/dev/null
psql "$base/$db" -q -f "$here/setup.sql"
pgbench "$base/$db" -n -M prepared -f "$here/status_update.sql" -c "$clients" -j 2 -T "$seconds" 2>&1 \
    | grep -E 'tps|latency|clients|failed|transactions'
