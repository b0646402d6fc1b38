#!/usr/bin/env bash
# Stop every server up.sh started (receiver, worker, Prefect, MLflow, PostgreSQL); data stays.
exec "$(dirname "$0")/stop.sh"
