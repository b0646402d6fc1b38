"""Optional router tuning (DESIGN §1.6): after a merge, only router rows and biases train, experts
and every other tensor frozen, on a small public proxy set (public text is everyone's)."""

from __future__ import annotations

import torch
from pydantic import BaseModel, Field
from transformers import FlexOlmoForCausalLM, PreTrainedConfig

from components.lm_training import TrainConfig, train_causal_lm
from components.moe_layout import ROUTER
from components.router import install_routers, routers
from components.token_data import token_stream, window_sampler


class RouterTuningConfig(BaseModel):
    steps: int = Field(50, gt=0)
    batch_size: int = Field(16, gt=0)
    seq_len: int = Field(128, gt=1)
    lr: float = Field(1e-3, gt=0)
    seed: int = 0


def tune_routers(state: dict[str, torch.Tensor], bias: torch.Tensor, config: PreTrainedConfig,
                 proxy: torch.Tensor, cfg: RouterTuningConfig, progress: bool = True,
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, float]]:
    """Returns the state with tuned router rows, the tuned bias (L, E) and a summary."""
    model = FlexOlmoForCausalLM(config)
    model.load_state_dict(state, strict=True)
    install_routers(model, bias=bias)
    trainable = {}
    for name, param in model.named_parameters():
        param.requires_grad_(name.endswith((ROUTER, "mlp.gate.bias")))
        if param.requires_grad:
            trainable[name] = param

    def project_bias() -> None:
        with torch.no_grad():
            for r in routers(model):
                r.bias.clamp_(max=0.0)

    result = train_causal_lm(model, window_sampler(proxy, cfg.seq_len, cfg.batch_size),
                             TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.steps // 10,
                                         seed=cfg.seed), params=trainable,
                             after_step=project_bias, desc="router tuning", progress=progress)
    tuned = model.state_dict()
    state = {k: (tuned[k].detach().clone() if k.endswith(ROUTER) else v) for k, v in state.items()}
    new_bias = torch.stack([r.bias.detach().clone() for r in routers(model)])
    new_bias[:, 0] = 0.0
    return state, new_bias, {"steps": float(cfg.steps), "first_loss": result.losses[0],
                             "final_loss": result.final_loss}


def public_proxy_tuner(public_texts: list[str], tokenizer, cfg: RouterTuningConfig,
                       progress: bool = True):
    """A `merge(..., tune=...)` hook tuning routers on public text, tokenised once up front
    (twice the tokens the steps consume, so windows rarely repeat)."""
    proxy = token_stream(public_texts, tokenizer,
                         max_tokens=cfg.steps * cfg.batch_size * cfg.seq_len * 2)

    def tune(state, bias, config):
        return tune_routers(state, bias, config, proxy, cfg, progress=progress)

    return tune
