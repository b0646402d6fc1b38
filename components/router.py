"""flexo's router: FlexOlmo's top-k softmax router plus the negative bias and a runtime mask.

DESIGN §1.4 and §1.7. Expert i > 0 is chosen when r_i·x + b_i > r_pub·x with b_i <= 0; the public
expert (0) has no bias. Switching an expert off sets its logit to -inf before the softmax, so the
remaining experts get exactly the probabilities a merge without it would give, and top-k falls to
the number of experts still on (masking every private expert gives the anchor back exactly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FlexoRouter(nn.Module):
    def __init__(self, weight: torch.Tensor, top_k: int, bias: torch.Tensor | None = None):
        super().__init__()
        num_experts, hidden = weight.shape  # (E, H)
        self.weight = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight)
        self.bias = nn.Parameter(bias.clone() if bias is not None
                                 else torch.zeros(num_experts, dtype=weight.dtype))
        self.register_buffer("active", torch.ones(num_experts, dtype=torch.bool), persistent=False)
        # withdrawn experts (the deny-list), kept apart from `active` so that no caller's
        # selection or measurement can switch them back on
        self.register_buffer("denied", torch.zeros(num_experts, dtype=torch.bool),
                             persistent=False)
        self.top_k, self.num_experts, self.hidden_dim = top_k, num_experts, hidden

    def effective_bias(self) -> torch.Tensor:
        """min(b, 0) on experts 1..E-1, zero on the public expert."""
        b = self.bias.clamp(max=0.0)
        return torch.cat([torch.zeros_like(b[:1]), b[1:]])  # (E,)

    def usable(self) -> torch.Tensor:
        """Experts on and not denied: what the next forward pass routes to."""
        return self.active & ~self.denied

    def forward(self, hidden_states: torch.Tensor):
        x = hidden_states.reshape(-1, self.hidden_dim)  # (N, H)
        logits = F.linear(x, self.weight) + self.effective_bias().to(x.dtype)  # (N, E)
        usable = self.usable()
        logits = logits.masked_fill(~usable, float("-inf"))
        probs = F.softmax(logits, dim=-1, dtype=torch.float32)
        k = min(self.top_k, int(usable.sum()))
        top_values, top_index = torch.topk(probs, k, dim=-1)  # (N, k); not renormalised
        return logits, top_values.to(logits.dtype), top_index


def routers(model: nn.Module) -> list[FlexoRouter]:
    return [layer.mlp.gate for layer in model.model.layers]


def install_routers(model: nn.Module, bias: torch.Tensor | None = None) -> list[FlexoRouter]:
    """Swap each layer's HF router for a FlexoRouter sharing its weight; `bias` is (L, E)."""
    installed = []
    for i, layer in enumerate(model.model.layers):
        hf = layer.mlp.gate
        router = FlexoRouter(hf.weight, hf.top_k, None if bias is None else bias[i])
        layer.mlp.gate = router.to(hf.weight.device)
        installed.append(router)
    return installed


def set_active(model: nn.Module, active: list[bool]) -> None:
    """Switch experts on and off for the next forward passes; no reload, no retraining."""
    if not active[0]:
        raise ValueError("the public expert (0) is the anchor and is always on")
    for router in routers(model):
        router.active.copy_(torch.tensor(active, dtype=torch.bool))


def set_denied(model: nn.Module, denied: list[bool]) -> None:
    """Mask withdrawn experts for every following pass, whatever `active` says."""
    if denied[0]:
        raise ValueError("the public expert (0) is the anchor and cannot be denied")
    for router in routers(model):
        router.denied.copy_(torch.tensor(denied, dtype=torch.bool))


def use_fast_experts(model: nn.Module, device: torch.device | str) -> None:
    """On CPU the `eager` experts loop beats `grouped_mm` (DESIGN §6, benchmarks/expert_ops.py)
    with the same results; elsewhere keep transformers' default."""
    if torch.device(device).type == "cpu":
        model.set_experts_implementation("eager")
