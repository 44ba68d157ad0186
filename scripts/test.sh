#!/usr/bin/env bash
# Run the suite on SQLite, then on a throwaway PostgreSQL database.
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
echo "=== Lealta test suite on SQLite ==="
LEALTA_TEST_DATABASE_URL= "$PY" -m pytest "${PYTEST_ARGS[@]}" || status=1

if start_pg; then
  db="lealta_test_$$_$(date +%s)"
  "$PY" scripts/pgutil.py create "$ADMIN_URL" "$db"
  url="${ADMIN_URL%/*}/$db"
  echo "=== Lealta test suite on PostgreSQL ($db) ==="
  LEALTA_TEST_DATABASE_URL="$url" "$PY" -m pytest "${PYTEST_ARGS[@]}" || status=1
  "$PY" scripts/pgutil.py drop "$ADMIN_URL" "$db" || true
else
  cat >&2 <<'BANNER'

#####################################################################
#  PostgreSQL IS NOT AVAILABLE: the PostgreSQL pass did NOT run.    #
#  Only SQLite was tested. Concurrency tests were NOT exercised.    #
#####################################################################

BANNER
  if [ "${LEALTA_REQUIRE_POSTGRES:-0}" = "1" ]; then status=1; fi
fi
exit $status
