"""Differentially private training of an expert's trainable tensors (DP-SGD with AdamW).

Opacus' `PrivacyEngine` cannot wrap `FlexOlmoForCausalLM` (STACK.md), so per-sample gradients come
from `torch.func` (`vmap(grad(loss))` over `functional_call`) and Opacus does the rest: its
`DPOptimizer` clips each sample's gradient to `max_grad_norm`, adds Gaussian noise and averages; its
RDP accountant tracks epsilon. Private windows are drawn by Poisson sampling (each window joins a
step with probability q), which is what the accountant assumes; the noise multiplier is set so that
epsilon after the planned steps is at most the target, and training stops early if it would pass it.

Slot 0 (the public expert and r_pub) lives inside fused tensors: its per-sample gradients are
zeroed before clipping and its noised gradient before the AdamW step, so it stays bit-identical.
"""

from __future__ import annotations

import logging
import math
import time
import warnings

import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DPOptimizer
from pydantic import BaseModel, Field
from torch.func import functional_call, grad_and_value, vmap
from transformers import PreTrainedModel, get_cosine_schedule_with_warmup

from components.errors import ConfigError
from components.lm_training import TrainConfig, TrainResult
from components.progress import Progress
from components.token_data import eval_windows

log = logging.getLogger(__name__)


class DPConfig(BaseModel):
    epsilon: float = Field(gt=0)
    delta: float | None = Field(None, gt=0, lt=1)  # default: 0.1 / (number of private windows)
    max_grad_norm: float = Field(1.0, gt=0)


class PrivacySpent(BaseModel):
    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    max_grad_norm: float
    steps: int


def train_dp(model: PreTrainedModel, params: dict[str, torch.nn.Parameter],
             private: torch.Tensor, public_batch, cfg: TrainConfig, dp: DPConfig,
             batch_size: int, seq_len: int, slot0: set[str], progress: bool = True,
             after_step=None) -> tuple[TrainResult, PrivacySpent]:
    """DP training of `params`; `public_batch(generator)` adds non-private rows (or None).

    `batch_size` is the expected number of private windows per step; `slot0` names the fused
    tensors whose slice 0 must not move.
    """
    with warnings.catch_warnings():
        # vmap's "performance drop" notes and the RDP accountant's alpha-range advice are
        # expected here and would otherwise print at every step.
        warnings.filterwarnings(
            "ignore", message=".*(performance drop|smallest alpha|largest alpha).*")
        return _train_dp(model, params, private, public_batch, cfg, dp, batch_size, seq_len,
                         slot0, progress, after_step)


def _train_dp(model, params, private, public_batch, cfg, dp, batch_size, seq_len, slot0,
              progress, after_step) -> tuple[TrainResult, PrivacySpent]:
    windows = eval_windows(private, seq_len)  # (N, T): the private examples
    n = len(windows)
    if n < 2 * batch_size:
        raise ConfigError(f"DP training needs at least {2 * batch_size} private windows of "
                          f"{seq_len} tokens, got {n}; add data or lower the batch size")
    q = batch_size / n
    delta = dp.delta or 0.1 / n
    sigma = get_noise_multiplier(target_epsilon=dp.epsilon, target_delta=delta, sample_rate=q,
                                 steps=cfg.steps, accountant="rdp")
    model.set_experts_implementation("grouped_mm")  # `eager` cannot run under vmap
    inner = torch.optim.AdamW(list(params.values()), lr=cfg.lr, betas=cfg.betas, weight_decay=0.0)
    optimizer = DPOptimizer(inner, noise_multiplier=sigma, max_grad_norm=dp.max_grad_norm,
                            expected_batch_size=batch_size)
    schedule = get_cosine_schedule_with_warmup(inner, cfg.warmup_steps, cfg.steps)
    accountant = RDPAccountant()
    generator = torch.Generator().manual_seed(cfg.seed)
    buffers = dict(model.named_buffers())
    names = list(params)
    device = next(iter(params.values())).device

    def loss_one(p: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
        ids = ids.unsqueeze(0)  # (1, T)
        return functional_call(model, ({**p, **buffers},), (),
                               {"input_ids": ids, "labels": ids}).loss

    per_sample = vmap(grad_and_value(loss_one), in_dims=(None, 0))
    model.train()
    losses: list[float] = []
    tokens, start, steps_done = 0, time.perf_counter(), 0
    for _ in Progress(range(cfg.steps), "dp expert", log, total=cfg.steps, enabled=progress):
        rows = windows[torch.rand(n, generator=generator) < q]
        extra = public_batch(generator) if public_batch else None
        batch = rows if extra is None else torch.cat([rows, extra])
        if len(batch) == 0:
            accountant.step(noise_multiplier=sigma, sample_rate=q)
            continue
        detached = {k: v.detach() for k, v in params.items()}
        grads, sample_losses = per_sample(detached, batch.to(device))  # name -> (B, *shape); (B,)
        for name in names:
            g = grads[name]
            if name in slot0:
                g[:, 0] = 0
            params[name].grad_sample = g
        losses.append(sample_losses.mean().item())
        if optimizer.pre_step():
            for name in slot0:
                params[name].grad[0] = 0
            inner.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        accountant.step(noise_multiplier=sigma, sample_rate=q)
        if after_step is not None:
            after_step()
        tokens += batch.numel()
        steps_done += 1
        if accountant.get_epsilon(delta) > dp.epsilon:
            log.warning("stopping at step %d: epsilon would pass the target", steps_done)
            break
    for p in params.values():
        p.grad_sample = None
    model.eval()
    seconds = max(time.perf_counter() - start, 1e-9)
    spent = PrivacySpent(epsilon=accountant.get_epsilon(delta), delta=delta,
                         noise_multiplier=sigma, sample_rate=q, max_grad_norm=dp.max_grad_norm,
                         steps=steps_done)
    if not math.isfinite(spent.epsilon):
        raise ConfigError("the privacy accountant returned an infinite epsilon; raise --dp-epsilon")
    return (TrainResult(steps=steps_done, tokens=tokens, seconds=seconds,
                        tokens_per_second=tokens / seconds, losses=losses or [float("nan")]),
            spent)
