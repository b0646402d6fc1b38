"""The server's generation process: holds the model and runs what the server orders, one order
at a time (`flows.serving.protocol`), until told to stop or its server goes away.

Why a process of its own: generation and the HTTP side (parsing, streaming, the event loop) in
one process take turns on one interpreter lock, so the model's thread waited for the web stack's
Python between two torch ops. Here the model has an interpreter to itself (the two still share
the machine's cores: README, "Serving under load").

    python -m flows.serving.worker FD   (FD: the socket to the server, inherited)
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import torch
from transformers import PreTrainedModel

from components.attribution import Attribution, RoutingTally, attribute
from components.batch_generation import generate_rows
from components.errors import ConfigError
from components.runtime import apply_selection, expert_names, load_flexo_model
from flows.cli.console import FORMAT
from flows.serving.protocol import (
    Failed,
    Generate,
    Generated,
    Load,
    Loaded,
    RowDone,
    Stop,
    Tokens,
    receive_order,
    send,
)
from flows.withdrawals import denied, deny_list_path

log = logging.getLogger("flexo.serving.worker")


@dataclass(frozen=True)
class Served:
    model: PreTrainedModel
    pad_token_id: int
    eos_token_id: int | None


def load(order: Load) -> tuple[Served, Loaded]:
    """The model in the order's directory through flexo's runtime (negative biases applied; the
    home's deny-list re-read before every forward pass)."""
    model = load_flexo_model(Path(order.directory), deny_list=deny_list_path())
    model.eval()
    served = Served(model, order.pad_token_id, order.eos_token_id)
    return served, Loaded(names=expert_names(model.config),
                          context=int(model.config.max_position_embeddings))


def generate(served: Served, order: Generate, connection: Connection) -> Generated:
    """The batch's rows under its mask, each streamed row's tokens sent as they are made, the
    routing shares taken from generation's own passes (leave-one-out passes where asked)."""
    model = served.model
    active = apply_selection(model, only=order.only, exclude=order.exclude)
    gone = denied()
    on = [n for n, flag in zip(expert_names(model.config), active, strict=True)
          if flag and n not in gone]
    streamed = {i for i, row in enumerate(order.rows) if row.stream}
    gathered: list[tuple[int, int]] = []
    sent = 0.0  # when tokens last went out (0: none yet)

    def flush() -> None:
        nonlocal sent
        if gathered:
            send(connection, Tokens(tokens=gathered))
            gathered.clear()
            sent = time.monotonic()

    def sink(step: list[tuple[int, int]]) -> None:
        gathered.extend((row, token) for row, token in step if row in streamed)
        if time.monotonic() - sent >= order.gather_s:
            flush()

    with RoutingTally(model, len(order.rows)) as tally:
        made = generate_rows(model, [r.prompt_ids for r in order.rows],
                             [r.max_tokens for r in order.rows], order.sampling,
                             pad_token_id=served.pad_token_id,
                             eos_token_id=served.eos_token_id,
                             sink=sink if streamed else None)
    flush()
    rows = []
    for row, new, routing in zip(order.rows, made, tally.shares([len(n) for n in made]),
                                 strict=True):
        if row.loo:
            found = attribute(model, torch.tensor([row.prompt_ids + new]), len(row.prompt_ids),
                              loo=True)
        else:
            found = Attribution(generated_tokens=len(new), routing=routing)
        rows.append(RowDone(tokens=new, attribution=found))
    return Generated(rows=rows, experts_on=on)


def serve(connection: Connection) -> None:
    """Answer orders until `Stop` or until the server's end of the socket closes."""
    served: Served | None = None
    while True:
        try:
            order = receive_order(connection)
        except (EOFError, OSError):  # the server is gone
            return
        if isinstance(order, Stop):
            return
        try:
            if isinstance(order, Load):
                served, answer = load(order)  # the old model serves on if this fails
            elif served is None:
                answer = Failed(message="no model is loaded")
            else:
                answer = generate(served, order, connection)
        except ConfigError as e:
            answer = Failed(message=str(e), refused=True)
        except Exception as e:  # the server hears why; the process serves on
            log.exception("%s failed", order.kind)
            answer = Failed(message=f"{type(e).__name__}: {e}")
        send(connection, answer)


def main() -> None:
    # Ctrl-C reaches the whole process group: the server decides when this process ends (after
    # the batches in flight), so the interrupt is the server's alone
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format=FORMAT, stream=sys.stderr)
    logging.captureWarnings(True)
    serve(Connection(int(sys.argv[1])))


if __name__ == "__main__":
    main()
