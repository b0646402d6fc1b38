"""Every generation leaves one attribution record (numbers only) in FLEXO_HOME's store: the
command line, the HTTP server and the MLflow pyfunc all append through here."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from components.attribution import Attribution, attribute
from components.clock import timestamp
from flows.settings import flexo_home
from governance.attribution import STORE_FILE, AttributionRecord, AttributionStore


def attribution_store() -> AttributionStore:
    return AttributionStore(flexo_home() / STORE_FILE)


def record_generation(model: PreTrainedModel, ids: torch.Tensor, prompt_tokens: int,
                      release: str, active: list[str], consumer: str, loo: bool = False,
                      ) -> Attribution:
    """Attribute the tokens after `prompt_tokens` in `ids` (1, T) to `model`'s experts as it is
    switched now, and append the record."""
    found = attribute(model, ids, prompt_tokens, loo=loo)
    record_attributions(release, active, [consumer], [prompt_tokens], [found])
    return found


def record_attributions(release: str, active: list[str], consumers: list[str],
                        prompt_tokens: list[int], found: list[Attribution]) -> None:
    """One record per generation of `release` (experts `active`), in one transaction."""
    when = timestamp()
    attribution_store().append(*(
        AttributionRecord(time=when, release=release, consumer=consumer, prompt_tokens=prompt,
                          generated_tokens=a.generated_tokens, active=active, routing=a.routing,
                          loo=a.loo)
        for consumer, prompt, a in zip(consumers, prompt_tokens, found, strict=True)))
