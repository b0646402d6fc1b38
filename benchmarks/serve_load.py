"""`flexo serve` under load: a load generator in this process, the server in another, on loopback.

Fixed prompts (public text), greedy, every request streamed (time to first token is measured at
the first text chunk), at concurrency 1, 4 and 16. Reported per level: requests/s, generated
tokens/s, latency p50/p95/p99, time to first token p50/p95, errors (must be 0). The baseline:
offline batched generation of the same prompts (`components.batch_generation.generate_rows`,
batches of 16) on the same checkpoint, in this process while the server idles. This machine's
offline rate swings by a fifth and more within minutes, so each level runs in blocks (4 of 128
requests by default) with an offline run of as many requests before, between and after them,
and is compared with the mean of those runs (the last one after a level is the first of the
next). Target: tokens/s at concurrency 16 >= 0.7x offline.

The model is the `small` preset (the demo's) merged with four experts at top-2, random weights:
speed does not depend on them.

    python -m benchmarks.serve_load [--preset small] [--requests 512] [--blocks 4] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from components.anchor import PRESETS, build_model
from components.atomic import atomic_write
from components.batch_generation import Sampling, generate_rows
from components.builtin_corpora import PUBLIC, load_domain
from components.moe_layout import upcycle
from components.runtime import load_flexo_model
from components.tokenizer import train_tokenizer

RESULTS = Path(__file__).parent / "results" / "serve_load.json"
LEVELS = (1, 4, 16)
PROMPT_TOKENS = 24


def build_release(preset_name: str, experts: int, out: Path) -> list[list[int]]:
    """A merged checkpoint (random weights, `experts` contributor experts, top-2) and its
    tokenizer in `out`; returns the fixed prompts as token ids."""
    preset = PRESETS[preset_name]
    texts = load_domain(PUBLIC).split("train").texts()
    tokenizer = train_tokenizer(texts, preset.vocab_size)
    dense = build_model(preset, tokenizer)
    c = dense.config
    router = torch.randn(c.num_hidden_layers, experts + 1, c.hidden_size,
                         generator=torch.Generator().manual_seed(0)) * 0.1
    model = upcycle(dense.state_dict(), c, router, top_k=2)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    prompts = []
    for text in texts:
        ids = tokenizer(text).input_ids
        if len(ids) >= PROMPT_TOKENS:
            prompts.append(ids[:PROMPT_TOKENS])
        if len(prompts) == 16:
            return prompts
    raise RuntimeError("the public mix has fewer than 16 documents of 24 tokens")


def offline_rate(model, tokenizer, prompts: list[list[int]], max_tokens: int,
                 requests: int) -> dict:
    """Generated tokens/s of `requests` prompts in batches of 16, no server: what the server
    runs per batch (same model loading, same generation), without HTTP, queueing or streaming."""
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    batch = [prompts[i % len(prompts)] for i in range(16)]
    generate_rows(model, batch[:2], [2, 2], Sampling(), **ids)  # warm up
    made, start, cpu = 0, time.perf_counter(), cpu_seconds()
    for _ in range(requests // 16):
        rows = generate_rows(model, batch, [max_tokens] * 16, Sampling(), **ids)
        made += sum(map(len, rows))
    seconds, batches = time.perf_counter() - start, requests // 16
    return {"tokens": made, "seconds": seconds, "tokens_per_second": made / seconds,
            "batch_seconds": seconds / batches,
            "batch_cpu_seconds": (cpu_seconds() - cpu) / batches}


async def one_request(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int,
                      ) -> dict:
    start = time.perf_counter()
    first, tokens = None, 0
    body = {"model": "flexo", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "stream": True}
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return {"error": response.status_code}
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return {"error": chunk["error"]["message"]}
            if chunk["choices"][0]["text"] and first is None:
                first = time.perf_counter() - start
            if chunk["choices"][0]["finish_reason"] is not None:
                tokens = chunk["usage"]["completion_tokens"] if "usage" in chunk else max_tokens
    return {"latency": time.perf_counter() - start, "ttft": first, "tokens": tokens}


def offline_reference(runs: list[dict]) -> dict:
    """The offline rate a level is compared with: the mean of the runs before, between and after
    its blocks (each kept, to show the drift)."""
    mean = {key: statistics.fmean(r[key] for r in runs)
            for key in ("tokens_per_second", "batch_seconds", "batch_cpu_seconds")}
    return {**mean, "runs": runs}


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of this process, or of process `pid` (Linux /proc)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def requests_at(url: str, prompts: list[str], concurrency: int, requests: int,
                      max_tokens: int) -> tuple[list[dict], float]:
    """`requests` requests from `concurrency` clients, each sending its next once answered; each
    request's outcome, and the seconds they took."""
    queue = list(range(requests))
    results: list[dict] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            results.append(await one_request(client, url, prompts[i % len(prompts)],
                                             max_tokens))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return results, time.perf_counter() - start


def summary(concurrency: int, results: list[dict], seconds: float) -> dict:
    ok = [r for r in results if "error" not in r]
    latencies = sorted(r["latency"] for r in ok)
    ttfts = sorted(r["ttft"] for r in ok if r["ttft"] is not None)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else 0.0

    tokens = sum(r["tokens"] for r in ok)
    return {"concurrency": concurrency, "requests": len(results),
            "errors": len(results) - len(ok), "seconds": seconds,
            "requests_per_second": len(ok) / seconds, "tokens_per_second": tokens / seconds,
            "latency_p50": pct(latencies, 0.5), "latency_p95": pct(latencies, 0.95),
            "latency_p99": pct(latencies, 0.99), "ttft_p50": pct(ttfts, 0.5),
            "ttft_p95": pct(ttfts, 0.95), "mean_latency": statistics.fmean(latencies)}


def serve(model_dir: Path, port: int, home: Path) -> subprocess.Popen:
    env = {**os.environ, "FLEXO_HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "flows", "serve", "--model", str(model_dir), "--no-auth",
         "--port", str(port), "--max-batch", "16", "--queue-size", "256"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("flexo serve did not start")
        time.sleep(0.5)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--requests", type=int, default=512, help="per concurrency level")
    ap.add_argument("--blocks", type=int, default=4,
                    help="each level's requests in this many blocks, offline runs between")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.blocks < 1 or args.requests % (16 * args.blocks):
        ap.error("--requests must be a multiple of 16 x --blocks (offline runs batches of 16)")
    per_block = args.requests // args.blocks
    with tempfile.TemporaryDirectory(prefix="flexo-serve-load-") as tmp:
        model_dir = Path(tmp) / "release"
        prompt_ids = build_release(args.preset, args.experts, model_dir)
        from components.checkpoints import load_tokenizer

        tokenizer = load_tokenizer(model_dir)
        prompts = [tokenizer.decode(ids) for ids in prompt_ids]
        model = load_flexo_model(model_dir)
        model.eval()
        port = free_port()
        server = serve(model_dir, port, Path(tmp) / "home")
        try:
            url = f"http://127.0.0.1:{port}/v1/completions"
            asyncio.run(requests_at(url, prompts, 4, 8, 4))  # warm up
            levels = []
            last = offline_rate(model, tokenizer, prompt_ids, args.max_tokens, per_block)
            for concurrency in LEVELS:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
                generation = health["generation_pid"]  # the server's model process
                cpu = cpu_seconds(server.pid), cpu_seconds(generation)
                results, seconds, load_cpu, runs = [], 0.0, 0.0, [last]
                for _ in range(args.blocks):
                    started = cpu_seconds()
                    got, took = asyncio.run(requests_at(url, prompts, concurrency, per_block,
                                                        args.max_tokens))
                    load_cpu += cpu_seconds() - started
                    results, seconds = results + got, seconds + took
                    runs.append(offline_rate(model, tokenizer, prompt_ids, args.max_tokens,
                                             per_block))
                after = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
                found = summary(concurrency, results, seconds)
                # where the machine's CPU went: the load generator and the server's HTTP
                # process share it with generation (the server idles during offline runs)
                found["load_generator_cpu_seconds"] = load_cpu
                found["server_cpu_seconds"] = cpu_seconds(server.pid) - cpu[0]
                found["generation_cpu_seconds"] = cpu_seconds(generation) - cpu[1]
                offline, last = offline_reference(runs), runs[-1]
                found["offline"] = offline
                found["batches"] = after["batches"] - health["batches"]
                found["mean_batch"] = found["requests"] / found["batches"]
                # where the gap to offline lies: the worker idle between batches (utilization)
                # or each batch slower than offline's (streaming, attribution, the shared CPU)
                busy = after["busy_seconds"] - health["busy_seconds"]
                found["utilization"] = busy / found["seconds"]
                found["batch_seconds"] = busy / found["batches"]
                # CPU a batch took in the generation process, against offline's: more means
                # its threads spun waiting for each other while the HTTP side held a core
                found["batch_cpu_seconds"] = found["generation_cpu_seconds"] / found["batches"]
                found["vs_offline"] = found["tokens_per_second"] / offline["tokens_per_second"]
                levels.append(found)
                print(f"concurrency {concurrency:>2}: {found['requests_per_second']:.1f} req/s, "
                      f"{found['tokens_per_second']:,.0f} tokens/s ({found['vs_offline']:.2f}x "
                      f"offline's {offline['tokens_per_second']:,.0f}, its runs "
                      f"{', '.join(format(r['tokens_per_second'], ',.0f') for r in runs)}), "
                      f"mean batch "
                      f"{found['mean_batch']:.1f} in {found['batch_seconds']:.3f} s, "
                      f"{found['batch_cpu_seconds']:.3f} CPU s (offline's 16 in "
                      f"{offline['batch_seconds']:.3f} s, {offline['batch_cpu_seconds']:.3f} CPU "
                      f"s), worker busy "
                      f"{found['utilization']:.0%}, p50 {found['latency_p50']:.2f} s, "
                      f"TTFT p50 {found['ttft_p50']:.3f} s, errors {found['errors']}, CPU s "
                      f"generation {found['generation_cpu_seconds']:.1f} server HTTP "
                      f"{found['server_cpu_seconds']:.1f} load generator "
                      f"{found['load_generator_cpu_seconds']:.1f} of {found['seconds']:.1f} s")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    report = {"machine": platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "preset": args.preset, "experts": args.experts, "top_k": 2,
              "prompt_tokens": PROMPT_TOKENS, "max_tokens": args.max_tokens,
              "requests_per_level": args.requests, "blocks_per_level": args.blocks,
              "levels": levels,
              "target": {"concurrency": 16, "min_vs_offline": 0.7}}
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
