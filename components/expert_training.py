"""Coordinated expert training (DESIGN §1.1-1.4): the contributor's step.

The anchor becomes a 2-expert FlexOlmo model (slot 0 public, slot 1 new, both copies of the anchor
FFN). Only slot 1's FFN, its router row r_i and its bias b_i <= 0 train; embeddings, attention,
norms, lm_head, slot 0 and r_pub stay bit-identical to the anchor, which is what lets modules
trained apart be merged later. `requires_grad` cannot freeze part of a fused tensor, so slot 0's
gradient is zeroed after each backward pass and AdamW runs with weight decay 0 (DESIGN §6).

A share of each batch is public text (`public_ratio`): public data is everyone's, and seeing it lets
r_i learn to yield to r_pub there instead of learning only "not public" (DESIGN §6).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from pydantic import BaseModel, Field

from components import distributed
from components.anchor import AnchorCard, read_fingerprint
from components.checkpoints import load_causal_lm, load_tokenizer
from components.devices import pick_device
from components.documents import Corpus, CorpusFingerprint
from components.dp_training import DPConfig, PrivacySpent, train_dp
from components.expert_module import SHARED_PREFIX, write_module
from components.lm_training import TrainConfig, train_causal_lm
from components.moe_layout import (
    DENSE_FFN,
    DOWN,
    GATE_UP,
    ROUTER,
    fuse_ffn,
    is_shared,
    layer_key,
    upcycle,
)
from components.router import install_routers, use_fast_experts
from components.router_rows import RouterInit, domain_vectors, read_public_router
from components.token_data import token_stream, window_sampler

log = logging.getLogger(__name__)

class ExpertConfig(BaseModel):
    steps: int = Field(200, gt=0)
    batch_size: int = Field(16, gt=0)
    seq_len: int = Field(128, gt=1)
    lr: float = Field(4e-3, gt=0)  # small models take a high rate; the paper's 7B used 9e-4
    warmup_steps: int = Field(20, ge=0)
    seed: int = 0
    router_init: RouterInit = "hidden"  # components/router_rows.py: why not the paper's `embed`
    router_documents: int = Field(1000, gt=0)  # documents per domain for the router init
    # Share of each batch drawn from public text. Tiny preset, literature, seed 0: 0.25 gave
    # public +3.8% / own -13.9% perplexity; 0.4 gave +1.3% / -13.0%.
    public_ratio: float = Field(0.4, ge=0, lt=1)
    top_k: int = Field(2, ge=1)
    checkpoint_every: int = Field(50, ge=0)
    fsdp: bool = False  # under torchrun: shard the model over the ranks (FSDP2) instead of DDP
    uncoordinated: bool = False  # baseline: shared tensors train too (no common frozen anchor)
    negative_bias: bool = True  # train b_i <= 0 (DESIGN §1.4); False is the ablation without it
    dp: DPConfig | None = None  # differentially private training of the expert's tensors


class ExpertResult(BaseModel):
    contributor: str
    anchor_fingerprint: str
    weights_sha256: str
    data_fingerprint: CorpusFingerprint
    config: ExpertConfig
    metrics: dict[str, float]
    losses: list[float] = []  # one per step: the loss curve trackers plot
    privacy: PrivacySpent | None = None


def router_rows(anchor_dir: Path, method: RouterInit, contributor: str, texts: list[str],
                model, tokenizer, sample_documents: int) -> torch.Tensor:
    """Initial router rows (L, 2, H): the anchor's r_pub, bit-exact, and r_i in every layer."""
    layers = model.config.num_hidden_layers
    r_pub = read_public_router(anchor_dir, method, layers).float()
    seed = AnchorCard.read(anchor_dir).weights_fingerprint
    r_own = domain_vectors(method, {contributor: texts}, seed, model, tokenizer,
                           sample_documents)[contributor]
    return torch.stack([r_pub, r_own.expand(layers, -1)], dim=1)


def mixed_sampler(domain: torch.Tensor, public: torch.Tensor, cfg: ExpertConfig):
    n_public = round(cfg.batch_size * cfg.public_ratio) if public.numel() > cfg.seq_len else 0
    own = window_sampler(domain, cfg.seq_len, cfg.batch_size - n_public)
    pub = window_sampler(public, cfg.seq_len, n_public) if n_public else None

    def sample(generator: torch.Generator) -> torch.Tensor:
        batch = own(generator)
        return torch.cat([batch, pub(generator)]) if pub else batch  # (B, T)

    return sample


def _check_frozen(state: dict[str, torch.Tensor], layers: int, anchor_state: dict[str, torch.Tensor],
                  r_pub: torch.Tensor, uncoordinated: bool) -> None:
    """Refuse to publish unless every frozen tensor and slice is bit-identical to the anchor's."""
    expected: dict[str, torch.Tensor] = {}
    if not uncoordinated:
        expected.update({k: v for k, v in anchor_state.items() if is_shared(k)})
    for i in range(layers):
        gate, up, down = (anchor_state[layer_key(i, n)] for n in DENSE_FFN)
        expected[f"{layer_key(i, GATE_UP)}[0]"] = fuse_ffn(gate, up)
        expected[f"{layer_key(i, DOWN)}[0]"] = down
        expected[f"{layer_key(i, ROUTER)}[0]"] = r_pub[i]
    for name, tensor in expected.items():
        actual = state[name[:-3]][0] if name.endswith("[0]") else state[name]
        if not torch.equal(actual, tensor):
            raise RuntimeError(f"frozen tensor {name} changed during expert training; "
                               f"the module would not merge and is not written")


def train_expert(anchor_dir: Path, contributor: str, corpus: Corpus, public: Corpus,
                 cfg: ExpertConfig, workdir: Path, resume_dir: Path | None = None,
                 device: str | None = None, progress: bool = True) -> ExpertResult:
    """Train one expert module on `corpus` and write `expert.safetensors` into `workdir`."""
    fingerprint = read_fingerprint(anchor_dir)
    dev = pick_device(device)
    dense = load_causal_lm(anchor_dir)
    tokenizer = load_tokenizer(anchor_dir)
    texts = corpus.training_texts()
    router = router_rows(anchor_dir, cfg.router_init, contributor, texts, dense, tokenizer,
                         cfg.router_documents)  # (L, 2, H)
    r_pub = router[:, 0]
    anchor_state = {k: v.clone() for k, v in dense.state_dict().items()}
    model = upcycle(anchor_state, dense.config, router, top_k=cfg.top_k).to(dev)
    del dense
    install_routers(model)
    use_fast_experts(model, dev)
    trainable: dict[str, torch.nn.Parameter] = {}
    fused: set[str] = set()  # tensors holding both slots; slot 0 (public) must not move
    for name, param in model.named_parameters():
        moe = name.endswith((GATE_UP, DOWN, ROUTER)) or (
            cfg.negative_bias and name.endswith("mlp.gate.bias"))  # else the bias stays 0
        param.requires_grad_(moe or (cfg.uncoordinated and is_shared(name)))
        if moe:
            fused.add(name)
        if param.requires_grad:
            trainable[name] = param

    # Both look the parameters up by name each step: under FSDP they are the sharded ones.
    def freeze_slot0() -> None:
        with torch.no_grad():  # public expert / r_pub: zero grad + AdamW wd 0 = no change
            for name, param in model.named_parameters():
                row = distributed.first_row(param.grad) if name in fused and \
                    param.grad is not None else None
                if row is not None:
                    row.zero_()

    def project_bias() -> None:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in fused and name.endswith("mlp.gate.bias"):
                    param.clamp_(max=0.0)  # b_i <= 0 (projected gradient step)

    own_tokens = cfg.steps * cfg.batch_size * cfg.seq_len
    own = token_stream(texts, tokenizer, max_tokens=own_tokens)
    public_stream = token_stream(public.split("train").texts(), tokenizer, max_tokens=own_tokens)
    train_cfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                            weight_decay=0.0, seed=cfg.seed, checkpoint_every=cfg.checkpoint_every,
                            fsdp=cfg.fsdp)
    privacy = None
    if cfg.dp is not None:
        n_public = round(cfg.batch_size * cfg.public_ratio)
        public_rows = window_sampler(public_stream, cfg.seq_len, n_public) if n_public else None
        result, privacy = train_dp(model, trainable, own, public_rows, train_cfg, cfg.dp,
                                   batch_size=cfg.batch_size - n_public, seq_len=cfg.seq_len,
                                   slot0=fused, progress=progress,
                                   after_step=project_bias)
    else:
        result = train_causal_lm(model, mixed_sampler(own, public_stream, cfg), train_cfg,
                                 params=trainable, after_step=project_bias,
                                 after_backward=freeze_slot0, checkpoint_dir=resume_dir,
                                 desc=f"expert[{contributor}]", progress=progress)
    state = distributed.full_state_dict(model)  # whole tensors, on the CPU, on every rank
    layers = model.config.num_hidden_layers
    _check_frozen(state, layers, anchor_state, r_pub, cfg.uncoordinated)

    tensors: dict[str, torch.Tensor] = {}
    for i in range(layers):
        tensors[f"layers.{i}.gate_up_proj"] = state[layer_key(i, GATE_UP)][1]
        tensors[f"layers.{i}.down_proj"] = state[layer_key(i, DOWN)][1]
        tensors[f"layers.{i}.router"] = state[layer_key(i, ROUTER)][1]
        tensors[f"layers.{i}.bias"] = state[layer_key(i, "mlp.gate.bias")][1:2]
        tensors[f"layers.{i}.router_public"] = r_pub[i]
    if cfg.uncoordinated:
        tensors.update({SHARED_PREFIX + k: state[k] for k in anchor_state if is_shared(k)})
    sha = write_module(workdir, tensors, contributor, fingerprint, layers)
    bias_mean = float(torch.stack([tensors[f"layers.{i}.bias"] for i in range(layers)]).mean())
    return ExpertResult(
        contributor=contributor, anchor_fingerprint=fingerprint, weights_sha256=sha,
        data_fingerprint=corpus.fingerprint(), config=cfg,
        metrics={"final_loss": result.final_loss, "train_tokens": float(result.tokens),
                 "train_seconds": result.seconds, "tokens_per_second": result.tokens_per_second,
                 "resumed_from_step": float(result.resumed_from), "mean_bias": bias_mean},
        losses=result.losses, privacy=privacy)
