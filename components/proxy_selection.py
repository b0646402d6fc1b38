"""Proxy selection (DESIGN §1.6): on the contributor's machine, pick the public documents that
resemble its closed data, so release router tuning can teach the router where its expert belongs
without anyone seeing that data.

A small classifier (all-MiniLM-L6-v2 embeddings, the same embedder as the `embed` router init, and
a class-balanced logistic regression) learns own-vs-public on a split of the contributor's training
documents and the anchor's public pool, is checked on a held-out part of both (ROC AUC), then
scores every pool document. The top-scoring ones, until they hold `min_tokens` tokens, are the
proxy. What leaves the machine: the sha256 ids of those *public* documents, their scores, the AUC
and the score threshold. No contributor text, no embedding of a contributor document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field
from safetensors.torch import load_file, save_file

from components.atomic import atomic_file
from components.documents import Corpus
from components.errors import DataError
from components.router_rows import sentence_embeddings

EMBED_MODEL = "all-minilm-l6-v2"  # names the cache: other embeddings are other files
# A document's opening says what it is about: 32 word pieces (of its first 200 characters) chose
# as precisely as 64 on the built-in domains (medical 90.8% in its slice against 91.6%, the others
# 100%, same AUCs), and 64 as precisely as 128, each in half the time.
PROXY_CHARS, PROXY_TOKENS = 200, 32
POOL_FILE = "public_pool.json"  # the anchor's named pool: document ids, sources, licences

log = logging.getLogger(__name__)


class ProxyConfig(BaseModel):
    min_tokens: int = Field(50_000, gt=0)  # the proxy holds at least this many anchor tokens
    max_documents: int = Field(2_000, gt=0)  # own training documents the classifier sees
    held_out: float = Field(0.2, gt=0, lt=1)  # of own and pool, for the AUC
    seed: int = 0


class ProxyChoice(BaseModel):
    ids: list[str]  # sha256 of the chosen public documents, best first
    scores: list[float]  # the classifier's probability "resembles own data", same order
    threshold: float  # the lowest chosen score
    tokens: int  # anchor tokens the chosen documents hold
    auc: float  # held-out ROC AUC of own vs public
    own_documents: int  # contributor documents the classifier saw (a count, never the text)
    pool_documents: int


def embed(texts: list[str]) -> torch.Tensor:
    """(N, 384) unit MiniLM embeddings of each document's opening (what it is about)."""
    return sentence_embeddings([t[:PROXY_CHARS] for t in texts], max_tokens=PROXY_TOKENS)


def anchor_pool(anchor_dir: Path) -> Corpus:
    """The public pool the anchor names (`public_pool.json`: ids, sources, licences and the
    pool's fingerprint, written with the anchor): the built-in public mix, checked against that
    record, so a proxy id resolves to the same text on every machine."""
    import json

    from components.anchor import AnchorCard
    from components.builtin_corpora import public_mix

    card, pool = AnchorCard.read(anchor_dir), public_mix()
    named = Path(anchor_dir) / POOL_FILE
    recorded = json.loads(named.read_text())["fingerprint"] if named.is_file() else \
        card.corpus.digest if card.corpus is not None else None
    if recorded is not None and recorded != pool.fingerprint().digest:
        raise DataError(f"anchor {anchor_dir} names a public pool (fingerprint {recorded[:12]}) "
                        f"other than the built-in public mix here; install the corpora it was "
                        f"built with, or skip proxy selection (--proxy-tokens 0)")
    return pool


def pool_embeddings(pool: Corpus, cache: Path) -> tuple[list[str], torch.Tensor]:
    """The pool's ids (sha256, sorted) and their embeddings, cached in `cache` under the pool's
    fingerprint: public text, so one copy serves every contributor and every home."""
    ids = sorted(d.digest for d in pool.documents)
    path = Path(cache) / (f"pool-{pool.fingerprint().digest[:32]}-{EMBED_MODEL}-{PROXY_TOKENS}"
                          ".safetensors")
    if path.is_file():
        embeddings = load_file(path)["embeddings"]
        if len(embeddings) == len(ids):
            return ids, embeddings
    text = {d.digest: d.text for d in pool.documents}
    embeddings = embed([text[i] for i in ids])
    with atomic_file(path) as tmp:
        save_file({"embeddings": embeddings.contiguous()}, tmp)
    return ids, embeddings


def _split(n: int, held_out: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    cut = max(1, round(n * held_out))
    return order[cut:], order[:cut]


def select_proxies(own_texts: list[str], pool_ids: list[str], pool_embeddings: torch.Tensor,
                   count_tokens: Callable[[str], int], pool_text: Callable[[str], str],
                   cfg: ProxyConfig | None = None) -> ProxyChoice:
    """Choose public pool documents resembling `own_texts` (the contributor's training split).

    `pool_embeddings` (N, 384) are `embed` of the pool, in `pool_ids` order (cacheable per pool);
    `pool_text(id)` gives a chosen document's text to count its tokens with `count_tokens`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    cfg = cfg or ProxyConfig()
    if len(own_texts) < 10:
        raise DataError(f"proxy selection needs at least 10 training documents, got "
                        f"{len(own_texts)}; add text")
    if len(pool_ids) != len(pool_embeddings):
        raise ValueError("pool ids and embeddings differ in length")
    own = embed(own_texts[:cfg.max_documents]).numpy()  # hash order: a fixed sample
    pool = pool_embeddings.numpy()
    rng = np.random.default_rng(cfg.seed)
    own_fit, own_test = _split(len(own), cfg.held_out, rng)
    pool_fit, pool_test = _split(len(pool), cfg.held_out, rng)
    features = np.concatenate([own[own_fit], pool[pool_fit]])
    labels = np.concatenate([np.ones(len(own_fit)), np.zeros(len(pool_fit))])
    classifier = LogisticRegression(class_weight="balanced", max_iter=2000, C=1.0)
    classifier.fit(features, labels)
    test = np.concatenate([own[own_test], pool[pool_test]])
    truth = np.concatenate([np.ones(len(own_test)), np.zeros(len(pool_test))])
    auc = float(roc_auc_score(truth, classifier.predict_proba(test)[:, 1]))
    scores = classifier.predict_proba(pool)[:, 1]
    chosen, tokens = [], 0
    for i in np.argsort(-scores, kind="stable"):
        if tokens >= cfg.min_tokens:
            break
        chosen.append(int(i))
        tokens += count_tokens(pool_text(pool_ids[i]))
    log.info("proxy: %d public documents (%d tokens), held-out AUC %.3f, threshold %.3f",
             len(chosen), tokens, auc, scores[chosen[-1]])
    return ProxyChoice(ids=[pool_ids[i] for i in chosen],
                       scores=[round(float(scores[i]), 6) for i in chosen],
                       threshold=round(float(scores[chosen[-1]]), 6), tokens=tokens, auc=auc,
                       own_documents=len(own), pool_documents=len(pool))


def choose(anchor_dir: Path, own_texts: list[str], cache: Path,
           cfg: ProxyConfig | None = None) -> tuple[str, ProxyChoice]:
    """The contributor's whole step: `own_texts` (its training split) against `anchor_dir`'s
    public pool, pool embeddings cached in `cache`, proxy tokens counted with the anchor's
    tokenizer. Returns the pool's fingerprint (published with the ids) and the choice."""
    from components.checkpoints import load_tokenizer

    pool = anchor_pool(anchor_dir)
    ids, embeddings = pool_embeddings(pool, cache)
    tokenizer = load_tokenizer(anchor_dir)
    text = {d.digest: d.text for d in pool.documents}
    choice = select_proxies(own_texts, ids, embeddings, lambda t: len(tokenizer(t).input_ids),
                            text.__getitem__, cfg)
    return pool.fingerprint().digest, choice


def resolve_proxies(pool: Corpus, proxies: dict[str, tuple[str, list[str]]]) -> dict[str, list[str]]:
    """The operator's side: each expert's published proxy ids (with the fingerprint of the pool
    they were chosen from) as text from the anchor's pool, best first; the public expert gets
    the pool's documents no contributor chose. An id that does not resolve is refused: the
    router would learn from text other than what the contributor scored. The pool's test split
    is never tuning text: public perplexity is measured on it."""
    fingerprint = pool.fingerprint().digest
    text = {d.digest: d.text for d in pool.documents}
    tunable = {d.digest for d in pool.documents if d.split != "test"}
    resolved: dict[str, list[str]] = {}
    for name, (pool_fingerprint, ids) in proxies.items():
        if pool_fingerprint != fingerprint:
            raise DataError(f"{name}'s proxies were chosen from another public pool "
                            f"({pool_fingerprint[:12]}, this anchor's is {fingerprint[:12]}); "
                            f"it must contribute again against this anchor")
        missing = [i for i in ids if i not in text]
        if missing:
            raise DataError(f"{len(missing)} of {name}'s {len(ids)} proxy ids are not in the "
                            f"anchor's public pool (first {missing[0][:12]}); it must run proxy "
                            f"selection again against this anchor")
        resolved[name] = [text[i] for i in ids if i in tunable]
    chosen = {i for _, ids in proxies.values() for i in ids}
    return {"public": [text[i] for i in sorted(tunable) if i not in chosen]} | resolved
