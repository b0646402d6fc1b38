"""Optional router tuning (DESIGN §1.6): after a merge, only router rows and biases train, experts
and every other tensor frozen, on a small public proxy set (public text is everyone's)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from transformers import FlexOlmoForCausalLM, PreTrainedConfig

from components.errors import ConfigError, DataError
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
    router_loss_weight: float = Field(1.0, ge=0)  # supervised router loss, with proxies per expert
    # Public proxy windows are supervised too, to the public expert: public text routed there
    # is the anchor's own FFN, which the release gate holds public perplexity to.
    public_target: bool = True
    # Opt-out: with a contributor's own expert masked, its proxy text must route at least this
    # share to the public expert (the anchor's FFN, what a release without the module gives).
    # A floor, not a pull to all of it: zero loss once met. None: no such term.
    opt_out_public_share: float | None = Field(None, gt=0, lt=1)
    # The same floor on the public expert's own windows, a contributor expert masked in turn:
    # public text must not move to the other modules when one is withdrawn.
    opt_out_public_rows: bool = False


class SupervisedRouting:
    """A supervised router loss after the reference's (DESIGN §1.6): each batch row is a window of
    one expert's public proxy text. A contributor's proxy tokens are pulled towards the routing
    its expert was trained under: the softmax of the *merge-time* public and own logits (r_pub·x
    and r_i·x + b_i, before any tuning), every other expert at 0. A module is a correction added
    to the public FFN at the weight coordinated training gave it, so neither "all to the expert"
    nor the untuned merge (other experts take a share they never trained for) is right.
    Public proxy rows are pulled to the public expert alone (`public=True`), or get the LM loss
    only. Averaged over layers; proxy text is public."""

    def __init__(self, model: torch.nn.Module, streams: list[torch.Tensor], seq_len: int,
                 batch_size: int, weight: float, public: bool = True,
                 opt_out_share: float | None = None, opt_out_public_rows: bool = False):
        self.streams, self.seq_len, self.batch_size = streams, seq_len, batch_size
        self.weight, self.public, self.opt_out_share = weight, public, opt_out_share
        self.opt_out_public_rows = opt_out_public_rows
        self.labels = torch.zeros(batch_size, dtype=torch.long)
        self.masked = self.labels  # per row: the expert the opt-out floor masks (0: none)
        self.batches = 0
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []  # (logits, trained-for target)
        for router in routers(model):
            weight0 = router.weight.detach().clone()  # (E, H): the rows as merged
            bias0 = router.effective_bias().detach().clone()  # (E,)
            router.register_forward_hook(
                lambda _m, inputs, out, w=weight0, b=bias0: self.pairs.append(
                    (out[0], self._target(inputs[0], w, b))))

    def _target(self, hidden: torch.Tensor, weight0: torch.Tensor,
                bias0: torch.Tensor) -> torch.Tensor:
        """(N, E): each token's routing under its row's expert's coordinated training."""
        with torch.no_grad():
            x = hidden.reshape(-1, weight0.shape[1]).float()  # (N, H), rows flattened B-major
            logits0 = F.linear(x, weight0.float()) + bias0.float()  # (N, E)
            own = self.labels.repeat_interleave(self.seq_len).to(x.device)  # (N,)
            rows = torch.arange(len(own), device=x.device)
            pair = torch.stack([logits0[:, 0], logits0[rows, own]], dim=1).softmax(dim=-1)
            target = torch.zeros_like(logits0)  # public rows (own 0): all on the public expert
            target[:, 0] = pair[:, 0]
            target[rows, own] += pair[:, 1]
            return target

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        """(B, T) windows; row b from expert b mod E's stream, so every batch is balanced."""
        self.labels = torch.arange(self.batch_size) % len(self.streams)
        self.masked = self.labels.clone()
        if self.opt_out_public_rows:  # public rows mask each contributor expert in turn
            public = self.labels == 0
            turn = self.batches + torch.arange(self.batch_size)[public]
            self.masked[public] = 1 + turn % (len(self.streams) - 1)
        self.batches += 1
        rows = []
        for label in self.labels.tolist():
            stream = self.streams[label]
            start = int(torch.randint(0, stream.numel() - self.seq_len, (1,), generator=generator))
            rows.append(stream[start:start + self.seq_len])
        return torch.stack(rows)

    def _opt_out(self, logits: torch.Tensor, masked_expert: torch.Tensor) -> torch.Tensor:
        """Hinge on each token's public share with its row's masked expert off (a contributor's
        own; on public rows, one in turn when `opt_out_public_rows`): the routing the same text
        gets from a release without that module."""
        rows = torch.nonzero(masked_expert > 0).squeeze(1)
        masked = logits[rows].index_put((torch.arange(len(rows), device=logits.device),
                                         masked_expert[rows]), torch.tensor(float("-inf")))
        public = masked.log_softmax(dim=-1)[:, 0]
        return F.relu(math.log(self.opt_out_share) - public).mean()

    def loss(self) -> torch.Tensor:
        labels = self.labels.repeat_interleave(self.seq_len)  # (N,)
        masked = self.masked.repeat_interleave(self.seq_len)
        supervised = torch.ones_like(labels, dtype=torch.bool) if self.public else labels > 0
        layers = []
        for logits, target in self.pairs:
            mask = supervised.to(logits.device)
            log_probs = logits.float()[mask].log_softmax(dim=-1)
            term = -(target[mask] * log_probs).sum(dim=-1).mean()
            if self.opt_out_share is not None:
                term = term + self._opt_out(logits.float(), masked.to(logits.device))
            layers.append(term)
        self.pairs.clear()
        return self.weight * torch.stack(layers).mean()


def tune_routers(state: dict[str, torch.Tensor], bias: torch.Tensor, config: PreTrainedConfig,
                 proxy: torch.Tensor | list[torch.Tensor], cfg: RouterTuningConfig,
                 progress: bool = True,
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, float]]:
    """Returns the state with tuned router rows, the tuned bias (L, E) and a summary.

    `proxy` is one token stream (LM loss only), or one stream per expert in router order
    (LM loss plus the supervised router loss)."""
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

    supervised = None
    if isinstance(proxy, list) and len(proxy) > 2:  # a choice among private experts to teach
        supervised = SupervisedRouting(model, proxy, cfg.seq_len, cfg.batch_size,
                                       cfg.router_loss_weight, cfg.public_target,
                                       cfg.opt_out_public_share, cfg.opt_out_public_rows)
    sampler = supervised.sample if supervised else window_sampler(
        torch.cat(proxy) if isinstance(proxy, list) else proxy, cfg.seq_len, cfg.batch_size)
    result = train_causal_lm(model, sampler,
                             TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.steps // 10,
                                         seed=cfg.seed), params=trainable,
                             after_step=project_bias, desc="router tuning", progress=progress,
                             aux_loss=supervised.loss if supervised else None)
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


def supervised_proxy_tuner(proxies: dict[str, list[str]], tokenizer, cfg: RouterTuningConfig,
                           progress: bool = True):
    """A `merge(..., tune=...)` hook with the supervised router loss: `proxies` maps every expert
    name (`public` included) to public text resembling its domain."""
    budget = cfg.steps * cfg.batch_size * cfg.seq_len * 2 // max(len(proxies), 1)
    streams = {name: token_stream(texts, tokenizer, max_tokens=budget)
               for name, texts in proxies.items()}
    for name, stream in streams.items():
        if stream.numel() <= cfg.seq_len:
            raise DataError(f"proxy text for expert {name} has {stream.numel()} tokens, fewer "
                            f"than one {cfg.seq_len}-token window; add public text for it")

    def tune(state, bias, config):
        names = list(config.flexo_experts)
        missing = [n for n in names if n not in streams]
        if missing:
            raise ConfigError(f"no proxy text for expert(s) {', '.join(missing)}; give every "
                              f"expert a proxy set or tune on public text only")
        return tune_routers(state, bias, config, [streams[n] for n in names], cfg,
                            progress=progress)

    return tune


def proxy_router_tuner(anchor: Path, proxies: dict[str, list[str]], cfg: RouterTuningConfig,
                       progress: bool = True):
    """A `merge(..., tune=...)` hook: routers tuned on public proxy text, `proxies` mapping every
    expert name (`public` included) to public text resembling its domain (each contributor's
    from its published proxy selection), with the anchor's tokenizer."""
    from components.checkpoints import load_tokenizer

    return supervised_proxy_tuner(proxies, load_tokenizer(anchor), cfg, progress=progress)
