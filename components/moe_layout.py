"""Tensor layouts as data: which HF tensor names hold the shared weights, the dense FFN and the
MoE experts and router, and how a dense OLMo-2 model becomes a FlexOlmo mixture (upcycling).

Names follow transformers 5.x exactly (STACK.md): a FlexOlmo layer stores fused experts
`mlp.experts.gate_up_proj` (E, 2I, H) = [gate; up] per expert and `mlp.experts.down_proj` (E, H, I),
and the router `mlp.gate.weight` (E, H). An OLMo-2 layer stores `mlp.{gate,up,down}_proj.weight`.
"""

from __future__ import annotations

import re

import torch
from transformers import FlexOlmoConfig, FlexOlmoForCausalLM, Olmo2Config, PreTrainedConfig

DENSE_FFN = ("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")
ROUTER = "mlp.gate.weight"
GATE_UP = "mlp.experts.gate_up_proj"
DOWN = "mlp.experts.down_proj"
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_NOT_CONFIG = {"architectures", "model_type", "transformers_version", "_name_or_path", "dtype",
               "torch_dtype"}


def layer_key(i: int, suffix: str) -> str:
    return f"model.layers.{i}.{suffix}"


def split_layer_key(name: str) -> tuple[int, str] | None:
    m = _LAYER.match(name)
    return (int(m.group(1)), m.group(2)) if m else None


def is_shared(name: str) -> bool:
    """Shared = identical in every expert module: everything but FFNs and routers."""
    parts = split_layer_key(name)
    return parts is None or not parts[1].startswith("mlp.")


def moe_config(dense: PreTrainedConfig, num_experts: int, top_k: int) -> FlexOlmoConfig:
    """The FlexOlmo config with the anchor's dimensions: softmax over all experts, top-k, weights
    not renormalised (`norm_topk_prob=False`), no load-balancing loss."""
    keys = set(FlexOlmoConfig().to_dict()) - _NOT_CONFIG
    fields = {k: v for k, v in dense.to_dict().items() if k in keys}
    fields.update(num_experts=num_experts, num_experts_per_tok=min(top_k, num_experts),
                  norm_topk_prob=False, output_router_logits=False)
    return FlexOlmoConfig(**fields)


def dense_config(moe: PreTrainedConfig) -> Olmo2Config:
    keys = set(Olmo2Config().to_dict()) - _NOT_CONFIG
    return Olmo2Config(**{k: v for k, v in moe.to_dict().items() if k in keys})


def fuse_ffn(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return torch.cat([gate, up], dim=0)  # (2I, H): FlexOlmoExperts chunks it back into gate, up


def upcycle(dense_state: dict[str, torch.Tensor], config: PreTrainedConfig,
            router: torch.Tensor, top_k: int = 2) -> FlexOlmoForCausalLM:
    """An E-expert FlexOlmo model whose every expert is a copy of the dense FFN.

    `router` is (L, E, H): one row per expert per layer. With equal experts, any routing gives the
    dense model's output (weights sum to 1 at top-k = E), which the tests check.
    """
    num_layers, num_experts, _ = router.shape
    model_config = moe_config(config, num_experts, top_k)
    state = {k: v for k, v in dense_state.items() if is_shared(k)}
    for i in range(num_layers):
        gate, up, down = (dense_state[layer_key(i, n)] for n in DENSE_FFN)
        state[layer_key(i, GATE_UP)] = fuse_ffn(gate, up).unsqueeze(0).repeat(num_experts, 1, 1)
        state[layer_key(i, DOWN)] = down.unsqueeze(0).repeat(num_experts, 1, 1)
        state[layer_key(i, ROUTER)] = router[i].clone()
    model = FlexOlmoForCausalLM(model_config).to(next(iter(state.values())).dtype)
    model.load_state_dict(state, strict=True)  # every name and shape asserted
    return model
