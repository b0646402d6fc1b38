"""The anchor fingerprint: sha256 over the canonical bytes of every shared tensor (DESIGN §3).

Canonical = tensors in sorted name order, each as name, dtype, shape and raw little-endian bytes.
Two checkpoints share a fingerprint only if every tensor is bit-identical, so an expert trained
against another anchor is refused by name before a single weight is merged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open

from components.errors import CheckpointError


def _update(h: hashlib._Hash, name: str, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    h.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}\n".encode())
    h.update(t.view(-1).view(torch.uint8).numpy().tobytes())


def fingerprint_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        _update(h, name, tensors[name])
    return h.hexdigest()


def fingerprint_checkpoint(directory: Path) -> str:
    """Fingerprint of the tensors in a checkpoint directory's safetensors files, streamed by name."""
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory} holds no .safetensors weights; "
                              f"save the model with save_pretrained(safe_serialization=True)")
    where = {}
    for f in files:
        with safe_open(f, framework="pt") as st:
            where.update({name: f for name in st.keys()})  # noqa: SIM118 (not a dict)
    h = hashlib.sha256()
    for name in sorted(where):
        with safe_open(where[name], framework="pt") as st:
            _update(h, name, st.get_tensor(name))
    return h.hexdigest()
