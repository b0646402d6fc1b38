"""What the server runs: the release it serves now, and one batch of generations on it.

Everything that touches a model happens in the engine's one worker thread, in order: loading a
release, a batch (its expert mask set, `generate` with the routing attribution taken from its own
passes, leave-one-out passes for rows that asked for them), then that batch's attribution records
(after the responses went out: off the response path), a swap to a newly loaded release. So a swap
never lands mid-request, and a mask never changes under a running batch. One thread also keeps
torch to one OpenMP thread team: on this 2-core machine a generation called from a second
thread ran at half speed while the team of the thread that had loaded the model stood by.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from components.attribution import Attribution, RoutingTally, attribute
from components.batch_generation import Sampling, generate_rows
from components.errors import ConfigError
from components.runtime import apply_selection, expert_names, load_flexo_model
from flows.attribution import record_attributions
from flows.withdrawals import denied, deny_list_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedRelease:
    """A loaded model and how requests name it."""

    name: str  # `v3` for a registry version, the directory's name otherwise
    model_id: str  # what /v1/models lists (`flexo-release-v3`)
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    names: list[str]  # experts in router order, public first
    context: int  # tokens the model attends over: prompt + completion must fit
    created: int  # unix time it was loaded

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def load_release(directory: Path, name: str, model_id: str) -> ServedRelease:
    """The model in `directory` through flexo's runtime (negative biases applied; the home's
    deny-list re-read before every forward pass)."""
    from components.checkpoints import load_tokenizer

    model = load_flexo_model(Path(directory), deny_list=deny_list_path())
    model.eval()
    tokenizer = load_tokenizer(directory)
    return ServedRelease(name=name, model_id=model_id, model=model, tokenizer=tokenizer,
                         names=expert_names(model.config),
                         context=int(model.config.max_position_embeddings),
                         created=int(time.time()))


@dataclass
class GenerationJob:
    """One prompt of one request; jobs batch together when their `key` matches."""

    prompt_ids: list[int]
    max_tokens: int
    only: tuple[str, ...] | None
    exclude: tuple[str, ...]
    sampling: Sampling
    attribution: str | None  # "routing", "loo" or None (recorded anyway, after the response)
    consumer: str
    sink: Callable[[int], None] | None = None  # each new token id, from the worker thread

    @property
    def key(self) -> tuple:
        return self.only, self.exclude, self.sampling


class RowResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    tokens: list[int]
    finish_reason: str  # "stop" (end of sequence) or "length"
    release: str
    model_id: str
    experts_on: list[str]
    attribution: Attribution | None = None


BatchRun = tuple[list[RowResult | Exception], Callable[[], None] | None]


class Engine:
    """The served release, the worker thread, and the batch function the batcher calls."""

    def __init__(self, load: Callable[[], ServedRelease]):
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flexo-model")
        self.current = self.executor.submit(load).result()
        self.swaps = 0

    def offer(self, load: Callable[[], ServedRelease]) -> None:
        """Load a release in the worker thread after the batch running now, and serve it from
        the next batch on; a load that fails is logged and the current release serves on."""
        def swap() -> None:
            try:
                served = load()
            except Exception:
                log.exception("loading the new release failed; %s serves on",
                              self.current.model_id)
                return
            log.info("serving %s (was %s)", served.model_id, self.current.model_id)
            self.current, self.swaps = served, self.swaps + 1

        self.executor.submit(swap)

    def run_batch(self, jobs: list[GenerationJob]) -> BatchRun:
        served = self.current
        first = jobs[0]
        try:
            active = apply_selection(served.model, only=list(first.only) if first.only is not None
                                     else None, exclude=list(first.exclude))
        except ConfigError as e:  # the release was swapped since the request was checked
            return [e] * len(jobs), None
        gone = denied()
        on = [n for n, flag in zip(served.names, active, strict=True) if flag and n not in gone]
        tokenizer = served.tokenizer

        def sink(row: int, token: int) -> None:
            if jobs[row].sink is not None:
                jobs[row].sink(token)

        with RoutingTally(served.model, len(jobs)) as tally:
            rows = generate_rows(served.model, [j.prompt_ids for j in jobs],
                                 [j.max_tokens for j in jobs], first.sampling,
                                 pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id, sink=sink)
        found: list[Attribution] = []
        results: list[RowResult | Exception] = []
        for job, new, routing in zip(jobs, rows, tally.shares([len(n) for n in rows]),
                                     strict=True):
            if job.attribution == "loo":  # its own passes: the response waits for them
                found.append(attribute(served.model, torch.tensor([job.prompt_ids + new]),
                                       len(job.prompt_ids), loo=True))
            else:
                found.append(Attribution(generated_tokens=len(new), routing=routing))
            stopped = tokenizer.eos_token_id is not None and new[-1:] == [tokenizer.eos_token_id]
            results.append(RowResult(tokens=new, finish_reason="stop" if stopped else "length",
                                     release=served.name, model_id=served.model_id,
                                     experts_on=on,
                                     attribution=found[-1] if job.attribution else None))

        def record() -> None:  # one transaction for the batch, after the responses went out
            try:
                record_attributions(served.name, on, [j.consumer for j in jobs],
                                    [len(j.prompt_ids) for j in jobs], found)
            except Exception:  # lost records are logged, never a failed response
                log.exception("attribution records of %d requests failed", len(jobs))

        return results, record
