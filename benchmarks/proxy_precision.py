"""Proxy precision (issue 14, acceptance 1): for each built-in private domain, a classifier trained
on that domain's private train split against the public pool (contributor-side, the shipped
defaults) picks public documents; the public mix's 5% slice of the domain is the oracle of which
picks truly resemble it.

    python -m benchmarks.proxy_precision   # -> benchmarks/results/proxy_precision.json (~4 min)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from components.atomic import atomic_write
from components.builtin_corpora import PRIVATE_DOMAINS, load_domain, proxy_corpus, public_mix
from components.proxy_selection import ProxyConfig, pool_embeddings, select_proxies

RESULTS = Path(__file__).parent / "results" / "proxy_precision.json"
CHARS_PER_TOKEN = 4  # no anchor here: a byte-level BPE of the small presets averages ~4 chars


def measure(cache: Path, cfg: ProxyConfig | None = None,
            domains: tuple[str, ...] = PRIVATE_DOMAINS) -> dict:
    """Precision of each domain's proxy against its public slice, with the classifier's AUC."""
    cfg = cfg or ProxyConfig()
    pool = public_mix()
    started = time.perf_counter()
    ids, embeddings = pool_embeddings(pool, cache)
    text = {d.digest: d.text for d in pool.documents}
    rows = []
    for domain in domains:
        slice_ids = {d.digest for d in proxy_corpus(domain).documents}
        choice = select_proxies(load_domain(domain).split("train").texts(), ids, embeddings,
                                lambda t: max(1, len(t) // CHARS_PER_TOKEN), text.__getitem__,
                                cfg)
        hits = sum(i in slice_ids for i in choice.ids)
        rows.append({"domain": domain, "chosen": len(choice.ids), "in_slice": hits,
                     "precision": hits / len(choice.ids), "slice_documents": len(slice_ids),
                     "auc": round(choice.auc, 4), "threshold": choice.threshold,
                     "tokens": choice.tokens, "own_documents": choice.own_documents})
    return {"pool_documents": len(ids), "min_tokens": cfg.min_tokens,
            "max_documents": cfg.max_documents, "chars_per_token": CHARS_PER_TOKEN,
            "seconds": round(time.perf_counter() - started, 1), "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cache", type=Path, default=Path(".flexo/cache/shared"))
    args = parser.parse_args()
    report = measure(args.cache)
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    for r in report["results"]:
        print(f"{r['domain']:>10}: {r['in_slice']}/{r['chosen']} in its slice "
              f"({r['precision']:.0%}), AUC {r['auc']:.3f}")


if __name__ == "__main__":
    main()
