"""Adopt an existing OLMo-2 or FlexOlmo checkpoint as the anchor (the path a user with real
`allenai/...` weights takes). A FlexOlmo checkpoint contributes its public expert (slot 0) as the
dense FFN and its public router rows as r_pub, kept in `public_router.safetensors`; for an OLMo-2
checkpoint r_pub is made from the public mix, as for a trained anchor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import Olmo2Config, Olmo2ForCausalLM, PreTrainedModel

from components.anchor import CARD_FILE, AnchorCard, read_fingerprint, save_anchor
from components.atomic import check_output_dir
from components.checkpoints import load_causal_lm, load_config, load_tokenizer
from components.documents import Corpus
from components.fingerprint import fingerprint_tensors
from components.router_rows import (
    CHECKPOINT,
    PUBLIC_ROUTER_FILE,
    make_public_router,
    router_key,
)


def dense_from_flexolmo(moe: PreTrainedModel) -> tuple[Olmo2ForCausalLM, dict[str, torch.Tensor]]:
    """The OLMo-2 model made of the shared tensors and expert 0, plus r_pub per layer."""
    dense_keys = Olmo2Config().to_dict().keys()
    config = Olmo2Config(**{k: v for k, v in moe.config.to_dict().items() if k in dense_keys})
    state, router = {}, {}
    for name, tensor in moe.state_dict().items():
        prefix = name.rsplit(".mlp.", 1)[0]
        if name.endswith(".mlp.experts.gate_up_proj"):  # (E, 2I, H): gate rows, then up rows
            gate, up = tensor[0].chunk(2, dim=0)
            state[f"{prefix}.mlp.gate_proj.weight"] = gate
            state[f"{prefix}.mlp.up_proj.weight"] = up
        elif name.endswith(".mlp.experts.down_proj"):  # (E, H, I)
            state[f"{prefix}.mlp.down_proj.weight"] = tensor[0]
        elif name.endswith(".mlp.gate.weight"):  # (E, H): row 0 is r_pub
            layer = int(prefix.rsplit(".", 1)[1])
            router[router_key(CHECKPOINT, layer)] = tensor[0].clone()
        else:
            state[name] = tensor
    dense = Olmo2ForCausalLM(config).to(next(iter(state.values())).dtype)
    dense.load_state_dict(state, strict=True)  # asserts every name and shape matches
    return dense, router


def import_anchor(source: str | Path, out: Path, public: Callable[[], Corpus]) -> AnchorCard:
    """Copy a local directory or hub id into `out` as a flexo anchor, with its fingerprint.

    A FlexOlmo checkpoint brings its trained r_pub, a flexo anchor (checked against its recorded
    fingerprint) its r_pub rows; for an OLMo-2 one r_pub is made from the corpus `public()`
    returns (loaded only then).
    """
    check_output_dir(out)
    config = load_config(source)
    tokenizer = load_tokenizer(source)
    model = load_causal_lm(source, dtype="auto")
    if config.model_type == "flex_olmo":
        model, router = dense_from_flexolmo(model)
    elif (Path(source) / CARD_FILE).is_file():
        read_fingerprint(Path(source))  # rows and weights as recorded, or a refusal
        router = load_file(Path(source) / PUBLIC_ROUTER_FILE)
    else:
        router = make_public_router(model, tokenizer, public(),
                                    fingerprint_tensors(model.state_dict()))
    return save_anchor(model, tokenizer, out, extra=router, source=str(source))
