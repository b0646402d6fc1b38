"""What orchestration costs: the demo's story through the flows (Prefect tasks and events,
MLflow runs, registry, artifacts) over the same component calls made directly, same process.

Plain runs first and, unless `--plain-once`, again last; the overhead is flows over the mean of the
plain runs, so warm file caches favour neither side (with one plain run they favour the flows).
The flows side includes Prefect's temporary server start.

    python -m benchmarks.orchestration_overhead [--quick] [--plain-once] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from components.atomic import atomic_write
from components.builtin_corpora import PRIVATE_DOMAINS, PUBLIC, load_domain
from components.checkpoints import load_tokenizer
from components.expert_module import ModuleRef
from flows.demo import CONTRIBUTORS, WITHDRAWING, DemoPlan, plan

RESULTS = Path(__file__).parent / "results" / "orchestration_overhead.json"


def plain_story(root: Path, p: DemoPlan) -> None:
    """The demo's component calls in the flows' order, with no Prefect and no MLflow."""
    from components.anchor import train_anchor
    from components.evaluation import (
        evaluate_against_anchor,
        evaluate_for_acceptance,
        evaluate_model,
    )
    from components.extraction_audit import extraction_audit
    from components.merge import merge
    from components.pii import screen_corpus
    from components.router_tuning import proxy_router_tuner
    from components.runtime import load_flexo_model
    from components.user_data import load_directory, write_directory
    from components.validation import ValidationConfig, validate_directory
    from flows.modules import choose_proxies, published_proxies, train_module
    from governance.acceptance import accepts
    from governance.release import DomainFigures, judge_release

    public = load_domain(PUBLIC)
    anchor = root / "anchor"
    train_anchor(anchor, p.preset, public, progress=False)
    refs, corpora = [], {}
    for contributor, domain in CONTRIBUTORS.items():
        data = write_directory(load_domain(domain), root / "data" / contributor, domain)
        validate_directory(data, ValidationConfig())
        corpus, _ = screen_corpus(load_directory(data), "redact")
        corpora[contributor] = corpus
        proxies = choose_proxies(anchor, corpus, p.proxies)  # pool embeddings: shared cache
        manifest, _ = train_module(anchor, contributor, corpus, p.expert,
                                   root / "modules" / contributor, progress=False,
                                   proxies=proxies)
        ref = ModuleRef(name=contributor, directory=root / "modules" / contributor,
                        weights_sha256=manifest.weights_sha256)
        dense = root / "dense" / contributor
        merge(anchor, [ref], dense)
        evaluate_against_anchor(dense, anchor, corpus, public, max_tokens=p.eval_max_tokens)
        extraction_audit(load_flexo_model(dense), load_tokenizer(dense), corpus.training_texts(),
                         p.audit)
        refs.append(ref)
    test_splits = [load_domain(name).split("test") for name in (PUBLIC, *PRIVATE_DOMAINS)]
    for n, release in enumerate((refs, [r for r in refs if r.name != WITHDRAWING])):
        out = root / f"release-{n}"
        proxies = published_proxies(anchor, {r.name: r.directory for r in release})
        merge(anchor, release, out, top_k=len(release) + 1,
              tune=proxy_router_tuner(anchor, proxies, p.release.router_tuning()))
        before = evaluate_model(anchor, test_splits, p.release.eval_max_tokens)
        after = evaluate_model(out, test_splits, p.release.eval_max_tokens)
        judge_release({a.domain: DomainFigures(anchor=a.perplexity, release=r.perplexity,
                                               tokens=r.tokens)
                       for a, r in zip(before, after, strict=True)}, [],
                      p.release.max_public_increase)
        for r in release:  # each contributor's acceptance, on its own held-out text
            figures = evaluate_for_acceptance(out, anchor, corpora[r.name], public, r.name,
                                              max_tokens=p.eval_max_tokens)
            accepts(figures.change, 0.0)


def flow_story(home: Path, quick: bool) -> dict:
    """The demo itself; returns what it measured (the README's demo table)."""
    os.environ["FLEXO_HOME"] = str(home)
    from flows.demo import demo_flow

    result = demo_flow(home, quick, say=lambda step: print(step, flush=True))
    first, second = result.first, result.after_withdrawal
    return {"figures": {d: {"anchor": round(f.anchor, 2), "release": round(f.release, 2),
                            "after_withdrawal": round(second.record.figures[d].release, 2)}
                        for d, f in first.record.figures.items()},
            "contributed": {e.contributor: CONTRIBUTORS[e.contributor]
                            for e in first.record.experts},
            "releases": [{"version": r.version, "production": result.production[r.version],
                          "experts": [e.contributor for e in r.record.experts],
                          "gate_failures": r.record.gate.failures(),
                          "answers": {c: a.model_dump(exclude={"contributor", "release"})
                                      for c, a in result.answers[r.version].items()}}
                         for r in (first, second)]}


def _timed(fn, *args) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn(*args)
    return round(time.perf_counter() - started, 2), value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the tiny plan of `flexo demo --quick`")
    ap.add_argument("--plain-once", action="store_true", help="skip the second plain run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="flexo-orchestration-"))
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))  # a fresh temporary server
    from flows.settings import prepare_prefect

    prepare_prefect()
    p = plan(args.quick)
    try:
        plain_runs = [_timed(plain_story, root / "plain-1", p)[0]]
        flows, demo = _timed(flow_story, root / "flows", args.quick)
        if not args.plain_once:
            plain_runs.append(_timed(plain_story, root / "plain-2", p)[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    plain = sum(plain_runs) / len(plain_runs)
    report = {"machine": platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "plan": "quick" if args.quick else "default",
              "anchor_preset": p.preset, "contributors": len(CONTRIBUTORS),
              "plain_seconds": plain_runs, "flows_seconds": flows,
              "overhead": round(flows / plain - 1, 4), "target": 0.10, "demo": demo}
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
