"""Merge (DESIGN §1.5): the anchor and N expert modules become one FlexOlmo checkpoint.

A merge is first a *plan* — for each output tensor, which source tensors it is built from — that
can be checked and hashed without loading a weight; then the plan is executed tensor by tensor from
safetensors. Expert 0 is the anchor's FFN with r_pub; expert j is module j's FFN and router row, in
the order given. Modules of another anchor, tampered files and wrong shapes are refused before the
output directory exists; the output is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import torch
from pydantic import BaseModel
from safetensors import safe_open
from safetensors.torch import save_file

from components.anchor import read_fingerprint
from components.atomic import atomic_output_dir, check_output_dir
from components.checkpoints import load_config, load_tokenizer
from components.errors import CheckpointError
from components.expert_module import (
    SHARED_PREFIX,
    ModuleHeader,
    ModuleRef,
    load_tensor,
    read_header,
)
from components.moe_layout import DENSE_FFN, DOWN, GATE_UP, ROUTER, is_shared, layer_key, moe_config
from components.router_rows import PUBLIC_ROUTER_FILE

log = logging.getLogger(__name__)

PUBLIC = "public"
BIAS_FILE = "flexo_router.safetensors"
RECORD_FILE = "flexo_merge.json"


class Source(BaseModel):
    file: str
    key: str


class TensorPlan(BaseModel):
    """Output tensor `name` = combine(parts), each part the dim-0 concatenation of its sources."""

    name: str
    parts: list[list[Source]]
    combine: str  # "copy" (one part) | "stack" (new expert dim) | "mean" (uncoordinated shared)


class MergePlan(BaseModel):
    anchor_fingerprint: str
    experts: list[str]  # expert order, public first
    top_k: int
    tensors: list[TensorPlan]
    biases: list[TensorPlan]  # (E,) per layer, saved in BIAS_FILE

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class MergeRecord(BaseModel):
    anchor_fingerprint: str
    experts: list[dict[str, str]]  # name, weights_sha256
    top_k: int
    plan_digest: str
    router_tuning: dict[str, float] | None = None


def _anchor_files(anchor_dir: Path) -> dict[str, tuple[str, list[int]]]:
    """Anchor tensor name -> (file, shape), from the safetensors headers only."""
    found: dict[str, tuple[str, list[int]]] = {}
    for f in sorted(Path(anchor_dir).glob("*.safetensors")):
        if f.name == PUBLIC_ROUTER_FILE:
            continue
        with safe_open(f, framework="pt") as st:
            for k in st.keys():  # noqa: SIM118
                found[k] = (str(f), list(st.get_slice(k).get_shape()))
    return found


def _expected_module_shapes(anchor: dict[str, tuple[str, list[int]]], layers: int,
                            ) -> dict[str, list[int]]:
    gate, _, down = (anchor[layer_key(0, n)][1] for n in DENSE_FFN)  # (I, H), (H, I)
    hidden = gate[1]
    shapes = {}
    for i in range(layers):
        shapes[f"layers.{i}.gate_up_proj"] = [2 * gate[0], hidden]
        shapes[f"layers.{i}.down_proj"] = down
        shapes[f"layers.{i}.router"] = [hidden]
        shapes[f"layers.{i}.bias"] = [1]
        shapes[f"layers.{i}.router_public"] = [hidden]
    return shapes


def _check_shapes(header: ModuleHeader, expected: dict[str, list[int]],
                  anchor: dict[str, tuple[str, list[int]]]) -> None:
    for key, shape in expected.items():
        got = header.shapes.get(key)
        if got != shape:
            raise CheckpointError(f"module {header.name}: {key} has shape {got}, this anchor needs "
                                  f"{shape}; the module was built for another model size")
    for key, shape in header.shapes.items():
        if key.startswith(SHARED_PREFIX) and anchor.get(key[len(SHARED_PREFIX):], (0, None))[1] != shape:
            raise CheckpointError(f"module {header.name}: {key} has shape {shape}, which this "
                                  f"anchor does not have")


def plan_merge(anchor_dir: Path, headers: list[ModuleHeader], top_k: int,
               anchor_fingerprint: str) -> MergePlan:
    """Which output tensor comes from which source tensors; no weights are read."""
    anchor = _anchor_files(anchor_dir)
    layers = load_config(anchor_dir).num_hidden_layers
    expected = _expected_module_shapes(anchor, layers)
    for h in headers:
        _check_shapes(h, expected, anchor)
    uncoordinated = [h for h in headers if h.uncoordinated]
    if uncoordinated and len(uncoordinated) != len(headers):
        raise CheckpointError("cannot merge coordinated with uncoordinated modules; merge one kind")

    def src(file: str | Path, key: str) -> Source:
        return Source(file=str(file), key=key)

    tensors: list[TensorPlan] = []
    for name, (file, _) in anchor.items():
        if not is_shared(name):
            continue
        if uncoordinated:
            parts = [[src(h.path, SHARED_PREFIX + name)] for h in headers]
            tensors.append(TensorPlan(name=name, parts=parts, combine="mean"))
        else:
            tensors.append(TensorPlan(name=name, parts=[[src(file, name)]], combine="copy"))
    first = headers[0].path
    biases = []
    for i in range(layers):
        gate, up, down = (anchor[layer_key(i, n)][0] for n in DENSE_FFN)
        gate_up = [[src(gate, layer_key(i, DENSE_FFN[0])), src(up, layer_key(i, DENSE_FFN[1]))]]
        gate_up += [[src(h.path, f"layers.{i}.gate_up_proj")] for h in headers]
        tensors.append(TensorPlan(name=layer_key(i, GATE_UP), parts=gate_up, combine="stack"))
        downs = [[src(down, layer_key(i, DENSE_FFN[2]))]]
        downs += [[src(h.path, f"layers.{i}.down_proj")] for h in headers]
        tensors.append(TensorPlan(name=layer_key(i, DOWN), parts=downs, combine="stack"))
        public_row = [src(first, f"layers.{i}.router_public")]  # equal in all modules (checked)
        rows = [public_row] + [[src(h.path, f"layers.{i}.router")] for h in headers]
        tensors.append(TensorPlan(name=layer_key(i, ROUTER), parts=rows, combine="stack"))
        biases.append(TensorPlan(name=layer_key(i, "mlp.gate.bias"), parts=[[
            src(h.path, f"layers.{i}.bias")] for h in headers], combine="stack"))
    return MergePlan(anchor_fingerprint=anchor_fingerprint,
                     experts=[PUBLIC, *(h.name for h in headers)],
                     top_k=min(top_k, len(headers) + 1), tensors=tensors, biases=biases)


def _build(plan: TensorPlan, files: dict[str, object]) -> torch.Tensor:
    parts = [[files[s.file].get_tensor(s.key) for s in part] for part in plan.parts]
    parts = [p[0] if len(p) == 1 else torch.cat(p) for p in parts]
    if plan.combine == "copy":
        return parts[0]
    if plan.combine == "mean":
        return torch.stack(parts).mean(dim=0)
    return torch.stack(parts)


def execute_plan(plan: MergePlan) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The merged state dict and the router bias (L, E), tensor by tensor from safetensors."""
    with ExitStack() as stack:
        names = {s.file for t in (*plan.tensors, *plan.biases) for part in t.parts for s in part}
        files = {f: stack.enter_context(safe_open(f, framework="pt")) for f in names}
        state = {t.name: _build(t, files) for t in plan.tensors}
        bias = torch.stack([torch.cat([torch.zeros(1), _build(b, files).reshape(-1)])
                            for b in plan.biases])  # (L, E), public 0
    return state, bias


def _check_public_rows(headers: list[ModuleHeader], layers: int) -> None:
    """All modules must have been trained against the same r_pub (the same --router-init)."""
    for h in headers[1:]:
        for i in range(layers):
            key = f"layers.{i}.router_public"
            if not torch.equal(load_tensor(h.path, key), load_tensor(headers[0].path, key)):
                raise CheckpointError(f"module {h.name} was trained against another public router "
                                      f"row than {headers[0].name} (a different --router-init); "
                                      f"retrain them with the same one")


Tuner = Callable[[dict[str, torch.Tensor], torch.Tensor, object], tuple[
    dict[str, torch.Tensor], torch.Tensor, dict[str, float]]]


def build_merge(anchor_dir: Path, modules: list[ModuleRef], top_k: int = 2,
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, object, MergePlan]:
    """Check, plan and execute a merge in memory: (state dict, bias (L, E), config, plan)."""
    names = [m.name for m in modules]
    if not modules:
        raise CheckpointError("a merge needs at least one expert module; pass --expert DIR")
    if len(set(names)) != len(names) or PUBLIC in names:
        raise CheckpointError(f"expert names must be unique and not '{PUBLIC}': {names}")
    fingerprint = read_fingerprint(anchor_dir)
    headers = [read_header(m, fingerprint) for m in modules]  # refusals before any tensor
    plan = plan_merge(anchor_dir, headers, top_k, fingerprint)
    anchor_config = load_config(anchor_dir)
    _check_public_rows(headers, anchor_config.num_hidden_layers)
    config = moe_config(anchor_config, len(plan.experts), plan.top_k)
    config.flexo_experts = plan.experts
    state, bias = execute_plan(plan)
    return state, bias, config, plan


def merge(anchor_dir: Path, modules: list[ModuleRef], out: Path, top_k: int = 2,
          tune: Tuner | None = None) -> MergeRecord:
    """Merge `modules` (in order) onto the anchor and write a FlexOlmo checkpoint to `out`."""
    check_output_dir(out)
    state, bias, config, plan = build_merge(anchor_dir, modules, top_k)
    tuning = None
    if tune is not None:
        state, bias, tuning = tune(state, bias, config)
    tokenizer = load_tokenizer(anchor_dir)
    record = MergeRecord(anchor_fingerprint=plan.anchor_fingerprint, top_k=plan.top_k,
                         experts=[{"name": m.name, "weights_sha256": m.weights_sha256}
                                  for m in modules],
                         plan_digest=plan.digest(), router_tuning=tuning)
    with atomic_output_dir(out) as tmp:
        config.save_pretrained(tmp)
        save_file({k: v.contiguous() for k, v in state.items()}, tmp / "model.safetensors",
                  metadata={"format": "pt"})
        save_file({layer_key(i, "mlp.gate.bias"): bias[i].contiguous()
                   for i in range(bias.shape[0])}, tmp / BIAS_FILE)
        tokenizer.save_pretrained(tmp)
        (tmp / RECORD_FILE).write_text(record.model_dump_json(indent=2) + "\n")
        (tmp / "merge_plan.json").write_text(json.dumps(plan.model_dump(), indent=1) + "\n")
    log.info("merged %d experts into %s (plan %s)", len(modules), out, plan.digest()[:12])
    return record
