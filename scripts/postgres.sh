#!/usr/bin/env bash
# Start a local PostgreSQL server (Debian package) for the service tests and print its URL.
# Idempotent: installs the package if missing, creates/starts the cluster, creates the `permed` role.
set -euo pipefail
# Only the URL goes to stdout (callers capture it); the tools' messages go to stderr.
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  $SUDO apt-get update -q >&2 && $SUDO apt-get install -y -q postgresql >&2
fi
VERSION=$(ls /usr/lib/postgresql | sort -V | tail -1)
pg_lsclusters -h | grep -q "^$VERSION main" || $SUDO pg_createcluster "$VERSION" main >&2
if ! pg_lsclusters -h | grep -q "^$VERSION main .* online"; then
  $SUDO pg_ctlcluster "$VERSION" main start >&2 || {
    echo "scripts/postgres.sh: PostgreSQL $VERSION did not start; its log ends:" >&2
    tail -20 "/var/log/postgresql/postgresql-$VERSION-main.log" >&2 || true
    exit 1
  }
fi
PORT=$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $3}')
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
as_postgres psql -q -p "$PORT" -c "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'permed') THEN
    CREATE ROLE permed LOGIN CREATEDB PASSWORD 'permed-test';
  END IF; END \$\$;" >/dev/null
echo "postgresql://permed:permed-test@127.0.0.1:$PORT/postgres"
