"""The baselines FlexOlmo is measured against (paper Table 1), built from the same modules.

- model soup: one dense model whose FFN is the average of every expert's FFN (public included);
- BTM ensemble: the average of the next-token distributions of each contributor's own model
  (its 2-expert model: the anchor plus its one module);
- uncoordinated experts: modules trained with `ExpertConfig(uncoordinated=True)` (shared tensors
  free too), merged by `merge`, which averages their shared tensors;
- unrestricted upper bound: the dense anchor with every parameter trained on the union of all
  contributors' data (pooled, which FlexOlmo exists to avoid), for as many tokens as all experts
  together saw. The paper's bound is an MoE with 2x the FLOPs; this one has the anchor's FLOPs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import FlexOlmoForCausalLM, Olmo2ForCausalLM
from transformers.modeling_outputs import CausalLMOutput

from components.checkpoints import load_causal_lm, load_tokenizer
from components.documents import Corpus
from components.expert_module import ModuleRef
from components.expert_training import ExpertConfig, mixed_sampler
from components.lm_training import TrainConfig, train_causal_lm
from components.merge import build_merge
from components.moe_layout import DENSE_FFN, DOWN, GATE_UP, dense_config, is_shared, layer_key
from components.router import install_routers, use_fast_experts
from components.token_data import token_stream


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


def train_union_model(anchor_dir: Path, corpora: list[Corpus], public: Corpus, cfg: ExpertConfig,
                      progress: bool = True) -> Olmo2ForCausalLM:
    """The upper bound: the anchor fully fine-tuned on all domains pooled, with the same public
    share per batch as the experts and `len(corpora)` times one expert's steps."""
    model = load_causal_lm(anchor_dir)
    tokenizer = load_tokenizer(anchor_dir)
    steps = cfg.steps * len(corpora)
    per_domain = cfg.steps * cfg.batch_size * cfg.seq_len
    pooled = torch.cat([token_stream(c.training_texts(), tokenizer, max_tokens=per_domain)
                        for c in corpora])  # equal tokens per domain, sampled uniformly
    public_stream = token_stream(public.split("train").texts(), tokenizer,
                                 max_tokens=per_domain * len(corpora))
    train_causal_lm(model, mixed_sampler(pooled, public_stream, cfg),
                    # A quarter of the experts' rate: FFN-only experts take a high rate, full
                    # fine-tuning wants the anchor's own (1e-3 for `base`).
                    TrainConfig(steps=steps, lr=cfg.lr / 4, warmup_steps=cfg.warmup_steps,
                                weight_decay=0.0, seed=cfg.seed),
                    desc="union (upper bound)", progress=progress)
    return model.eval()
