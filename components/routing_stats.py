"""Routing statistics: which experts a merged model sends a corpus's tokens to (DESIGN §6).

A merge that beats the anchor on average can still route badly (one row a sink, the public expert
starved on public text), so every evaluation reports, per corpus, each expert's share of the
router's softmax mass, averaged over tokens and layers. Switched-off experts get 0.
"""

from __future__ import annotations

from typing import Self

import torch
from transformers import PreTrainedModel

from components.router import routers
from components.runtime import expert_names


class RoutingRecorder:
    """Records router probabilities during any forward passes run inside its `with` block, so
    routing shares come from the same pass as the perplexity."""

    def __init__(self, model: PreTrainedModel):
        self.model = model
        self.names = expert_names(model.config)
        self.moe = model.config.model_type == "flex_olmo"
        self.totals = torch.zeros(len(self.names), dtype=torch.float64)
        self.count = 0
        self._hooks: list = []

    def _record(self, _module, _inputs, output) -> None:
        logits = output[0].float()  # (N, E), switched-off experts at -inf
        self.totals += logits.softmax(dim=-1).sum(dim=0).double().cpu()
        self.count += logits.shape[0]

    def __enter__(self) -> Self:
        if self.moe:
            self._hooks = [r.register_forward_hook(self._record) for r in routers(self.model)]
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()

    def shares(self) -> dict[str, float]:
        """Each expert's mean router probability over the recorded tokens (sums to 1)."""
        if not self.moe:
            return {self.names[0]: 1.0}
        return dict(zip(self.names, (self.totals / max(self.count, 1)).tolist(), strict=True))
