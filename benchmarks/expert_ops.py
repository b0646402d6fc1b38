"""Expert operations on this machine, each as a ratio against a baseline run in the same process.

(a) coordinated expert training tokens/s over full-parameter training of the same 2-expert model;
(b) merge bytes/s over a plain file copy of the same bytes;
(c) merged-model inference tokens/s for N = 2, 4, 8 experts at top-2 over the dense anchor, next to
    the ratio that forward FLOP counts predict;
(d) inference tokens/s with half the private experts masked over no mask.

Models are `base`-sized (hidden 384, 6 layers) with random weights: speed does not depend on them.

    python benchmarks/expert_ops.py [--preset base] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from components.anchor import PRESETS, build_model, save_anchor
from components.atomic import atomic_write
from components.builtin_corpora import PUBLIC, load_domain
from components.expert_module import ModuleRef, write_module
from components.lm_training import TrainConfig, train_causal_lm
from components.merge import merge
from components.moe_layout import DENSE_FFN, fuse_ffn, is_shared, layer_key, upcycle
from components.router import install_routers, set_active, use_fast_experts
from components.router_rows import router_key
from components.token_data import window_sampler
from components.tokenizer import train_tokenizer

RESULTS = Path(__file__).parent / "results" / "expert_ops.json"


def _moe(dense, experts: int, top_k: int = 2):
    c = dense.config
    g = torch.Generator().manual_seed(experts)
    router = torch.randn(c.num_hidden_layers, experts, c.hidden_size, generator=g) * 0.1
    model = upcycle(dense.state_dict(), c, router, top_k=top_k)
    install_routers(model)
    use_fast_experts(model, "cpu")  # as flexo's runtime does on CPU
    return model.eval()


def training_ratio(dense, preset, steps: int = 8) -> dict:
    stream = torch.randint(0, preset.vocab_size, (100_000,), generator=torch.Generator().manual_seed(0))
    sample = window_sampler(stream, 128, preset.batch_size)
    rates = {}
    for mode in ("full", "coordinated"):
        model = _moe(dense, 2)
        params = {}
        for name, p in model.named_parameters():
            p.requires_grad_(mode == "full" or not is_shared(name))
            if p.requires_grad:
                params[name] = p
        cfg = TrainConfig(steps=2, warmup_steps=1)
        train_causal_lm(model, sample, cfg, params=params, progress=False)  # warm-up
        result = train_causal_lm(model, sample, TrainConfig(steps=steps, warmup_steps=1),
                                 params=params, progress=False)
        rates[mode] = result.tokens_per_second
    return {"coordinated_tokens_per_second": round(rates["coordinated"], 1),
            "full_tokens_per_second": round(rates["full"], 1),
            "ratio": round(rates["coordinated"] / rates["full"], 3)}


def merge_ratio(dense, tokenizer, experts: int = 4) -> dict:
    root = Path(tempfile.mkdtemp(prefix="flexo-bench-"))
    try:
        c = dense.config
        rows = {router_key("embed", i): torch.randn(c.hidden_size) for i in range(c.num_hidden_layers)}
        card = save_anchor(dense, tokenizer, root / "anchor", extra=rows, source="bench")
        refs = []
        state = dense.state_dict()
        for j in range(experts):
            tensors = {}
            for i in range(c.num_hidden_layers):
                gate, up, down = (state[layer_key(i, n)] for n in DENSE_FFN)
                tensors[f"layers.{i}.gate_up_proj"] = fuse_ffn(gate, up) + 0.01 * j
                tensors[f"layers.{i}.down_proj"] = down.clone()
                tensors[f"layers.{i}.router"] = torch.randn(c.hidden_size)
                tensors[f"layers.{i}.bias"] = torch.zeros(1)
                tensors[f"layers.{i}.router_public"] = rows[router_key("embed", i)]
            (root / f"m{j}").mkdir()
            sha = write_module(root / f"m{j}", tensors, f"e{j}", card.fingerprint, c.num_hidden_layers)
            refs.append(ModuleRef(name=f"e{j}", directory=root / f"m{j}", weights_sha256=sha))
        t = time.perf_counter()
        merge(root / "anchor", refs, root / "merged")
        merge_s = time.perf_counter() - t
        size = (root / "merged" / "model.safetensors").stat().st_size
        t = time.perf_counter()
        shutil.copyfile(root / "merged" / "model.safetensors", root / "copy.safetensors")
        copy_s = time.perf_counter() - t
        return {"experts": experts, "bytes": size,
                "merge_mb_per_second": round(size / merge_s / 1e6, 1),
                "copy_mb_per_second": round(size / copy_s / 1e6, 1),
                "ratio": round(copy_s / merge_s, 3)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


@torch.no_grad()
def _paired_rates(a, b, ids: torch.Tensor, reps: int = 7) -> tuple[float, float]:
    """Median tokens/s of two models timed alternately, so drift on a shared machine hits both."""
    a(ids), b(ids)  # warm-up
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(reps):
        for model, sink in ((a, times[0]), (b, times[1])):
            t = time.perf_counter()
            model(ids)
            sink.append(time.perf_counter() - t)
    return tuple(ids.numel() / statistics.median(s) for s in times)


def _forward_flops_per_token(config, experts: int | None, top_k: int = 2) -> float:
    h, i, layers, t = (config.hidden_size, config.intermediate_size, config.num_hidden_layers, 256)
    attention = 4 * h * h
    ffn = 3 * h * i
    per_layer = attention + ffn * (1 if experts is None else min(top_k, experts))
    per_layer += 0 if experts is None else experts * h  # router
    return 2 * (layers * per_layer + config.vocab_size * h) + 4 * layers * h * t


def inference_ratios(dense) -> tuple[list[dict], dict]:
    ids = torch.randint(0, dense.config.vocab_size, (8, 256), generator=torch.Generator().manual_seed(0))
    dense.eval()
    rows = []
    for experts in (2, 4, 8):
        model = _moe(dense, experts)
        rate, base = _paired_rates(model, dense, ids)
        predicted = (_forward_flops_per_token(dense.config, None)
                     / _forward_flops_per_token(dense.config, experts))
        rows.append({"experts": experts, "top_k": 2, "tokens_per_second": round(rate, 1),
                     "dense_tokens_per_second": round(base, 1),
                     "measured_ratio": round(rate / base, 3), "flops_ratio": round(predicted, 3),
                     "off_by": round(rate / base / predicted - 1, 3)})
        if experts == 8:
            masked_model = _moe(dense, experts)
            set_active(masked_model, [True, True, True, True, False, False, False, True])
            masked, rate = _paired_rates(masked_model, model, ids)
            mask = {"experts": 8, "masked": 3, "tokens_per_second": round(masked, 1),
                    "unmasked_tokens_per_second": round(rate, 1), "ratio": round(masked / rate, 3)}
    return rows, mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    preset = PRESETS[args.preset]
    texts = load_domain(PUBLIC).split("train").texts()
    tokenizer = train_tokenizer(texts, preset.vocab_size)
    dense = build_model(preset, tokenizer)
    train = training_ratio(dense, preset)
    merged = merge_ratio(dense, tokenizer)
    inference, mask = inference_ratios(dense)
    report = {"machine": platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "preset": preset.name,
              "experts_implementation": _moe(dense, 2).config._experts_implementation,
              "training": train, "merge": merged, "inference": inference, "mask": mask}
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
