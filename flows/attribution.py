"""Every generation leaves one attribution record (numbers only) in FLEXO_HOME's store: the
command line, the HTTP server and the MLflow pyfunc all append through here."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from components.attribution import Attribution, attribute, routing_shares
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
    attribution_store().append(AttributionRecord(
        time=timestamp(), release=release, consumer=consumer, prompt_tokens=prompt_tokens,
        generated_tokens=found.generated_tokens, active=active, routing=found.routing,
        loo=found.loo))
    return found


def record_generations(model: PreTrainedModel, rows: list[list[int]], prompt_tokens: list[int],
                       release: str, active: list[str], consumers: list[str]) -> None:
    """Routing attribution of many generations (prompt + new token ids per row) in one forward
    pass, appended as one record each, in one transaction."""
    if not rows:
        return
    when = timestamp()
    attribution_store().append(*(
        AttributionRecord(time=when, release=release, consumer=consumer, prompt_tokens=prompt,
                          generated_tokens=len(row) - prompt, active=active, routing=routing)
        for row, prompt, consumer, routing in zip(
            rows, prompt_tokens, consumers, routing_shares(model, rows, prompt_tokens),
            strict=True)))
