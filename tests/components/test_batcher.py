"""The dynamic batcher on its own: batches by key, a bounded queue, a drain that finishes what
was admitted (what `flexo serve` relies on; tests/flows/test_serve.py runs it for real)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from components.batcher import Batcher, QueueFull


def _recording_batcher(**kwargs):
    batches: list[list[str]] = []
    gate = threading.Event()

    def run(jobs: list[str]):
        gate.wait(5)  # the first batch holds the worker until the test lets it go
        batches.append(list(jobs))
        return [job.upper() for job in jobs], None

    return Batcher(run, **kwargs), batches, gate


def test_concurrent_jobs_with_one_key_run_as_one_batch_and_other_keys_apart():
    async def scenario():
        batcher, batches, gate = _recording_batcher(max_batch=4, max_wait_s=0.05)
        batcher.start()
        futures = [batcher.enqueue("a", "a1"), batcher.enqueue("b", "b1"),
                   batcher.enqueue("a", "a2"), batcher.enqueue("a", "a3")]
        gate.set()
        results = await asyncio.gather(*futures)
        await batcher.drain()
        return results, batches

    results, batches = asyncio.run(scenario())
    assert results == ["A1", "B1", "A2", "A3"]
    assert batches == [["a1", "a2", "a3"], ["b1"]]  # the oldest job's key first, in order


def test_a_full_queue_refuses_at_once_and_a_drain_finishes_every_admitted_job():
    async def scenario():
        batcher, batches, gate = _recording_batcher(max_batch=2, max_wait_s=0, max_queue=3)
        batcher.start()
        first = batcher.enqueue("k", "x0")
        await asyncio.sleep(0.05)  # x0 is running (held at the gate), so it left the queue
        waiting = [batcher.enqueue("k", f"x{i}") for i in range(1, 4)]
        with pytest.raises(QueueFull, match="bound is 3"):
            batcher.enqueue("k", "x4")
        draining = asyncio.ensure_future(batcher.drain())
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull, match="shutting down"):
            batcher.enqueue("k", "x5")
        gate.set()
        await draining
        return await asyncio.gather(first, *waiting), batches

    results, batches = asyncio.run(scenario())
    assert results == ["X0", "X1", "X2", "X3"]
    assert batches == [["x0"], ["x1", "x2"], ["x3"]]


def test_a_failing_batch_fails_its_requests_only_and_the_follow_up_runs_after_results():
    seen: list[bool] = []  # at each follow-up: was its batch's result already delivered?
    futures: dict[str, asyncio.Future] = {}

    def run(jobs: list[str]):
        if "bad" in jobs:
            raise RuntimeError("the model fell over")
        return list(jobs), lambda: seen.append(futures[jobs[0]].done())

    async def scenario():
        batcher = Batcher(run, max_wait_s=0)
        batcher.start()
        bad = batcher.enqueue("bad", "bad")
        with pytest.raises(RuntimeError, match="fell over"):
            await bad
        futures["ok"] = batcher.enqueue("good", "ok")
        good = await futures["ok"]
        await batcher.drain()
        return good

    assert asyncio.run(scenario()) == "ok"
    assert seen == [True]
