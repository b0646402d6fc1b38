"""The server's generation process, spoken to as the server does (JSON orders over a real
socket): a batch's streamed tokens arrive gathered, every one of them, and the rows answer as
`flexo generate` would (tests/flows/test_serve.py runs the whole server)."""

from __future__ import annotations

import socket
from multiprocessing.connection import Connection

import pytest
import torch

from components.batch_generation import Sampling
from components.checkpoints import load_tokenizer
from components.runtime import apply_selection
from flows.serving.protocol import Generate, Generated, Load, Row, Tokens, receive_answer
from flows.serving.worker import generate, load

PROMPTS = ("def main(", "The court held that", "It was a dark and stormy")


@pytest.fixture(scope="module")
def served(merged, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLEXO_HOME", str(tmp_path_factory.mktemp("worker-home")))
        tokenizer = load_tokenizer(merged)
        held, loaded = load(Load(directory=str(merged), pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id))
        yield held, loaded, tokenizer


def _answers(served, gather_s: float, stream: list[bool]) -> list:
    """What the server would read for one batch: the generation's messages, in order."""
    held, _, tokenizer = served
    ours, theirs = socket.socketpair()
    with Connection(ours.detach()) as server, Connection(theirs.detach()) as worker:
        order = Generate(rows=[Row(prompt_ids=tokenizer(p).input_ids, max_tokens=12, stream=s)
                               for p, s in zip(PROMPTS, stream, strict=True)],
                         only=None, exclude=["legal"], sampling=Sampling(), gather_s=gather_s)
        done = generate(held, order, worker)
        answers = []
        while server.poll(0):
            answers.append(receive_answer(server))
    return [*answers, done]


def _streamed(answers: list, row: int) -> list[int]:
    return [t for a in answers if isinstance(a, Tokens) for r, t in a.tokens if r == row]


def test_streamed_tokens_arrive_gathered_and_add_up_to_each_row(served):
    every_step = _answers(served, 0.0, [True, False, True])
    gathered = _answers(served, 60.0, [True, False, True])
    done = every_step[-1]
    assert isinstance(done, Generated) and "legal" not in done.experts_on
    assert gathered[-1].rows == done.rows  # gathering changes the messages, not the rows
    steps = max(len(done.rows[0].tokens), len(done.rows[2].tokens))
    assert len(every_step) - 1 == steps  # one message per step of a streamed row
    assert len(gathered) - 1 == 2  # the first step's at once, the rest at the end
    for answers in (every_step, gathered):
        assert _streamed(answers, 0) == done.rows[0].tokens
        assert _streamed(answers, 2) == done.rows[2].tokens
        assert _streamed(answers, 1) == []  # not streamed: its tokens come with the rows
    for row in done.rows:
        assert abs(sum(row.attribution.routing.values()) - 1) < 1e-6
        assert row.attribution.routing["legal"] == 0.0


def test_the_rows_are_what_generate_gives_each_prompt_alone(served):
    held, loaded, tokenizer = served
    assert loaded.names[0] == "public" and "legal" in loaded.names
    done = _answers(served, 0.0, [False, False, False])[-1]
    apply_selection(held.model, exclude=["legal"])
    try:
        for prompt, row in zip(PROMPTS, done.rows, strict=True):
            ids = tokenizer(prompt).input_ids
            alone = held.model.generate(torch.tensor([ids]), max_new_tokens=12,
                                        do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id)[0, len(ids):]
            assert row.tokens == alone.tolist()[:len(row.tokens)]
    finally:
        apply_selection(held.model)
