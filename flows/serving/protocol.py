"""What the server and its generation process say to each other: one JSON document per message
over a local socket (`multiprocessing.connection.Connection.send_bytes`; never pickle).

The server sends orders, one at a time, and reads the answers to each before the next: `Load`
(answered by `Loaded` or `Failed`), `Generate` (answered by `Tokens` as streamed rows' tokens
are made, then `Generated` or `Failed`), `Stop` (no answer: the process exits).
"""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from components.attribution import Attribution
from components.batch_generation import Sampling


class Load(BaseModel):
    """Load the model in `directory` and serve it from the next batch on (the token ids come
    from its tokenizer, which the server has loaded already)."""

    kind: Literal["load"] = "load"
    directory: str
    pad_token_id: int
    eos_token_id: int | None


class Row(BaseModel):
    """One prompt of a batch."""

    prompt_ids: list[int]
    max_tokens: int
    loo: bool = False  # leave-one-out attribution: its own passes after generation
    stream: bool = False  # its tokens are sent as they are made


class Generate(BaseModel):
    """One batch: every row under one expert mask and one way of sampling."""

    kind: Literal["generate"] = "generate"
    rows: list[Row]
    only: list[str] | None
    exclude: list[str]
    sampling: Sampling
    # streamed tokens go out as they are made, gathered for up to this long (the first step's
    # at once): each message wakes the server, whose cores generation shares
    gather_s: float = 0.0


class Stop(BaseModel):
    kind: Literal["stop"] = "stop"


class Loaded(BaseModel):
    kind: Literal["loaded"] = "loaded"
    names: list[str]  # experts in router order, public first
    context: int  # tokens the model attends over


class Tokens(BaseModel):
    """The streamed rows' tokens made since the last message: (row, token id) pairs."""

    kind: Literal["tokens"] = "tokens"
    tokens: list[tuple[int, int]]


class RowDone(BaseModel):
    tokens: list[int]
    attribution: Attribution  # routing shares always (recorded); leave-one-out where asked


class Generated(BaseModel):
    kind: Literal["generated"] = "generated"
    rows: list[RowDone]
    experts_on: list[str]  # the mask as it ran: the deny-list applied


class Failed(BaseModel):
    kind: Literal["failed"] = "failed"
    message: str
    refused: bool = False  # the order named what the model cannot do (an unknown expert)


Order = Annotated[Load | Generate | Stop, Field(discriminator="kind")]
Answer = Annotated[Loaded | Tokens | Generated | Failed, Field(discriminator="kind")]
_ORDER: TypeAdapter[Order] = TypeAdapter(Order)
_ANSWER: TypeAdapter[Answer] = TypeAdapter(Answer)


def send(connection: Connection, message: BaseModel) -> None:
    connection.send_bytes(message.model_dump_json().encode())


def receive_order(connection: Connection) -> Order:
    return _ORDER.validate_json(connection.recv_bytes())


def receive_answer(connection: Connection) -> Answer:
    return _ANSWER.validate_json(connection.recv_bytes())
