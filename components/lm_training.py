"""A plain causal-LM training loop shared by the anchor and the experts.

AdamW, linear warm-up then cosine decay, gradient clipping, fp32 on CPU and bf16 autocast on CUDA
(bf16 matmul on this CPU class is ~150x slower than fp32), a progress bar with loss and tok/s, and
optional resumable checkpoints. Batches come from `sample_batch(generator)`, so the loop owns the
random state and a resumed run continues the exact batch sequence it would have seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import BaseModel, Field
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import PreTrainedModel, get_cosine_schedule_with_warmup

from components import distributed
from components.atomic import atomic_file, atomic_write
from components.errors import CheckpointError, TrainingDiverged
from components.progress import Progress

log = logging.getLogger(__name__)

SampleBatch = Callable[[torch.Generator], torch.Tensor]  # -> (B, T) token ids


class TrainConfig(BaseModel):
    steps: int = Field(gt=0)
    lr: float = Field(3e-3, gt=0)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.0, ge=0)  # 0 keeps frozen slices of fused tensors bit-exact
    grad_clip: float = Field(1.0, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    seed: int = 0
    checkpoint_every: int = Field(0, ge=0)  # steps between resumable checkpoints; 0 = none
    fsdp: bool = False  # under torchrun: shard the model over the ranks (FSDP2) instead of DDP

    def digest(self) -> str:
        """What a checkpoint must agree with to resume: not how often it was saved, nor how
        the ranks held the model (checkpoints hold whole tensors either way)."""
        return hashlib.sha256(self.model_dump_json(exclude={"checkpoint_every", "fsdp"})
                              .encode()).hexdigest()


class TrainResult(BaseModel):
    steps: int
    tokens: int
    seconds: float
    tokens_per_second: float
    losses: list[float]  # one per step
    resumed_from: int = 0

    @property
    def final_loss(self) -> float:
        tail = self.losses[-10:]
        return sum(tail) / len(tail)


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _Checkpoint:
    """Trainable tensors, AdamW moments, step, losses and RNG state, as safetensors + JSON."""

    def __init__(self, directory: Path, config_digest: str):
        self.dir, self.digest = Path(directory), config_digest

    def save(self, step: int, named: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer,
             generator: torch.Generator, losses: list[float]) -> None:
        """Every rank calls it (sharded tensors are gathered whole); rank 0 writes."""
        def whole(t: torch.Tensor) -> torch.Tensor:
            return distributed.full(t).detach().cpu().contiguous()

        tensors = {f"param/{n}": whole(p) for n, p in named.items()}
        for n, p in named.items():
            for key, value in optimizer.state.get(p, {}).items():
                tensors[f"adam/{key}/{n}"] = whole(value)
        tensors["rng"] = generator.get_state()
        if not distributed.is_main():
            return
        # Weights first, then the JSON that points at them, each replaced whole; both carry the
        # step, checked on load, so a crash between the two writes is detected, never resumed.
        with atomic_file(self.dir / "state.safetensors") as tmp:
            save_file(tensors, tmp, metadata={"step": str(step)})
        atomic_write(self.dir / "state.json", json.dumps(
            {"step": step, "config_digest": self.digest, "losses": losses}))

    def load(self, named: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer,
             generator: torch.Generator) -> tuple[int, list[float]]:
        meta_path = self.dir / "state.json"
        if not meta_path.exists():
            return 0, []
        meta = json.loads(meta_path.read_text())
        if meta["config_digest"] != self.digest:
            raise CheckpointError(f"checkpoint in {self.dir} was made with another training "
                                  f"config; remove it or rerun with the same options")
        with safe_open(self.dir / "state.safetensors", framework="pt") as st:
            saved_step = (st.metadata() or {}).get("step")
            tensors = {key: st.get_tensor(key) for key in st.keys()}  # noqa: SIM118
        if saved_step != str(meta["step"]):
            raise CheckpointError(f"checkpoint in {self.dir} is inconsistent (saving was "
                                  f"interrupted); remove it to train from the start")
        with torch.no_grad():
            for n, p in named.items():
                p.copy_(distributed.like(tensors[f"param/{n}"], p))
                state = {key.split("/")[1]: distributed.like(t, p) for key, t in tensors.items()
                         if key.startswith("adam/") and key.endswith(f"/{n}")
                         and key.split("/", 2)[2] == n}
                if state:
                    optimizer.state[p] = state
        generator.set_state(tensors["rng"])
        log.info("resumed from step %d in %s", meta["step"], self.dir)
        return meta["step"], meta["losses"]


def train_causal_lm(model: PreTrainedModel, sample_batch: SampleBatch, cfg: TrainConfig,
                    params: dict[str, torch.nn.Parameter] | None = None,
                    after_step: Callable[[], None] | None = None,
                    checkpoint_dir: Path | None = None, desc: str = "train",
                    progress: bool = True,
                    aux_loss: Callable[[], torch.Tensor] | None = None,
                    after_backward: Callable[[], None] | None = None) -> TrainResult:
    """Train `params` (default: all trainable, by name) of `model` for `cfg.steps` steps.

    `aux_loss`, when given, is called after each forward pass and added to the LM loss (e.g. a
    router loss read from forward hooks). `after_backward` sees the gradients before clipping
    (e.g. to zero a frozen slice), `after_step` the parameters after the update; both look
    parameters up on `model` by name, since sharding replaces them.

    With `checkpoint_dir` and `cfg.checkpoint_every`, state is saved every that many steps and a
    rerun with the same config resumes from the last save, giving bit-identical results on CPU.

    Under `torchrun` (components/distributed.py) each process trains on its rows of every global
    batch and the gradients are averaged; losses are the global batch's, and only rank 0 shows
    progress and writes checkpoints.
    """
    device = next(model.parameters()).device
    names = set(params) if params is not None else {
        n for n, p in model.named_parameters() if p.requires_grad}
    forward = distributed.parallel(model, device, fsdp=cfg.fsdp)
    named = {n: p for n, p in model.named_parameters() if n in names}  # sharded ones, if so
    optimizer = torch.optim.AdamW(list(named.values()), lr=cfg.lr, betas=cfg.betas,
                                  weight_decay=cfg.weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    ckpt = _Checkpoint(checkpoint_dir, cfg.digest()) if checkpoint_dir else None
    start_step, losses = ckpt.load(named, optimizer, generator) if ckpt else (0, [])
    with warnings.catch_warnings():  # fast-forwarding a resumed schedule before any optimizer step
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(start_step):
            schedule.step()
    model.train()
    tokens = 0
    start = time.perf_counter()
    bar = Progress(range(start_step, cfg.steps), desc, log, total=cfg.steps, initial=start_step,
                   enabled=progress and distributed.is_main())
    for step in bar:
        whole = sample_batch(generator)  # (B, T): every rank draws it, each keeps its rows
        batch = distributed.shard(whole).to(device)
        with autocast_for(device):
            loss = forward(input_ids=batch, labels=batch).loss
            if aux_loss is not None:
                loss = loss + aux_loss()
        global_loss = distributed.mean(loss)
        if not math.isfinite(global_loss):
            raise TrainingDiverged(f"loss became {global_loss} at step {step}; "
                                   f"lower the learning rate")
        loss.backward()
        if after_backward is not None:
            after_backward()
        torch.nn.utils.clip_grad_norm_(list(named.values()), cfg.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step()
        losses.append(global_loss)
        tokens += whole.numel()
        rate = tokens / (time.perf_counter() - start)
        bar.note(loss=f"{losses[-1]:.3f}", tok_s=f"{rate:,.0f}")
        if ckpt and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
            ckpt.save(step + 1, named, optimizer, generator, losses)
            distributed.barrier()  # no rank runs ahead of a save it might resume from
    model.eval()
    seconds = max(time.perf_counter() - start, 1e-9)
    return TrainResult(steps=cfg.steps, tokens=tokens, seconds=seconds,
                       tokens_per_second=tokens / seconds, losses=losses, resumed_from=start_step)
