"""Anchor training throughput and model-FLOPs utilisation (MFU) per preset, on this machine.

On the CPU (fp32): MFU = model FLOPs per second / fp32 matmul FLOP/s measured in the same process
(so the ratio is meaningful on any machine). On CUDA (`--device cuda`, bf16 autocast as training
runs there): MFU against the device's dense bf16 peak from its datasheet (`DATASHEET_BF16`; the
bf16 GEMM peak measured in the same process is reported beside it, and stands in for a device the
table lacks). Model FLOPs per token follow the PaLM convention: 6 N + 12 L H T, with N the matmul
parameters (lm_head included, embedding lookup excluded). The timed steps run the real training
loop (`train_causal_lm`) on random token windows, after warm-up steps. `--shape` adds a preset of
your own (AnchorPreset fields as JSON), e.g. one that fills the device.

    python benchmarks/train_throughput.py [--presets tiny small base] [--device cpu|cuda]
        [--shape '{"name": "1b", "hidden_size": 2048, ...}'] [--out FILE]
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

RESULTS = Path(__file__).parent / "results"
TIMED_STEPS = {"tiny": 40, "small": 15, "base": 6}
# Dense bf16 tensor-core peak, FLOP/s, by a name `torch.cuda.get_device_name()` contains.
DATASHEET_BF16 = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362.05e12}


def matmul_peak(n: int = 2048, reps: int = 10, device: str = "cpu",
                dtype: torch.dtype = torch.float32) -> float:
    """Best GEMM FLOP/s over `reps` (n x n) @ (n x n) products."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b  # warm-up
    sync()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def datasheet_peak(device: str) -> float | None:
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in DATASHEET_BF16.items() if key in name), None)


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


def measure(preset: AnchorPreset, steps: int, peak: float, device: str = "cpu") -> dict:
    model = build_model(preset, _FakeTokenizer(preset.vocab_size)).to(device)
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
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--shape", type=AnchorPreset.model_validate_json, action="append", default=[],
                    help="another preset: AnchorPreset fields as JSON (repeatable)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cuda = args.device == "cuda"
    dtype, n = (torch.bfloat16, 8192) if cuda else (torch.float32, 2048)
    presets = [PRESETS[name] for name in args.presets] + args.shape
    datasheet = datasheet_peak(args.device)
    peak = matmul_peak(n, device=args.device, dtype=dtype)
    rows = [measure(p, TIMED_STEPS.get(p.name, 10), datasheet or peak, args.device)
            for p in presets]
    peak_after = matmul_peak(n, device=args.device, dtype=dtype)  # drift: report both ends
    report = {"machine": platform.machine(), "torch": torch.__version__,
              "device": torch.cuda.get_device_name() if cuda else "cpu",
              "threads": torch.get_num_threads(), "dtype": "bfloat16" if cuda else "float32",
              "datasheet_peak_gflops": datasheet / 1e9 if datasheet else None,
              "matmul_peak_gflops": round(max(peak, peak_after) / 1e9, 1),
              "matmul_peak_gflops_start_end": [round(peak / 1e9, 1), round(peak_after / 1e9, 1)],
              "results": rows}
    args.out = args.out or RESULTS / f"train_throughput{'_cuda' if cuda else ''}.json"
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    print(RENDERERS["train_throughput"](report))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
