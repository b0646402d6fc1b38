"""The dynamic batcher on its own: batches by key, a bounded queue, a drain that finishes what
was admitted (what `flexo serve` relies on; tests/flows/test_serve.py runs it for real)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from components.batcher import REMEMBERED_BATCHES, Batcher, Batching, QueueFull


def _recording_batcher(**kwargs):
    batches: list[list[str]] = []
    gate = threading.Event()

    def run(jobs: list[str]):
        gate.wait(5)  # the first batch holds the worker until the test lets it go
        batches.append(list(jobs))
        return [job.upper() for job in jobs], None

    return Batcher(run, Batching(**kwargs)), batches, gate


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
        batcher = Batcher(run, Batching(max_wait_s=0))
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


def _timed_batcher(max_batch: int, max_wait_s: float, on_first=None, **kwargs):
    sizes: list[int] = []

    def run(jobs: list[int]):
        if not sizes and on_first is not None:
            on_first()
        sizes.append(len(jobs))
        time.sleep(0.05)  # a batch's generation
        return list(jobs), None

    return Batcher(run, Batching(max_batch=max_batch, max_wait_s=max_wait_s, **kwargs)), sizes


async def _client(batcher: Batcher, me: int, rounds: int, round_trip_s: float = 0.01) -> None:
    for _ in range(rounds):
        await batcher.enqueue("k", me)
        await asyncio.sleep(round_trip_s)  # the round trip to the client and back


def test_clients_that_come_back_fill_whole_batches_after_a_partial_one():
    """Four clients run alone; four more arrive while they run. The next batch waits for the
    first four to come back (8, not 4 then 4 again, a split that would halve throughput)."""
    async def scenario():
        loop = asyncio.get_running_loop()
        running = asyncio.Event()
        batcher, sizes = _timed_batcher(8, 1.0, lambda: loop.call_soon_threadsafe(running.set))
        batcher.start()

        async def late(me: int) -> None:
            await running.wait()
            await _client(batcher, me, 5)

        await asyncio.gather(*(_client(batcher, i, 5) for i in range(4)),
                             *(late(i) for i in range(4, 8)))
        await batcher.drain()
        return sizes

    assert asyncio.run(scenario()) == [4, 8, 8, 8, 8, 4]


@pytest.mark.parametrize("gap_s", [0.05, 0.002])
def test_clients_that_come_back_one_by_one_are_gathered_while_they_keep_coming(gap_s):
    """Eight clients whose round trips take 10 to 80 ms, longer than a fixed 50 ms window
    would wait: the wait goes on while they keep arriving (10 ms apart), so every batch holds
    all eight. With a gap shorter than their spacing the batches split (more batches for the
    same 32 requests), which is what the gap prevents."""
    async def scenario():
        batcher, sizes = _timed_batcher(8, 0.5, gap_s=gap_s)
        batcher.start()
        await asyncio.gather(*(_client(batcher, me, 4, 0.01 * (me + 1)) for me in range(8)))
        await batcher.drain()
        return sizes

    sizes = asyncio.run(scenario())
    if gap_s > 0.01:
        assert sizes == [8, 8, 8, 8]
    else:
        assert len(sizes) > 4


def test_a_batch_starts_once_arrivals_stop_without_waiting_its_whole_window():
    async def scenario():
        batcher, sizes = _timed_batcher(16, 5.0, gap_s=0.05)
        batcher.start()
        start = time.monotonic()
        await asyncio.gather(*(batcher.enqueue("k", me) for me in range(3)))
        elapsed = time.monotonic() - start
        await batcher.drain()
        return sizes, elapsed

    sizes, elapsed = asyncio.run(scenario())
    assert sizes == [3]  # 3 of the 16 it would wait for
    assert elapsed < 1.0  # the gap (0.05 s) and the batch, not the 5 s window


def test_a_lone_client_waits_for_company_only_before_its_first_batch():
    async def scenario():
        batcher, sizes = _timed_batcher(16, 0.5)
        batcher.start()
        start = time.monotonic()
        await _client(batcher, 0, 6)
        elapsed = time.monotonic() - start
        await batcher.drain()
        return sizes, elapsed

    sizes, elapsed = asyncio.run(scenario())
    assert sizes == [1] * 6
    assert elapsed < 2.0  # one 0.5 s wait, not six (3 s and more)


def test_busy_time_counts_the_batches_and_not_the_waits_between_them():
    """`busy_s` (what /healthz reports as busy_seconds) holds time spent running batches: six
    batches of 0.05 s with a 0.1 s pause between a client's answer and its next request."""
    async def scenario():
        batcher, sizes = _timed_batcher(4, 0)
        batcher.start()
        start = time.monotonic()
        for me in range(6):
            await batcher.enqueue("k", me)
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - start
        await batcher.drain()
        return batcher.busy_s, elapsed, sizes

    busy, elapsed, sizes = asyncio.run(scenario())
    assert sizes == [1] * 6
    assert 6 * 0.05 <= busy < elapsed - 6 * 0.1 + 0.05


def test_a_crowd_that_comes_back_after_a_pause_fills_one_batch_despite_a_small_last_one():
    """Eight clients run together, two of them one round more (the last batch: 2); all pause,
    then come back as a burst, 5 ms apart. The batcher remembers the crowd of the batches
    before the small one and waits for all eight, instead of starting with the first two and
    splitting the crowd for the rest of its run (a batch of 2 costs nearly a full one)."""
    async def scenario():
        batcher, sizes = _timed_batcher(8, 0.5)
        batcher.start()
        await asyncio.gather(*(_client(batcher, me, 3 if me < 2 else 2) for me in range(8)))
        await asyncio.sleep(0.3)  # the pause

        async def back(me: int) -> None:
            await asyncio.sleep(0.005 * me)
            await _client(batcher, me, 2)

        await asyncio.gather(*(back(me) for me in range(8)))
        await batcher.drain()
        return sizes

    assert asyncio.run(scenario()) == [8, 8, 2, 8, 8]


def test_a_lone_client_after_a_crowd_waits_for_company_only_while_the_crowd_is_remembered():
    """After a batch of eight, a lone client's next requests each wait the gap (0.4 s) for
    company that does not come, for as many batches as the batcher remembers, then not at all."""
    async def scenario():
        batcher, sizes = _timed_batcher(8, 5.0, gap_s=0.4)
        batcher.start()
        await asyncio.gather(*(_client(batcher, me, 1) for me in range(8)))
        took = []
        for me in range(8):
            start = time.monotonic()
            await batcher.enqueue("k", me)
            took.append(time.monotonic() - start)
        await batcher.drain()
        return sizes, took

    sizes, took = asyncio.run(scenario())
    assert sizes == [8] + [1] * 8
    waited = [t >= 0.4 for t in took]  # a batch alone takes 0.05 s
    assert waited == [True] * REMEMBERED_BATCHES + [False] * (8 - REMEMBERED_BATCHES)
