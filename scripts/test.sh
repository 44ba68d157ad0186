#!/usr/bin/env bash
# Run the suite on SQLite and on a throwaway PostgreSQL database, side by side
# (LEALTA_TEST_SERIAL=1: one after the other).
# PostgreSQL: LEALTA_TEST_PG_ADMIN_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
# If the local cluster is down it is started; if PostgreSQL still cannot be reached the
# PostgreSQL pass is reported loudly as NOT RUN, and with LEALTA_REQUIRE_POSTGRES=1 (CI) the
# script fails.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
ADMIN_URL=${LEALTA_TEST_PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
PYTEST_ARGS=("$@")

pg_up() { "$PY" scripts/pgutil.py ping "$ADMIN_URL" >/dev/null 2>&1; }

start_pg() {
  pg_up && return 0
  echo "PostgreSQL not answering; trying to start the installed cluster..."
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    for version in $(ls /etc/postgresql 2>/dev/null); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>&1 || true
    done
  fi
  for _ in $(seq 1 30); do pg_up && return 0; sleep 1; done
  return 1
}

status=0
sqlite_pass() { LEALTA_TEST_DATABASE_URL= "$PY" -m pytest -p no:cacheprovider "${PYTEST_ARGS[@]}"; }
pg_pass() { LEALTA_TEST_DATABASE_URL="$1" "$PY" -m pytest "${PYTEST_ARGS[@]}"; }

if start_pg; then
  db="lealta_test_$$_$(date +%s)"
  "$PY" scripts/pgutil.py create "$ADMIN_URL" "$db"
  url="${ADMIN_URL%/*}/$db"
  if [ "${LEALTA_TEST_SERIAL:-0}" = "1" ]; then
    echo "=== Lealta test suite on SQLite ==="
    sqlite_pass || status=1
    echo "=== Lealta test suite on PostgreSQL ($db) ==="
    pg_pass "$url" || status=1
  else
    # The two passes side by side: each is mostly one busy core (pytest, or pytest and its
    # PostgreSQL backend), so on a machine of two or more cores together they take little
    # more than the longer one. The PostgreSQL pass is shown as it runs, the SQLite pass's
    # output when it is done. LEALTA_TEST_SERIAL=1 runs them one after the other.
    sqlite_log=$(mktemp)
    echo "=== Lealta test suite on SQLite (in the background; its output follows the PostgreSQL pass) ==="
    sqlite_pass >"$sqlite_log" 2>&1 &
    sqlite_pid=$!
    echo "=== Lealta test suite on PostgreSQL ($db) ==="
    pg_pass "$url" || status=1
    wait "$sqlite_pid" || status=1
    echo "=== Lealta test suite on SQLite: its output ==="
    cat "$sqlite_log"
    rm -f "$sqlite_log"
  fi
  "$PY" scripts/pgutil.py drop "$ADMIN_URL" "$db" || true
else
  echo "=== Lealta test suite on SQLite ==="
  sqlite_pass || status=1
  cat >&2 <<'BANNER'

#####################################################################
#  PostgreSQL IS NOT AVAILABLE: the PostgreSQL pass did NOT run.    #
#  Only SQLite was tested. Concurrency tests were NOT exercised.    #
#####################################################################

BANNER
  if [ "${LEALTA_REQUIRE_POSTGRES:-0}" = "1" ]; then status=1; fi
fi
exit $status
