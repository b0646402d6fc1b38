"""Does the extraction audit catch memorisation, and does DP prevent it? (issue 4, paper §5.3)

Four models, each audited on the openings of the same 64 literature training documents (32-token
prefix, 10 samples, top-k 50, top-p 0.95, extracted at normalised Levenshtein similarity >= 0.9):
  anchor      the public anchor alone (never saw the documents)
  normal      an expert trained the usual way on the whole literature corpus (default config)
  overfit     an uncoordinated expert (shared tensors train too) trained for many epochs on just
              those 64 openings (~80 tokens each), no public text
  overfit-dp  the same overfitting run with differential privacy at epsilon 8
Each expert is audited as the dense 2-expert model (anchor + module), as contribute_flow does.

    python -m benchmarks.extraction_audit --anchor DIR [--out FILE]

The anchor should be a trained `small` preset (`flexo anchor train --preset small`).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
from pathlib import Path

import torch

from components.atomic import atomic_write
from components.builtin_corpora import PUBLIC, load_domain
from components.checkpoints import load_tokenizer
from components.documents import Corpus
from components.dp_training import DPConfig
from components.expert_module import ModuleRef
from components.expert_training import ExpertConfig, train_expert
from components.extraction_audit import AuditConfig, extraction_audit
from components.merge import merge
from components.runtime import load_flexo_model

RESULTS = Path(__file__).parent / "results" / "extraction_audit.json"
DOCUMENTS = 64


def _audit(model_dir: Path, texts: list[str]) -> dict:
    result = extraction_audit(load_flexo_model(model_dir), load_tokenizer(model_dir), texts,
                              AuditConfig(documents=DOCUMENTS))
    return {"rate": result.rate, "ci_low": round(result.ci_low, 4),
            "ci_high": round(result.ci_high, 4), "extracted": result.extracted,
            "documents": result.documents,
            "mean_best_similarity": round(result.mean_best_similarity, 4)}


def _expert(anchor: Path, corpus: Corpus, cfg: ExpertConfig, root: Path, name: str) -> dict:
    result = train_expert(anchor, name, corpus, load_domain(PUBLIC), cfg, root / name)
    dense = root / f"{name}-dense"
    merge(anchor, [ModuleRef(name=name, directory=root / name,
                             weights_sha256=result.weights_sha256)], dense)
    row = {"final_loss": round(result.metrics["final_loss"], 4), "steps": cfg.steps}
    if result.privacy:
        row["epsilon"] = round(result.privacy.epsilon, 3)
        row["noise_multiplier"] = round(result.privacy.noise_multiplier, 3)
    return row | {"dir": dense}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anchor", type=Path, required=True)
    ap.add_argument("--overfit-steps", type=int, default=600)
    ap.add_argument("--overfit-lr", type=float, default=2e-2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    tokenizer = load_tokenizer(args.anchor)
    literature = load_domain("literature")
    # The opening ~80 tokens of 64 training documents: a corpus small enough to memorise, and
    # exactly what the audit probes (prefix 32 + continuation 32).
    openings = []
    for doc in sorted(literature.split("train").documents, key=lambda d: d.digest):
        ids = tokenizer(doc.text, add_special_tokens=False).input_ids
        if len(ids) >= 80:
            openings.append((tokenizer.decode(ids[:80]), doc.source))
        if len(openings) == DOCUMENTS:
            break
    small = Corpus.from_texts("literature-openings", openings)
    texts = small.texts()
    # Uncoordinated: the shared tensors train too. A coordinated expert (FFN slot, router row and
    # bias only) does not memorise at this size: 1,000 steps on these openings end near loss 2.9.
    overfit = ExpertConfig(steps=args.overfit_steps, lr=args.overfit_lr, public_ratio=0.0,
                           router_init="random", checkpoint_every=0, uncoordinated=True)
    configs = {"overfit": (small, overfit),
               "overfit-dp": (small, overfit.model_copy(update={"dp": DPConfig(epsilon=8.0)})),
               "normal": (literature, ExpertConfig(router_documents=200, checkpoint_every=0))}
    root = Path(tempfile.mkdtemp(prefix="flexo-audit-bench-"))
    rows = {"anchor": {"audit": _audit(args.anchor, texts)}}
    try:
        for name, (corpus, cfg) in configs.items():
            row = _expert(args.anchor, corpus, cfg, root, name)
            row["audit"] = _audit(row.pop("dir"), texts)
            rows[name] = row
            print(name, json.dumps(row))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    card = json.loads((args.anchor / "flexo_anchor.json").read_text())
    report = {"machine": platform.machine(), "torch": torch.__version__,
              "anchor_preset": card.get("preset"), "documents": DOCUMENTS,
              "overfit_config": overfit.model_dump(exclude={"dp"}), "models": rows}
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
