"""The expert-module weights file (DESIGN §3): what a contributor publishes, and its checks.

`expert.safetensors` holds, per layer i: `layers.{i}.gate_up_proj` (2I, H), `layers.{i}.down_proj`
(H, I), `layers.{i}.router` (H,), `layers.{i}.bias` (1,) and the frozen `layers.{i}.router_public`
(H,) it was trained against; an uncoordinated (baseline) module adds `shared/<name>` tensors. Its
header metadata names the format, the contributor and the anchor fingerprint. The manifest beside
it (written by flows, see governance.manifest) pins the file's sha256.

Only safetensors are ever read: pickle-based files (`.bin`, `.pt`, ...) run code when loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from components.errors import CheckpointError

FORMAT = "flexo-expert-v1"
METADATA_KEY = "flexo"
WEIGHTS_FILE = "expert.safetensors"
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}
SHARED_PREFIX = "shared/"


class ModuleRef(BaseModel):
    """A module to load: where it is and the hash its manifest promises."""

    model_config = ConfigDict(frozen=True)

    name: str
    directory: Path
    weights_sha256: str


class ModuleHeader(BaseModel):
    """What a module's safetensors header says, read without touching a tensor."""

    name: str
    path: Path
    anchor_fingerprint: str
    num_layers: int
    shapes: dict[str, list[int]]
    uncoordinated: bool


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_module(directory: Path, tensors: dict[str, torch.Tensor], contributor: str,
                 anchor_fingerprint: str, num_layers: int) -> str:
    """Write `expert.safetensors`; returns its sha256."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    path = Path(directory) / WEIGHTS_FILE
    # One metadata key holding canonical JSON: safetensors writes several keys in hash-map order,
    # which would make identical weights hash differently from run to run.
    metadata = json.dumps({"format": FORMAT, "contributor": contributor,
                           "anchor_fingerprint": anchor_fingerprint, "num_layers": num_layers},
                          sort_keys=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path,
              metadata={METADATA_KEY: metadata})
    return file_sha256(path)


def read_header(ref: ModuleRef, anchor_fingerprint: str) -> ModuleHeader:
    """Check a module before any tensor is read: format, hash, anchor. Raises CheckpointError."""
    directory = Path(ref.directory)
    if not directory.is_dir():
        raise CheckpointError(f"module {ref.name}: {directory} is not a directory")
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(f"module {ref.name}: {pickles[0]} is a pickle-format file, which "
                              f"can run code when loaded; flexo accepts only {WEIGHTS_FILE}")
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"module {ref.name}: {directory} has no {WEIGHTS_FILE}; "
                              f"publish the module with `flexo expert train`")
    if file_sha256(path) != ref.weights_sha256:
        raise CheckpointError(f"module {ref.name}: {WEIGHTS_FILE} does not match the sha256 in "
                              f"its manifest (tampered or corrupt); re-publish the module")
    try:
        with safe_open(path, framework="pt") as st:
            meta = json.loads((st.metadata() or {}).get(METADATA_KEY, "{}"))
            shapes = {k: list(st.get_slice(k).get_shape()) for k in st.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"module {ref.name}: {WEIGHTS_FILE} is not a valid safetensors "
                              f"file ({err})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"module {ref.name}: not a flexo expert module "
                              f"(format {meta.get('format')!r})")
    if meta.get("anchor_fingerprint") != anchor_fingerprint:
        raise CheckpointError(
            f"module {ref.name} was trained on anchor {str(meta.get('anchor_fingerprint'))[:12]}, "
            f"not on this anchor {anchor_fingerprint[:12]}; retrain it against this anchor")
    return ModuleHeader(name=ref.name, path=path, anchor_fingerprint=anchor_fingerprint,
                        num_layers=int(meta["num_layers"]), shapes=shapes,
                        uncoordinated=any(k.startswith(SHARED_PREFIX) for k in shapes))


def load_tensor(path: Path, key: str) -> torch.Tensor:
    with safe_open(path, framework="pt") as st:
        return st.get_tensor(key)
