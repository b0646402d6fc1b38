"""The baselines FlexOlmo is measured against (paper Table 1), built from the same modules.

- model soup: one dense model whose FFN is the average of every expert's FFN (public included);
- BTM ensemble: the average of the next-token distributions of each contributor's own model
  (its 2-expert model: the anchor plus its one module);
- uncoordinated experts: modules trained with `ExpertConfig(uncoordinated=True)` (shared tensors
  free too), merged by `merge`, which averages their shared tensors.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import FlexOlmoForCausalLM, Olmo2ForCausalLM
from transformers.modeling_outputs import CausalLMOutput

from components.checkpoints import load_causal_lm
from components.expert_module import ModuleRef
from components.merge import build_merge
from components.moe_layout import DENSE_FFN, DOWN, GATE_UP, dense_config, is_shared, layer_key
from components.router import install_routers, use_fast_experts


def model_soup(merged_dir: Path) -> Olmo2ForCausalLM:
    """Average the experts' FFNs of a merged model into one dense OLMo-2 model."""
    moe = load_causal_lm(merged_dir)
    state = {k: v for k, v in moe.state_dict().items() if is_shared(k)}
    for i in range(moe.config.num_hidden_layers):
        gate, up = moe.state_dict()[layer_key(i, GATE_UP)].mean(dim=0).chunk(2, dim=0)
        state[layer_key(i, DENSE_FFN[0])], state[layer_key(i, DENSE_FFN[1])] = gate, up
        state[layer_key(i, DENSE_FFN[2])] = moe.state_dict()[layer_key(i, DOWN)].mean(dim=0)
    dense = Olmo2ForCausalLM(dense_config(moe.config))
    dense.load_state_dict(state, strict=True)
    return dense.eval()


def contributor_model(anchor_dir: Path, module: ModuleRef) -> FlexOlmoForCausalLM:
    """A contributor's own model: the anchor plus its one module (with its bias), in memory."""
    state, bias, config, _ = build_merge(anchor_dir, [module], top_k=2)
    model = FlexOlmoForCausalLM(config)
    model.load_state_dict(state, strict=True)
    install_routers(model, bias=bias)
    use_fast_experts(model, "cpu")
    return model.eval()


class BTMEnsemble(nn.Module):
    """Branch-Train-Merge at inference: log of the mean of the members' softmax outputs."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, input_ids: torch.Tensor, **kwargs) -> CausalLMOutput:
        probs = torch.stack([m(input_ids=input_ids).logits.float().softmax(dim=-1)
                             for m in self.members]).mean(dim=0)  # (B, T, V)
        return CausalLMOutput(logits=probs.clamp_min(1e-30).log())
