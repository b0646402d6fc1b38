"""Anchor training throughput and model-FLOPs utilisation (MFU) per preset, on this machine.

MFU = model FLOPs per second / fp32 matmul FLOP/s measured in the same process (so the ratio is
meaningful on any machine). Model FLOPs per token follow the PaLM convention: 6 N + 12 L H T, with
N the matmul parameters (lm_head included, embedding lookup excluded). The timed steps run the real
training loop (`train_causal_lm`) on random token windows, after warm-up steps.

    python benchmarks/train_throughput.py [--presets tiny small base] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from benchmarks.readme_tables import RENDERERS
from components.anchor import PRESETS, AnchorPreset, build_model
from components.atomic import atomic_write
from components.lm_training import TrainConfig, train_causal_lm
from components.token_data import window_sampler

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"
TIMED_STEPS = {"tiny": 40, "small": 15, "base": 6}


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    """Best fp32 GEMM FLOP/s over `reps` (n x n) @ (n x n) products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def model_flops_per_token(model: torch.nn.Module, preset: AnchorPreset) -> float:
    n = sum(p.numel() for name, p in model.named_parameters()
            if p.dim() == 2 and "embed_tokens" not in name)
    return 6 * n + 12 * preset.num_layers * preset.hidden_size * preset.seq_len


class _FakeTokenizer:
    """Just what `build_model` reads: the vocabulary size and special ids."""

    def __init__(self, vocab: int) -> None:
        self.vocab, self.pad_token_id, self.eos_token_id = vocab, 1, 0

    def __len__(self) -> int:
        return self.vocab


def measure(preset: AnchorPreset, steps: int, peak: float) -> dict:
    model = build_model(preset, _FakeTokenizer(preset.vocab_size))
    stream = torch.randint(0, preset.vocab_size, (200_000,),
                           generator=torch.Generator().manual_seed(0))
    batches = window_sampler(stream, preset.seq_len, preset.batch_size)
    train_causal_lm(model, batches, TrainConfig(steps=3, warmup_steps=1), progress=False)
    result = train_causal_lm(model, batches, TrainConfig(steps=steps, warmup_steps=1),
                             desc=f"bench[{preset.name}]", progress=False)
    flops = model_flops_per_token(model, preset) * result.tokens_per_second
    return {"preset": preset.name, "parameters": sum(p.numel() for p in model.parameters()),
            "tokens_per_second": round(result.tokens_per_second, 1),
            "model_gflops_per_second": round(flops / 1e9, 2), "mfu": round(flops / peak, 4),
            "timed_steps": steps, "tokens_per_step": preset.batch_size * preset.seq_len,
            "est_full_training_minutes": round(preset.train_tokens / result.tokens_per_second / 60, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    peak = matmul_peak()
    rows = [measure(PRESETS[name], TIMED_STEPS.get(name, 10), peak) for name in args.presets]
    peak_after = matmul_peak()  # the machine may drift: report both ends
    report = {"machine": platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "dtype": "float32",
              "matmul_peak_gflops": round(max(peak, peak_after) / 1e9, 1),
              "matmul_peak_gflops_start_end": [round(peak / 1e9, 1), round(peak_after / 1e9, 1)],
              "results": rows}
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    print(RENDERERS["train_throughput"](report))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
