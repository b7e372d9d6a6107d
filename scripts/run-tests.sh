#!/usr/bin/env bash
# Runs the whole suite on SQLite, then again on the local PostgreSQL. In CI (CI=true) a
# missing PostgreSQL fails the run; on a workstation it is skipped with a loud warning.
set -uo pipefail
PY=${PY:-.venv/bin/python}
PG_URL=${HOSTWARDEN_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}
ARTIFACTS=${ARTIFACTS:-test-artifacts}
mkdir -p "$ARTIFACTS"

run_pytest() {
  local label=$1; shift
  echo "=== test suite on $label ==="
  "$PY" -m pytest -n 2 --dist loadgroup "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then
    echo "error: pytest collected no tests on $label; a run with no test does not count" >&2
    return 1
  fi
  return $rc
}

pg_available() {
  "$PY" - "$PG_URL" <<'PYEOF'
import sys
from sqlalchemy import create_engine, text
try:
    with create_engine(sys.argv[1]).connect() as conn:
        conn.execute(text("SELECT 1"))
except Exception as exc:
    print(f"PostgreSQL at {sys.argv[1]} not reachable: {exc}", file=sys.stderr)
    sys.exit(1)
PYEOF
}

HOSTWARDEN_TEST_DATABASE=sqlite run_pytest SQLite "$@" || exit 1

if pg_available; then
  HOSTWARDEN_TEST_DATABASE=$PG_URL run_pytest PostgreSQL "$@" || exit 1
elif [ "${CI:-}" = "true" ]; then
  echo "error: CI=true but PostgreSQL is not reachable at $PG_URL; the relational tests must run on it" >&2
  exit 1
else
  echo "WARNING: PostgreSQL not reachable at $PG_URL: the PostgreSQL pass was SKIPPED" >&2
fi
