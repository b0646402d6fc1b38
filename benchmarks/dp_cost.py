"""What differential privacy costs in training speed: DP expert training tokens/s over plain expert
training tokens/s, both through `train_expert` with the same config, in the same process.

DP computes one gradient per sample (torch.func vmap), clips each and adds noise; plain training
computes one gradient per batch. The anchor has random weights (speed does not depend on them);
the contributor text is the built-in literature corpus.

    python -m benchmarks.dp_cost [--preset small] [--steps 12] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
from pathlib import Path

import torch

from components.anchor import PRESETS, build_model, save_anchor
from components.atomic import atomic_write
from components.builtin_corpora import PUBLIC, load_domain
from components.dp_training import DPConfig
from components.expert_training import ExpertConfig, train_expert
from components.router_rows import router_key
from components.tokenizer import train_tokenizer

RESULTS = Path(__file__).parent / "results" / "dp_cost.json"


def _rate(anchor: Path, cfg: ExpertConfig, workdir: Path) -> dict:
    corpus, public = load_domain("literature"), load_domain(PUBLIC)
    warm = cfg.model_copy(update={"steps": 2, "warmup_steps": 1})
    train_expert(anchor, "bench", corpus, public, warm, workdir / "warm", progress=False)
    result = train_expert(anchor, "bench", corpus, public, cfg, workdir / "timed", progress=False)
    shutil.rmtree(workdir)
    return {"tokens_per_second": round(result.metrics["tokens_per_second"], 1),
            "train_seconds": round(result.metrics["train_seconds"], 2),
            "epsilon": result.privacy.epsilon if result.privacy else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--epsilon", type=float, default=8.0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    preset = PRESETS[args.preset]
    root = Path(tempfile.mkdtemp(prefix="flexo-dp-bench-"))
    try:
        tokenizer = train_tokenizer(load_domain(PUBLIC).split("train").texts(), preset.vocab_size)
        dense = build_model(preset, tokenizer)
        c = dense.config
        rows = {router_key(m, i): torch.randn(c.hidden_size) for m in ("embed", "random", "hidden")
                for i in range(c.num_hidden_layers)}
        save_anchor(dense, tokenizer, root / "anchor", extra=rows, source="bench")
        base = ExpertConfig(steps=args.steps, warmup_steps=2, router_init="random",
                            checkpoint_every=0)
        plain = _rate(root / "anchor", base, root / "plain")
        dp = _rate(root / "anchor", base.model_copy(update={"dp": DPConfig(epsilon=args.epsilon)}),
                   root / "dp")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = {"machine": platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "preset": preset.name, "steps": args.steps,
              "batch_size": base.batch_size, "seq_len": base.seq_len,
              "public_ratio": base.public_ratio, "plain": plain, "dp": dp,
              "ratio": round(dp["tokens_per_second"] / plain["tokens_per_second"], 3)}
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
