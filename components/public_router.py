"""r_pub, made once with the anchor and stored beside it (`public_router.safetensors`).

Every contributor must train against bit-identical public router rows, or their modules cannot be
merged. Recomputing r_pub on each contributor's machine is not enough: embedding kernels and batch
composition change the last bits. So the anchor carries one row per layer for each router-init
method (`{method}/layers.{i}`), covered by the anchor fingerprint; an imported FlexOlmo checkpoint
carries its own trained rows (`checkpoint/layers.{i}`), which take precedence.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import torch
from safetensors import safe_open
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from components.documents import Corpus
from components.errors import CheckpointError
from components.router_init import RouterInit, domain_vectors

PUBLIC_ROUTER_FILE = "public_router.safetensors"
CHECKPOINT = "checkpoint"


def router_key(method: str, layer: int) -> str:
    return f"{method}/layers.{layer}"


def make_public_router(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                       public: Corpus, anchor_seed: str) -> dict[str, torch.Tensor]:
    """r_pub for every init method, from the public mix's train split, one row per layer."""
    texts = public.split("train").texts()
    layers = model.config.num_hidden_layers
    rows = {}
    for method in get_args(RouterInit):
        vector = domain_vectors(method, {"public": texts}, anchor_seed, model, tokenizer)["public"]
        rows.update({router_key(method, i): vector.clone() for i in range(layers)})
    return rows


def public_router_source(anchor_dir: Path, method: str, layers: int) -> tuple[Path, list[str]]:
    """The file and per-layer keys of the r_pub a module of this anchor trains against."""
    path = Path(anchor_dir) / PUBLIC_ROUTER_FILE
    if not path.is_file():
        raise CheckpointError(f"anchor {anchor_dir} has no {PUBLIC_ROUTER_FILE}; train it with "
                              f"`flexo anchor train` or adopt it with `flexo anchor import`")
    with safe_open(path, framework="pt") as st:
        keys = set(st.keys())
    use = CHECKPOINT if router_key(CHECKPOINT, 0) in keys else method
    wanted = [router_key(use, i) for i in range(layers)]
    if not set(wanted) <= keys:
        raise CheckpointError(f"anchor {anchor_dir} has no public router rows for "
                              f"--router-init {method}")
    return path, wanted


def read_public_router(anchor_dir: Path, method: str, layers: int) -> torch.Tensor:
    """(L, H) rows, bit-exact as stored."""
    path, keys = public_router_source(anchor_dir, method, layers)
    with safe_open(path, framework="pt") as st:
        return torch.stack([st.get_tensor(k) for k in keys])
