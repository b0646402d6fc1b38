"""How fast a withdrawal takes effect, and what a whole withdrawal costs against one release.

On the demo's home (`flexo demo`, `--quick` for its tiny plan): after the demo, production holds
code-commons and med-notes. A runtime is loaded on production and keeps scoring med-notes' own
held-out text; med-notes withdraws on another thread. Measured, in the same process:

- **deny-list to runtime**: from the deny-list being written to the first pass of the loaded
  runtime that gives med-notes exactly 0 routing share (no reload, no restart);
- **request to runtime**: the same, from the call of `withdraw_flow` (Prefect's flow start, the
  role check, the ledger entry come first);
- **request to verified production**: `withdraw_flow` (deny, revoke, fingerprint, purge, the
  release without it), then the remaining contributor's acceptance and the promotion that
  verifies it (tensor hashes) and purges the release it replaces;
- the baseline: that release's own merge + evaluation (its MLflow child runs: router tuning and
  merge; anchor and release on every held-out split), so the ratio says what withdrawal adds on
  top of building the release it needs anyway; `steps_seconds` says where the rest goes.

    python -m benchmarks.withdrawal [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import torch

from components.atomic import atomic_write

RESULTS = Path(__file__).parent / "results" / "withdrawal.json"
LEAVING, STAYING = "med-notes", "code-commons"


def _release_seconds(release_run_id: str) -> tuple[dict[str, float], float]:
    """Seconds of the release run's `merge` and `evaluate` child runs, and the wall-clock time
    (epoch seconds) the release run started, from MLflow."""
    import mlflow

    children = mlflow.search_runs(
        experiment_names=["flexo-release"], output_format="list",
        filter_string=f"tags.mlflow.parentRunId = '{release_run_id}'")
    started = mlflow.get_run(release_run_id).info.start_time / 1000
    return {r.info.run_name: (r.info.end_time - r.info.start_time) / 1000 for r in children
            if r.info.run_name in ("merge", "evaluate")}, started


def measure(home: Path, quick: bool) -> dict:
    from components.builtin_corpora import load_domain
    from components.checkpoints import load_tokenizer
    from components.evaluation import RoutingRecorder
    from components.runtime import load_flexo_model
    from flows.accept import AcceptConfig, accept_flow
    from flows.demo import CONTRIBUTORS, demo_flow, plan
    from flows.promote import promote_flow
    from flows.withdraw import withdraw_flow
    from flows.withdrawals import deny_list_path, read_record

    started = time.perf_counter()
    demo = demo_flow(home, quick, say=lambda step: print(step, flush=True))
    demo_seconds = time.perf_counter() - started
    assert demo.production[demo.after_withdrawal.version], "the demo's v2 is not in production"
    p = plan(quick)

    production = home / "releases" / "production"
    runtime = load_flexo_model(production, deny_list=deny_list_path())
    text = " ".join(load_domain(CONTRIBUTORS[LEAVING]).split("test").texts()[:8])
    ids = load_tokenizer(production)(text, return_tensors="pt").input_ids[:, :256]

    def share() -> float:
        with torch.no_grad(), RoutingRecorder(runtime) as recorder:
            runtime(input_ids=ids)
        return recorder.shares()[LEAVING]

    before = share()
    passes = [time.perf_counter()]
    for _ in range(20):  # the runtime's pass time: the resolution of what follows
        share()
        passes.append(time.perf_counter())
    pass_seconds = (passes[-1] - passes[0]) / 20

    outcome: dict = {}

    def withdraw() -> None:
        outcome["result"] = withdraw_flow(LEAVING, actor=LEAVING, reason="benchmark",
                                          release=p.release)

    requested, requested_wall = time.perf_counter(), time.time()
    worker = threading.Thread(target=withdraw)
    worker.start()
    while share() > 0:
        pass
    masked, masked_wall = time.perf_counter(), time.time()
    written_to_masked = masked_wall - deny_list_path().stat().st_mtime  # the deny-list's write
    worker.join()
    withdrawn = time.perf_counter()
    rebuilt = outcome["result"].release
    accept_flow(STAYING, rebuilt.version, home / "contributors" / STAYING / "data",
                AcceptConfig(eval_max_tokens=p.eval_max_tokens))
    accepted = time.perf_counter()
    promoted = promote_flow(rebuilt.version)
    verified = time.perf_counter()
    assert promoted.promoted and read_record(LEAVING).verified_release == rebuilt.version

    children, release_started = _release_seconds(rebuilt.mlflow_run_id)
    baseline = children["merge"] + children["evaluate"]
    full = verified - requested
    before_release = release_started - requested_wall
    return {
        "machine": platform.machine(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "plan": "quick" if quick else "default",
        "demo_seconds": round(demo_seconds, 1),
        "share_before": round(before, 4), "runtime_pass_seconds": round(pass_seconds, 4),
        "deny_list_to_masked_seconds": round(max(written_to_masked, 0.0), 4),
        "request_to_masked_seconds": round(masked - requested, 3),
        "request_to_verified_production_seconds": round(full, 1),
        "steps_seconds": {  # where the request-to-verified-production time goes
            "deny_revoke_fingerprint_purge": round(before_release, 1),
            "release_flow": round(withdrawn - requested - before_release, 1),
            "acceptance": round(accepted - withdrawn, 1),
            "promotion_with_verification": round(verified - accepted, 1)},
        "release_merge_seconds": round(children["merge"], 1),
        "release_evaluate_seconds": round(children["evaluate"], 1),
        "ratio_to_merge_and_evaluation": round(full / baseline, 2),
        "release_version": rebuilt.version}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the tiny plan of `flexo demo --quick`")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="flexo-withdrawal-"))
    os.environ["FLEXO_HOME"] = str(root / "home")
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))  # a fresh temporary server
    from flows.settings import prepare_prefect

    prepare_prefect()
    report = measure(root / "home", args.quick)
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
