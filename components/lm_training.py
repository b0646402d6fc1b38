"""A plain causal-LM training loop shared by the anchor and, later, the experts.

AdamW, linear warm-up then cosine decay, gradient clipping, fp32 on CPU and bf16 autocast on CUDA
(bf16 matmul on this CPU class is ~150x slower than fp32), and a progress bar with loss and tok/s.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator

import torch
from pydantic import BaseModel, Field
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_cosine_schedule_with_warmup

from components.errors import TrainingDiverged

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    steps: int = Field(gt=0)
    lr: float = Field(3e-3, gt=0)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.0, ge=0)  # 0 keeps frozen slices of fused tensors bit-exact
    grad_clip: float = Field(1.0, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    seed: int = 0


class TrainResult(BaseModel):
    steps: int
    tokens: int
    seconds: float
    tokens_per_second: float
    losses: list[float]  # one per step

    @property
    def final_loss(self) -> float:
        tail = self.losses[-10:]
        return sum(tail) / len(tail)


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_causal_lm(model: PreTrainedModel, batches: Iterator[torch.Tensor], cfg: TrainConfig,
                    params: list[torch.nn.Parameter] | None = None,
                    desc: str = "train", progress: bool = True) -> TrainResult:
    """Train `params` (default: all trainable) of `model` for `cfg.steps` steps on `batches`."""
    device = next(model.parameters()).device
    params = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas,
                                  weight_decay=cfg.weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps)
    model.train()
    losses: list[float] = []
    tokens = 0
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress, unit="step", mininterval=1.0)
    for _ in bar:
        batch = next(batches).to(device)  # (B, T)
        with autocast_for(device):
            loss = model(input_ids=batch, labels=batch).loss
        if not math.isfinite(loss.item()):
            raise TrainingDiverged(f"loss became {loss.item()} at step {len(losses)}; "
                                     f"lower the learning rate")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        tokens += batch.numel()
        rate = tokens / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", tok_s=f"{rate:,.0f}", refresh=False)
    model.eval()
    seconds = time.perf_counter() - start
    log.info("%s: %d steps, %d tokens, %.1f s, final loss %.3f", desc, cfg.steps, tokens,
             seconds, losses[-1])
    return TrainResult(steps=cfg.steps, tokens=tokens, seconds=seconds,
                       tokens_per_second=tokens / seconds, losses=losses)
