#!/usr/bin/env bash
# Start the consortium's servers on this machine, each only if it is not running yet:
#   PostgreSQL (data, MLflow's backend store and auth database, Prefect's database)
#   MLflow tracking server: PostgreSQL backend, proxied artifacts, flexo's auth app
#     (MLflow basic-auth with default_permission = NO_PERMISSIONS, plus the registry's review rules)
#   Prefect server on PostgreSQL, a `process` work pool and a worker
# It writes $INFRA_DIR/client.env: the variables a client sets (no credentials in it).
. "$(dirname "$0")/env.sh"
mkdir -p "$RUN" "$LOGS" "$INFRA_DIR/artifacts" "$INFRA_DIR/prefect"
# others may not list it; the postgres account (when run as root) must pass through it
chmod 711 "$INFRA_DIR"

if [ ! -f "$SECRETS" ]; then  # generated once; the admin password is for `flexo infra users sync`
    umask 077
    "$BIN/python" - > "$SECRETS.tmp" <<'PY'
import secrets
for name in ("FLEXO_PG_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY",
             "FLEXO_WEBHOOK_SECRET"):
    print(f"{name}={secrets.token_urlsafe(24)}")
from cryptography.fernet import Fernet  # MLflow encrypts webhook secrets at rest with it
print(f"MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY={Fernet.generate_key().decode()}")
PY
    mv "$SECRETS.tmp" "$SECRETS"
    umask 022
fi
load_secrets

wait_http() {  # wait_http NAME URL SECONDS
    for _ in $(seq "$3"); do
        curl -fsS -o /dev/null "$2" 2>/dev/null && return 0
        pid_alive "$1" || { echo "error: $1 exited at start; see $LOGS/$1.log" >&2; tail -5 "$LOGS/$1.log" >&2; exit 1; }
        sleep 1
    done
    echo "error: $1 did not answer $2 within $3 s; see $LOGS/$1.log" >&2; exit 1
}

start() {  # start NAME COMMAND...: in the background, its pid and log under INFRA_DIR
    pid_alive "$1" && { echo "$1 already running (pid $(cat "$RUN/$1.pid"))"; return 0; }
    local name="$1"; shift
    setsid nohup "$@" >> "$LOGS/$name.log" 2>&1 &  # its own process group: down.sh stops all of it
    echo $! > "$RUN/$name.pid"
}

# --- PostgreSQL -------------------------------------------------------------------------------
PG="$(pg_bin)"
PGDATA="$INFRA_DIR/postgres"
if [ ! -f "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"; printf '%s\n' "$FLEXO_PG_PASSWORD" > "$RUN/pgpass"
    [ "$(id -u)" = 0 ] && chown -R postgres "$PGDATA" "$RUN"
    as_pg "$PG/initdb" -D "$PGDATA" -U flexo --pwfile="$RUN/pgpass" --auth=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 > "$LOGS/initdb.log" 2>&1
    rm -f "$RUN/pgpass"
fi
[ "$(id -u)" = 0 ] && chown postgres "$RUN" "$LOGS" && touch "$LOGS/postgres.log" && chown postgres "$LOGS/postgres.log"
if ! as_pg "$PG/pg_ctl" -D "$PGDATA" status > /dev/null 2>&1; then
    as_pg "$PG/pg_ctl" -D "$PGDATA" -w -t 60 -l "$LOGS/postgres.log" \
        -o "-p $PG_PORT -c listen_addresses=$HOST -k $RUN" start > /dev/null
fi
export PGPASSWORD="$FLEXO_PG_PASSWORD"
for db in mlflow mlflow_auth prefect; do
    psql -h "$HOST" -p "$PG_PORT" -U flexo -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" \
        | grep -q 1 || psql -h "$HOST" -p "$PG_PORT" -U flexo -d postgres -qc "CREATE DATABASE $db" > /dev/null
done
echo "postgres   127.0.0.1:$PG_PORT"

# --- MLflow -----------------------------------------------------------------------------------
cat > "$INFRA_DIR/basic_auth.ini" <<INI
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = $(pg_uri mlflow_auth)
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# password checks (scrypt) cached per worker for a minute: a request costs ~0.1 s otherwise
auth_cache_ttl_seconds = 60
INI
chmod 600 "$INFRA_DIR/basic_auth.ini"
# Webhooks to loopback (the events receiver) are blocked unless private addresses and plain http
# are allowed: both are set here, for 127.0.0.1 only; a receiver elsewhere should use https.
# Webhooks: the list of hooks re-read every 5 s (not 60), a failed delivery retried 7 times with
# backoff (1, 2, 4 ... 60 s: about two minutes for a receiver that is down to come back).
MLFLOW_AUTH_CONFIG_PATH="$INFRA_DIR/basic_auth.ini" MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true \
MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https \
MLFLOW_WEBHOOK_CACHE_TTL=5 MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES=7 \
start mlflow "$BIN/mlflow" server --backend-store-uri "$(pg_uri mlflow)" \
    --serve-artifacts --artifacts-destination "$INFRA_DIR/artifacts" \
    --host "$HOST" --port "$MLFLOW_PORT" --workers "${FLEXO_MLFLOW_WORKERS:-2}" --app-name flexo-auth
wait_http mlflow "http://$HOST:$MLFLOW_PORT/health" 120
echo "mlflow     http://$HOST:$MLFLOW_PORT (auth: flexo-auth, default NO_PERMISSIONS)"

# --- Prefect ----------------------------------------------------------------------------------
export PREFECT_HOME="$INFRA_DIR/prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_API_URL="http://$HOST:$PREFECT_PORT/api"
PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://flexo:${FLEXO_PG_PASSWORD}@$HOST:$PG_PORT/prefect" \
start prefect "$BIN/prefect" server start --host "$HOST" --port "$PREFECT_PORT"
wait_http prefect "$PREFECT_API_URL/health" 180
"$BIN/prefect" work-pool inspect "$POOL" > /dev/null 2>&1 || \
    "$BIN/prefect" work-pool create "$POOL" --type process > /dev/null
# The operator's worker and the events receiver act as MLflow's admin: the operator machine's
# service identity (the ledger still names the operator a flow runs for).
service() {
    MLFLOW_TRACKING_URI="http://$HOST:$MLFLOW_PORT" MLFLOW_TRACKING_USERNAME=admin \
    MLFLOW_TRACKING_PASSWORD="$MLFLOW_AUTH_ADMIN_PASSWORD" "$@"
}
service start worker "$BIN/prefect" worker start --pool "$POOL"
echo "prefect    $PREFECT_API_URL (work pool $POOL, worker pid $(cat "$RUN/worker.pid"))"

# --- events receiver (MLflow webhooks -> flexo's rules, Prefect events) ---------------------------
service start events "$BIN/flexo" infra events --host "$HOST" --port "$EVENTS_PORT"
wait_http events "http://$HOST:$EVENTS_PORT/healthz" 120
echo "events     http://$HOST:$EVENTS_PORT/mlflow (MLflow webhooks, HMAC-signed)"

cat > "$INFRA_DIR/client.env" <<ENV
MLFLOW_TRACKING_URI=http://$HOST:$MLFLOW_PORT
PREFECT_API_URL=$PREFECT_API_URL
ENV
