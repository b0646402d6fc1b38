"""What the server runs: the release it serves now, and one batch of generations on it.

The model lives in a generation process of its own (`flows.serving.worker`); this side keeps
what requests are checked against (the release's names, context and tokenizer) and talks to that
process from one worker thread, one order at a time: a batch (its tokens passed on to the
requests' streams as they come), that batch's attribution records (after the responses went out:
off the response path), a swap to a newly loaded release. So a swap never lands mid-request, and
a mask never changes under a running batch. If the generation process dies, its batch fails with
`GenerationUnavailable` (a 503: retry) and a new process loads the release being served.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from pydantic import BaseModel
from transformers import PreTrainedTokenizerBase

from components.attribution import Attribution
from components.batch_generation import Sampling
from components.errors import CheckpointError, ConfigError
from flows.attribution import record_attributions
from flows.serving.protocol import (
    Answer,
    Failed,
    Generate,
    Load,
    Loaded,
    Row,
    Stop,
    Tokens,
    receive_answer,
    send,
)

log = logging.getLogger(__name__)
STOP_WAIT_S = 30  # how long a generation process gets to exit once told to


class ReleaseSource(BaseModel):
    """Where a release's checkpoint lies and how requests name it."""

    directory: Path
    name: str  # `v3` for a registry version, the directory's name otherwise
    model_id: str  # what /v1/models lists (`flexo-release-v3`)


@dataclass(frozen=True)
class ServedRelease:
    """The release being served, as requests are checked against it (its model is in the
    generation process)."""

    source: ReleaseSource
    tokenizer: PreTrainedTokenizerBase
    names: list[str]  # experts in router order, public first
    context: int  # tokens the model attends over: prompt + completion must fit
    created: int  # unix time it was loaded

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def model_id(self) -> str:
        return self.source.model_id

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


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
    tokens: list[int]
    finish_reason: str  # "stop" (end of sequence) or "length"
    release: str
    model_id: str
    experts_on: list[str]
    attribution: Attribution | None = None


class GenerationUnavailable(RuntimeError):
    """The generation process stopped during a batch; a new one is started: retry."""


BatchRun = tuple[list[RowResult | Exception], Callable[[], None] | None]


def _log_file() -> Path | None:
    """The command's log file, if it writes one: the generation process logs there too."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


class GenerationProcess:
    """A `flows.serving.worker` process and the socket to it."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        log_file = _log_file()
        # no log file: its output is ours
        with theirs, open(log_file, "ab") if log_file else contextlib.nullcontext() as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flows.serving.worker", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=output,
                stderr=output)
        self.connection = Connection(ours.detach())

    def ask(self, order: Load | Generate) -> Answer:
        send(self.connection, order)
        return receive_answer(self.connection)

    def next_answer(self) -> Answer:
        return receive_answer(self.connection)

    def stop(self) -> None:
        try:
            send(self.connection, Stop())
        except OSError:
            pass  # gone already
        try:
            self.process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.connection.close()


class Engine:
    """The served release, the generation process, the worker thread that talks to it, and the
    batch function the batcher calls."""

    def __init__(self, source: ReleaseSource, gather_s: float = 0.0):
        """`gather_s`: streamed tokens come from the generation process at most this often
        (the first step's at once); a stream that sends a chunk every 100 ms gains nothing
        from a message per step, and each message wakes this process on generation's cores."""
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flexo-model")
        self.swaps, self.gather_s = 0, gather_s
        self.generator = GenerationProcess()
        try:
            self.current = self.executor.submit(self._load, source).result()
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.generator.process.pid

    def _load(self, source: ReleaseSource) -> ServedRelease:
        from components.checkpoints import load_tokenizer

        tokenizer = load_tokenizer(source.directory)
        answer = self.generator.ask(Load(directory=str(source.directory),
                                         pad_token_id=tokenizer.pad_token_id,
                                         eos_token_id=tokenizer.eos_token_id))
        if isinstance(answer, Failed):
            raise CheckpointError(f"loading {source.model_id} from {source.directory} failed: "
                                  f"{answer.message}")
        assert isinstance(answer, Loaded)
        return ServedRelease(source=source, tokenizer=tokenizer,
                             names=answer.names, context=answer.context,
                             created=int(time.time()))

    def offer(self, source: ReleaseSource) -> None:
        """Load a release after the batch running now, and serve it from the next batch on; a
        load that fails is logged and the current release serves on."""
        def swap() -> None:
            try:
                served = self._load(source)
            except Exception:
                log.exception("loading the new release failed; %s serves on",
                              self.current.model_id)
                return
            log.info("serving %s (was %s)", served.model_id, self.current.model_id)
            self.current, self.swaps = served, self.swaps + 1

        self.executor.submit(swap)

    def _restart(self) -> None:
        """A new generation process with the served release (the old one died)."""
        code = self.generator.process.poll()
        log.error("the generation process stopped (exit code %s); starting a new one", code)
        self.generator.stop()
        self.generator = GenerationProcess()
        self.current = self._load(self.current.source)

    def run_batch(self, jobs: list[GenerationJob]) -> BatchRun:
        served, first = self.current, jobs[0]
        order = Generate(rows=[Row(prompt_ids=j.prompt_ids, max_tokens=j.max_tokens,
                                   loo=j.attribution == "loo", stream=j.sink is not None)
                               for j in jobs],
                         only=list(first.only) if first.only is not None else None,
                         exclude=list(first.exclude), sampling=first.sampling,
                         gather_s=self.gather_s)
        try:
            answer = self.generator.ask(order)
            while isinstance(answer, Tokens):
                for row, token in answer.tokens:
                    jobs[row].sink(token)
                answer = self.generator.next_answer()
        except (EOFError, OSError):
            try:
                self._restart()
            except Exception:  # the next batch tries again
                log.exception("starting a new generation process failed")
            gone = GenerationUnavailable("the generation process stopped during this request "
                                         "and was restarted; send it again")
            return [gone] * len(jobs), None
        if isinstance(answer, Failed):
            # refused: an expert the release does not have (it was swapped since the request
            # was checked)
            failure = ConfigError(answer.message) if answer.refused else RuntimeError(answer.message)
            return [failure] * len(jobs), None
        tokenizer = served.tokenizer
        results: list[RowResult | Exception] = []
        for job, row in zip(jobs, answer.rows, strict=True):
            stopped = (tokenizer.eos_token_id is not None
                       and row.tokens[-1:] == [tokenizer.eos_token_id])
            results.append(RowResult(tokens=row.tokens, finish_reason="stop" if stopped
                                     else "length", release=served.name,
                                     model_id=served.model_id, experts_on=answer.experts_on,
                                     attribution=row.attribution if job.attribution else None))
        on = answer.experts_on

        def record() -> None:  # one transaction for the batch, after the responses went out
            try:
                record_attributions(served.name, on, [j.consumer for j in jobs],
                                    [len(j.prompt_ids) for j in jobs],
                                    [row.attribution for row in answer.rows])
            except Exception:  # lost records are logged, never a failed response
                log.exception("attribution records of %d requests failed", len(jobs))

        return results, record

    def close(self) -> None:
        """Stop the generation process (after the batch in flight) and the worker thread."""
        self.executor.submit(self.generator.stop).result()
        self.executor.shutdown(wait=True)
