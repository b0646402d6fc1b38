"""Many prompts through one `generate` call: left-padded, each row stopping at its own length,
each step's new tokens handed out the moment that step ends.

A server batches concurrent requests that share an expert mask. transformers' `generate` does the
work (KV cache, sampling, position ids from the attention mask); this module adds what a batch of
independent requests needs from it: a per-row token budget (a stopping criterion that reports
each row, so the batch ends when its longest request does) and a streamer that takes the whole
batch's tokens per step (transformers' own streamers take a batch of one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

# a step's new tokens as (row, token id) pairs, rows that are done left out; called from the
# generating thread once per step (one call, not one per row: a server passes them on in one
# message)
TokenSink = Callable[[list[tuple[int, int]]], None]


class Sampling(BaseModel):
    """How the next token is chosen; one value per batch (requests that differ run apart)."""

    model_config = ConfigDict(frozen=True)

    temperature: float = Field(0.0, ge=0.0, le=2.0)  # 0: greedy
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None  # with sampling: the same seed gives the same text

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def generate_kwargs(self) -> dict:
        if self.greedy:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": 0}


class RowBudget(StoppingCriteria):
    """Row i is done after `limits[i]` new tokens or on an end-of-sequence token."""

    def __init__(self, prompt_length: int, limits: Sequence[int], eos: int | None):
        self.start, self.eos = prompt_length, eos
        self.limits = torch.tensor(list(limits))

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        made = input_ids.shape[1] - self.start
        done = self.limits.to(input_ids.device) <= made
        if self.eos is not None:
            done |= (input_ids[:, self.start:] == self.eos).any(dim=1)
        return done


class RowStreamer(BaseStreamer):
    """Hands each step's new tokens to `sink`, each row's until that row is done (its budget or
    its end-of-sequence token); transformers calls `put` with the prompt first, then once per
    step with the batch's new tokens."""

    def __init__(self, sink: TokenSink, limits: Sequence[int], eos: int | None):
        self.sink, self.limits, self.eos = sink, list(limits), eos
        self.made = [0] * len(self.limits)
        self.done = [False] * len(self.limits)
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        step = []
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            step.append((row, token))
            self.made[row] += 1
            self.done[row] = self.made[row] >= self.limits[row] or token == self.eos
        if step:
            self.sink(step)

    def end(self) -> None:
        pass


@torch.no_grad()
def generate_rows(model: PreTrainedModel, prompts: Sequence[Sequence[int]],
                  max_new_tokens: Sequence[int], sampling: Sampling, pad_token_id: int,
                  eos_token_id: int | None = None, sink: TokenSink | None = None,
                  ) -> list[list[int]]:
    """The new tokens of each prompt (ids), generated as one batch; a row's list ends at its
    budget or after its end-of-sequence token. Greedy rows give what each prompt alone gives,
    up to float rounding across batch shapes."""
    if not prompts:
        return []
    if any(not p for p in prompts) or any(n < 1 for n in max_new_tokens):
        raise ValueError("every prompt needs at least one token and a budget of at least one")
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):  # left padding: every row's last token lines up
        ids[row, width - len(prompt):] = torch.tensor(list(prompt))
        mask[row, width - len(prompt):] = 1
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    streamer = RowStreamer(sink, max_new_tokens, eos_token_id) if sink else None
    output = model.generate(
        input_ids=ids.to(device), attention_mask=mask.to(device),
        max_new_tokens=max(max_new_tokens), pad_token_id=pad_token_id,
        eos_token_id=eos_token_id, streamer=streamer,
        stopping_criteria=StoppingCriteriaList([RowBudget(width, max_new_tokens,
                                                          eos_token_id)]),
        **sampling.generate_kwargs())
    rows = []
    for row, limit in enumerate(max_new_tokens):
        new = output[row, width:width + limit].tolist()
        if eos_token_id is not None and eos_token_id in new:
            new = new[:new.index(eos_token_id) + 1]
        rows.append(new)
    return rows
