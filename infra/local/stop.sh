#!/usr/bin/env bash
# Stop the named servers (default: all that up.sh starts), leaving their data: stop.sh [NAME...]
# NAME: events worker prefect mlflow postgres. up.sh starts again whatever is not running.
. "$(dirname "$0")/env.sh"
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(events worker prefect mlflow postgres)
for name in "${names[@]}"; do
    case "$name" in
    postgres)
        if [ -f "$INFRA_DIR/postgres/PG_VERSION" ] && as_pg "$(pg_bin)/pg_ctl" -D "$INFRA_DIR/postgres" status > /dev/null 2>&1; then
            as_pg "$(pg_bin)/pg_ctl" -D "$INFRA_DIR/postgres" -m fast -w stop > /dev/null && echo "postgres stopped"
        fi ;;
    events|worker|prefect|mlflow)
        if pid_alive "$name"; then
            pid="$(cat "$RUN/$name.pid")"
            kill -TERM -- "-$pid" 2>/dev/null || true
            for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
            kill -KILL -- "-$pid" 2>/dev/null || true
            echo "$name stopped"
        fi
        rm -f "$RUN/$name.pid" ;;
    *) echo "error: unknown server '$name'; one of events worker prefect mlflow postgres" >&2; exit 2 ;;
    esac
done
