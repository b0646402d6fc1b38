"""`flexo contribute` under `torchrun`: rank 0 runs the flow, the other ranks join its training.

Only rank 0 validates, screens, talks to MLflow and Prefect, evaluates and publishes. When its
`train` task has a module to train (not cached), it sends a `TrainingOrder` and every rank trains
it together (components/distributed.py); otherwise, and whenever its flow ends or fails first,
the order says there is nothing to train and the others exit. Each rank reads and screens the
data itself (the contributor's text is never sent between processes) and must arrive at the
digest rank 0 trains on. The anchor and the checkpoints are shared by path: one node, or
several with a shared filesystem.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from components import distributed
from components.errors import DataError
from components.expert_training import ExpertConfig
from components.pii import PiiPolicy


class TrainingOrder(BaseModel):
    """Rank 0's word to the others: train this module with me, or nothing to train."""

    train: bool
    anchor: Path | None = None
    out: Path | None = None  # the module's directory (rank 0 writes it; its checkpoints beside)
    data_digest: str | None = None
    expert: ExpertConfig | None = None


class _Leader:
    """Rank 0's side: exactly one order reaches the other ranks per command."""

    sent = False

    @classmethod
    def order(cls, order: TrainingOrder) -> None:
        if distributed.rank_and_size()[1] > 1 and not cls.sent:
            distributed.send(order.model_dump(mode="json"))
            cls.sent = True


def order_training(anchor: Path, out: Path, data_digest: str, cfg: ExpertConfig) -> None:
    """Call the other ranks into training this module (nothing in a single process)."""
    _Leader.order(TrainingOrder(train=True, anchor=anchor, out=out, data_digest=data_digest,
                                expert=cfg))


@contextmanager
def leading() -> Iterator[None]:
    """Around rank 0's flow: if it never ordered training (cached module, or a failure before
    it), the other ranks hear there is nothing to train."""
    try:
        yield
    finally:
        _Leader.order(TrainingOrder(train=False))


def follow(contributor: str, data: Path, pii: PiiPolicy, device: str | None) -> None:
    """A rank other than 0: wait for rank 0's order and train with it, if it is one to train."""
    from components.pii import screen_corpus
    from components.user_data import load_directory
    from flows.modules import train_module

    order = TrainingOrder.model_validate(distributed.receive())
    if not order.train:
        return
    corpus, _ = screen_corpus(load_directory(data), pii)
    if corpus.fingerprint().digest != order.data_digest:
        raise DataError(f"rank {distributed.rank_and_size()[0]} reads other data in {data} than "
                        f"rank 0; every process must see the same directory")
    train_module(order.anchor, contributor, corpus, order.expert, order.out, device=device)
