# Shared settings of the local consortium servers (sourced by up.sh, down.sh, status.sh).
# Every value can be set in the environment first; `flexo infra` passes them through.
set -euo pipefail
INFRA_DIR="$(realpath -m "${FLEXO_INFRA_DIR:-${FLEXO_HOME:-.flexo}/infra}")"
PG_PORT="${FLEXO_PG_PORT:-55432}"
MLFLOW_PORT="${FLEXO_MLFLOW_PORT:-5055}"
PREFECT_PORT="${FLEXO_PREFECT_PORT:-4242}"
EVENTS_PORT="${FLEXO_EVENTS_PORT:-5056}"
POOL="${FLEXO_WORK_POOL:-flexo-local}"
HOST=127.0.0.1
# The venv whose mlflow, prefect and flexo serve (the one `flexo infra` runs from).
BIN="${FLEXO_INFRA_BIN:-$(dirname "$(command -v flexo || command -v mlflow)")}"
RUN="$INFRA_DIR/run"
LOGS="$INFRA_DIR/logs"
SECRETS="$INFRA_DIR/secrets.env"

pg_bin() {  # the distribution's PostgreSQL server binaries (Debian keeps them off PATH)
    local found
    found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
    if [ -n "$found" ]; then echo "$found"; elif command -v pg_ctl >/dev/null; then
        dirname "$(command -v pg_ctl)"; else
        echo "error: PostgreSQL is not installed; install the distribution's package (apt-get install postgresql)" >&2
        exit 3; fi
}

as_pg() {  # PostgreSQL refuses to run as root: run its tools as the postgres account then
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pid_alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

load_secrets() { set -a; . "$SECRETS"; set +a; }

pg_uri() { echo "postgresql+psycopg2://flexo:${FLEXO_PG_PASSWORD}@$HOST:$PG_PORT/$1"; }
