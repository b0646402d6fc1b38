"""Batched generation and batched attribution give each row what it gets alone (what lets
`flexo serve` batch concurrent requests without changing any answer)."""

from __future__ import annotations

import pytest
import torch

from components.attribution import RoutingTally, attribute, routing_shares
from components.batch_generation import Sampling, generate_rows
from components.checkpoints import load_tokenizer
from components.router import set_denied
from components.runtime import apply_selection, expert_names, load_flexo_model

PROMPTS = ("def main(", "The court held that the defendant", "Once")


@pytest.fixture(scope="module")
def runtime(merged):
    return load_flexo_model(merged), load_tokenizer(merged)


def test_a_batch_of_prompts_of_any_length_and_budget_gives_each_its_greedy_text(runtime):
    model, tokenizer = runtime
    prompts = [tokenizer(p).input_ids for p in PROMPTS]
    budgets = [12, 5, 20]
    steps: list[list[tuple[int, int]]] = []
    rows = generate_rows(model, prompts, budgets, Sampling(), tokenizer.pad_token_id,
                         tokenizer.eos_token_id, sink=steps.append)
    for prompt, budget, row in zip(prompts, budgets, rows, strict=True):
        alone = model.generate(torch.tensor([prompt]), max_new_tokens=budget, do_sample=False,
                               pad_token_id=tokenizer.pad_token_id)[0, len(prompt):].tolist()
        assert row == alone[:len(row)] and 1 <= len(row) <= budget
        assert len(row) == budget or row[-1] == tokenizer.eos_token_id
    # each token handed out, none extra, in one call per step
    assert [[t for step in steps for r, t in step if r == i] for i in range(3)] == rows
    assert len(steps) == max(map(len, rows))
    sampled = [generate_rows(model, prompts, budgets, Sampling(temperature=1.0, seed=7),
                             tokenizer.pad_token_id, tokenizer.eos_token_id) for _ in range(2)]
    assert sampled[0] == sampled[1] != rows  # a seed fixes the sample; it is not greedy


def test_routing_shares_of_a_padded_batch_equal_each_rows_own_pass(runtime):
    model, tokenizer = runtime
    apply_selection(model, exclude=["legal"])
    try:
        rows = [tokenizer(p).input_ids + [5, 9, 11] for p in PROMPTS]
        prompts = [len(tokenizer(p).input_ids) for p in PROMPTS]
        batched = routing_shares(model, rows, prompts)
        for row, prompt, shares in zip(rows, prompts, batched, strict=True):
            alone = attribute(model, torch.tensor([row]), prompt).routing
            assert shares.keys() == alone.keys() and shares["legal"] == 0.0
            assert all(abs(shares[k] - alone[k]) < 1e-5 for k in alone), (shares, alone)
    finally:
        apply_selection(model)


def test_routing_taken_while_generating_equals_each_rows_pass_afterwards(runtime):
    """What `flexo serve` records without an extra pass is what `flexo generate` records with
    one: rows of different lengths and budgets, one expert off."""
    model, tokenizer = runtime
    apply_selection(model, exclude=["code"])
    try:
        prompts = [tokenizer(p).input_ids for p in PROMPTS]
        with RoutingTally(model, len(prompts)) as tally:
            rows = generate_rows(model, prompts, [7, 3, 12], Sampling(), tokenizer.pad_token_id,
                                 tokenizer.eos_token_id)
        during = tally.shares([len(r) for r in rows])
        for prompt, row, shares in zip(prompts, rows, during, strict=True):
            after = attribute(model, torch.tensor([prompt + row]), len(prompt)).routing
            assert shares.keys() == after.keys() and shares["code"] == 0.0
            assert all(abs(shares[k] - after[k]) < 1e-4 for k in after), (shares, after)
        with pytest.raises(ValueError, match="passes were recorded"):
            tally.shares([len(rows[0]) + 20, 1, 1])
    finally:
        apply_selection(model)


def test_routing_taken_while_generating_survives_a_withdrawal_between_passes(runtime):
    """A withdrawal can land mid-generation (the deny-list is re-read before each pass): the
    router then picks fewer experts than before. The shares still add up, the withdrawn expert
    keeping only what it had before its denial."""
    model, tokenizer = runtime
    names = expert_names(model.config)
    apply_selection(model, only=["legal"])  # public and legal usable: each pass picks both
    passes = []

    def deny_legal_after_two(_module, _args) -> None:
        passes.append(1)
        if len(passes) == 3:
            set_denied(model, [n == "legal" for n in names])  # from now on, only public

    hook = model.register_forward_pre_hook(deny_legal_after_two)
    try:
        prompts = [tokenizer(p).input_ids for p in PROMPTS]
        with RoutingTally(model, len(prompts)) as tally:
            rows = generate_rows(model, prompts, [6, 6, 6], Sampling(), tokenizer.pad_token_id)
        shares = tally.shares([len(r) for r in rows])
    finally:
        hook.remove()
        set_denied(model, [False] * len(names))
        apply_selection(model)
    assert len(passes) >= 3 and all(len(r) == 6 for r in rows)
    for row in shares:
        assert abs(sum(row.values()) - 1) < 1e-6
        assert 0 < row["legal"] < 0.5 and row["public"] > 0.5  # 2 passes with legal, 4 without
        assert row["code"] == row["literature"] == 0
