#!/usr/bin/env bash
# One line per server: running (pid) or stopped. Exit 0 only when all are running.
. "$(dirname "$0")/env.sh"
rc=0
if [ -f "$INFRA_DIR/postgres/PG_VERSION" ] && as_pg "$(pg_bin)/pg_ctl" -D "$INFRA_DIR/postgres" status > /dev/null 2>&1; then
    echo "postgres running 127.0.0.1:$PG_PORT"; else echo "postgres stopped"; rc=1; fi
for name in mlflow prefect worker events; do
    if pid_alive "$name"; then echo "$name running (pid $(cat "$RUN/$name.pid"))"
    else echo "$name stopped"; rc=1; fi
done
exit $rc
