"""Who made a generation: each expert's part in the tokens a merged model generated.

Two measures, both over the positions whose outputs chose the generated tokens (the last prompt
position to the one before the last token):

- **routing**: the routing weight each expert received there (the top-k weights the layers
  applied, summed over positions and layers), as shares. One forward pass over the text, or
  none: `RoutingTally` takes the same weights from the passes `generate` makes anyway.
- **leave-one-out** (`loo`): how much the log-likelihood of the generated tokens drops when each
  expert is masked (n+1 forward passes over the same text, no regeneration). An expert that was
  already off gets exactly 0; the public expert is masked too, for this measure only.

Only numbers come out: no token ids, no text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Self

import torch
from pydantic import BaseModel
from transformers import PreTrainedModel

from components.router import routers
from components.runtime import expert_names


class Attribution(BaseModel):
    generated_tokens: int
    routing: dict[str, float]  # expert -> share of routing weight; sums to 1
    # expert -> drop in log-likelihood (nats) when masked; None for an expert that is the only
    # one on (masking it leaves nothing to route to)
    loo: dict[str, float | None] | None = None


@contextlib.contextmanager
def _masked(model: PreTrainedModel, expert: int) -> Iterator[None]:
    """Expert `expert` off for the passes inside; the public one included (the runtime never
    turns it off for generation, only this measure does)."""
    saved = [r.active.clone() for r in routers(model)]
    try:
        for r in routers(model):
            r.active[expert] = False
        yield
    finally:
        for r, active in zip(routers(model), saved, strict=True):
            r.active.copy_(active)


def _log_likelihood(model: PreTrainedModel, ids: torch.Tensor, start: int) -> float:
    logits = model(input_ids=ids).logits.float()[0, start - 1:-1]  # predicts ids[start:]
    return logits.log_softmax(dim=-1).gather(1, ids[0, start:, None]).sum().item()


@torch.no_grad()
def routing_shares(model: PreTrainedModel, rows: list[list[int]], prompt_tokens: list[int],
                   ) -> list[dict[str, float]]:
    """Each row's routing attribution (expert -> share of the routing weight at the positions
    that chose its tokens after `prompt_tokens[i]`), for many rows in one left-padded forward
    pass: what a server needs after a batch, at the cost of one pass instead of one per row."""
    names = expert_names(model.config)
    if any(len(r) - p < 1 for r, p in zip(rows, prompt_tokens, strict=True)):
        raise ValueError("nothing was generated to attribute")
    if model.config.model_type != "flex_olmo":
        return [{names[0]: 1.0} for _ in rows]
    width = max(map(len, rows))
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    chose = torch.zeros((len(rows), width), dtype=torch.bool)  # positions that chose a token
    for b, (row, prompt) in enumerate(zip(rows, prompt_tokens, strict=True)):
        start = width - len(row)
        ids[b, start:], mask[b, start:] = torch.tensor(row), 1
        chose[b, start + prompt - 1:width - 1] = True
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    totals = torch.zeros((len(rows), len(names)), dtype=torch.float64)

    def record(_module, _inputs, output) -> None:
        _, weights, index = output  # (B * W, k) applied weights and their experts
        k = weights.shape[-1]
        applied = weights.reshape(len(rows), width, k).double().cpu() * chose[..., None]
        totals.scatter_add_(1, index.reshape(len(rows), width * k).cpu(),
                            applied.reshape(len(rows), width * k))

    model.eval()
    device = next(model.parameters()).device
    hooks = [r.register_forward_hook(record) for r in routers(model)]
    try:
        model(input_ids=ids.to(device), attention_mask=mask.to(device),
              position_ids=positions.to(device))
    finally:
        for hook in hooks:
            hook.remove()
    return [dict(zip(names, (t / t.sum()).tolist(), strict=True)) for t in totals]


class RoutingTally:
    """Routing attribution taken while `generate` runs, instead of a forward pass afterwards.

    With a KV cache, generation pass 0 ends at the last prompt position (left padding lines every
    row up there) and pass s at new token s, so the last positions of a row's first n passes are
    exactly the positions that chose its n tokens: the ones `routing_shares` counts. The routers'
    forward hooks keep each pass's outputs (no tensor work while generating: at a few small ops a
    layer a pass, the tally cost served generation 3% on CPU); `shares` adds up the weights
    applied at each pass's last position, per row, in a few ops for all passes at once."""

    def __init__(self, model: PreTrainedModel, rows: int):
        self.names, self.rows = expert_names(model.config), rows
        self._routers = routers(model) if model.config.model_type == "flex_olmo" else []
        # per router call, in order: the applied weights and their experts, (rows * width, k)
        self._outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._hooks: list = []

    def __enter__(self) -> Self:
        self._hooks = [r.register_forward_hook(self._record) for r in self._routers]
        return self

    def __exit__(self, *_exc) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _record(self, _module, _inputs, output) -> None:
        self._outputs.append(output[1:])

    @property
    def passes(self) -> int:
        """Forward passes recorded so far (each calls every router once)."""
        return len(self._outputs) // len(self._routers) if self._routers else 0

    def _per_pass(self) -> torch.Tensor:
        """(passes, rows, experts): the routing weight each pass's last position applied."""
        layers, passes = len(self._routers), self.passes
        # a router picks fewer experts than top-k when fewer are usable, and a withdrawal can
        # land between two passes: narrower picks are padded with weight 0 (on expert 0)
        k = max(w.shape[-1] for w, _ in self._outputs)

        def last(t: torch.Tensor) -> torch.Tensor:  # (rows * width, k_t) -> (rows, k)
            picked = t.reshape(self.rows, -1, t.shape[-1])[:, -1]
            return picked if t.shape[-1] == k else torch.nn.functional.pad(
                picked, (0, k - t.shape[-1]))

        def by_pass(ts: list[torch.Tensor]) -> torch.Tensor:  # -> (passes, rows, layers * k)
            stacked = torch.stack([last(t) for t in ts]).cpu()  # (passes * layers, rows, k)
            return stacked.reshape(passes, layers, self.rows, k).transpose(1, 2).reshape(
                passes, self.rows, layers * k)

        weights = by_pass([w for w, _ in self._outputs]).double()
        index = by_pass([i for _, i in self._outputs])
        per_pass = torch.zeros((passes, self.rows, len(self.names)), dtype=torch.float64)
        return per_pass.scatter_add_(2, index, weights)

    def shares(self, generated: Sequence[int]) -> list[dict[str, float]]:
        """Each row's routing shares over the passes that chose its `generated[row]` tokens."""
        if not self._routers:
            return [{self.names[0]: 1.0} for _ in generated]
        if len(generated) != self.rows or any(not 1 <= n <= self.passes for n in generated):
            raise ValueError(f"{self.passes} passes were recorded for {self.rows} rows; "
                             f"cannot attribute {list(generated)} new tokens")
        upto = self._per_pass().cumsum(dim=0)  # row r's first n passes: upto[n - 1, r]
        totals = [upto[n - 1, row] for row, n in enumerate(generated)]
        return [dict(zip(self.names, (t / t.sum()).tolist(), strict=True)) for t in totals]


@torch.no_grad()
def attribute(model: PreTrainedModel, ids: torch.Tensor, prompt_tokens: int,
              loo: bool = False) -> Attribution:
    """Attribution of the tokens after `prompt_tokens` in `ids` (1, T) to the experts of `model`
    (a FlexOlmo merge; a dense model is all public)."""
    names = expert_names(model.config)
    generated = ids.shape[1] - prompt_tokens
    [routing] = routing_shares(model, [ids[0].tolist()], [prompt_tokens])
    drops = None
    if loo and model.config.model_type != "flex_olmo":
        drops = {names[0]: 0.0}
    elif loo:
        model.eval()
        full = _log_likelihood(model, ids, prompt_tokens)
        active = routers(model)[0].usable().tolist()
        drops: dict[str, float | None] = {}
        for j, name in enumerate(names):
            if not active[j]:
                drops[name] = 0.0  # masking what is off changes nothing
                continue
            if sum(active) == 1:
                drops[name] = None
                continue
            with _masked(model, j):
                drops[name] = full - _log_likelihood(model, ids, prompt_tokens)
    return Attribution(generated_tokens=generated, routing=routing, loo=drops)
