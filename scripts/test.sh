#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run the test suite.
# System packages: Chromium (report and UI browser tests), a CJK font (Chinese PDF) and PostgreSQL (the
# service's tests run against SQLite and a real PostgreSQL server); Python packages: '.[test]' at the versions
# constraints.txt locks.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "zen\|cjk"; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium fonts-wqy-zenhei >/dev/null
fi
PERMED_TEST_POSTGRES=$(bash scripts/postgres.sh)
case "$PERMED_TEST_POSTGRES" in
  postgresql://*) ;;
  *) echo "scripts/postgres.sh printed no PostgreSQL URL: $PERMED_TEST_POSTGRES" >&2; exit 1 ;;
esac
export PERMED_TEST_POSTGRES PERMED_REQUIRE_POSTGRES=1
python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt '.[test]' && .venv/bin/python -m pytest "$@"
