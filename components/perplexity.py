"""Token-weighted held-out perplexity: exp(total NLL / total predicted tokens)."""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel
from transformers import PreTrainedModel

from components.errors import DataError
from components.lm_training import autocast_for
from components.token_data import eval_windows


class Perplexity(BaseModel):
    domain: str
    tokens: int  # predicted tokens the figure is averaged over
    nll: float  # mean negative log-likelihood per token (nats)
    routing: dict[str, float] = {}  # expert -> share of router mass (MoE models; DESIGN §6)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll)


@torch.no_grad()
def perplexity(model: PreTrainedModel, stream: torch.Tensor, seq_len: int, domain: str = "",
               batch_size: int = 8) -> Perplexity:
    """Perplexity over non-overlapping windows of `stream` (every window predicts T-1 tokens)."""
    windows = eval_windows(stream, seq_len)  # (N, T)
    if len(windows) == 0:
        raise DataError(f"{domain or 'corpus'} has fewer than {seq_len} tokens to evaluate; "
                        f"add text")
    device = next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        batch = windows[i : i + batch_size].to(device)
        with autocast_for(device):
            logits = model(input_ids=batch).logits.float()  # (B, T, V)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), reduction="sum")
        total += nll.item()
        count += batch[:, 1:].numel()
    return Perplexity(domain=domain, tokens=count, nll=total / count)
