"""Tensor fingerprints: what proves that a checkpoint holds none of a withdrawn module's weights.

Every tensor is hashed as float32 bytes with its shape, so the same values hash the same in a
module file and in a merged checkpoint. A merge stores each expert as one slice of a fused
(E, ...) tensor and each router row as one row of (E, H): those slices and rows are hashed one by
one as well as whole, so a module's FFN found anywhere in a release is found by hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from components.errors import CheckpointError
from components.moe_layout import DOWN, GATE_UP, ROUTER, split_layer_key

# The parts of a module that are its own (the frozen public row and the bias are not).
_MODULE_OWN = ("gate_up_proj", "down_proj", "router")
_PER_EXPERT = (GATE_UP, DOWN, ROUTER)


def tensor_hash(tensor: torch.Tensor) -> str:
    t = tensor.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha256(repr(tuple(t.shape)).encode())
    digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def _tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            for name in fh.keys():  # noqa: SIM118 (safe_open is not iterable)
                yield name, fh.get_tensor(name)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); restore it "
                              f"or remove the version") from None


def module_tensor_hashes(weights_file: Path) -> set[str]:
    """Hashes of a module's own tensors: each layer's fused FFN, down projection, router row."""
    return {tensor_hash(t) for name, t in _tensors(weights_file)
            if name.rsplit(".", 1)[-1] in _MODULE_OWN}


def checkpoint_tensor_hashes(directory: Path) -> set[str]:
    """Hashes of every tensor of every safetensors file in `directory`, and of each contributor
    expert's slice of the fused expert and router tensors (slice 0 is the public expert: the
    anchor's FFN, which a module trained from it may still share in places)."""
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory} holds no *.safetensors weights; pass a release "
                              f"checkpoint directory")
    found = set()
    for path in files:
        for name, t in _tensors(path):
            found.add(tensor_hash(t))
            parts = split_layer_key(name)
            if parts and parts[1] in _PER_EXPERT:
                found.update(tensor_hash(part) for part in t[1:])  # 0: the anchor's own
    return found
