"""Render benchmark results (benchmarks/results/*.json) as the README's tables.

Every figure in the README comes from a committed JSON file (benchmarks/results/, and
docs/results/ for the paper's claims): `python -m benchmarks.readme_tables` rewrites the block between `<!-- table:NAME -->` and `<!-- /table:NAME -->` markers, and a test
checks the README still matches the JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from components.atomic import atomic_write
from governance.markdown import markdown_table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"


def _with_notes(table: str, *notes: str) -> str:
    """A table and the paragraphs under it."""
    return "\n\n".join((table, *notes))


def _against_baseline(headers: list[str], baseline: tuple[str, str], measured: tuple[str, str],
                      ratio: float) -> str:
    """Two rows, label and figure: the baseline (1.00x) and the measurement, with its ratio."""
    return markdown_table(headers, [[*baseline, "1.00x"], [*measured, f"{ratio:.2f}x"]],
                          align=["left", "right", "right"])


def _train_throughput(report: dict) -> str:
    table = markdown_table(
        ["preset", "parameters", "tokens/s", "model GFLOP/s", "MFU", "full training (min)"],
        ([r["preset"], f"{r['parameters']:,}", f"{r['tokens_per_second']:,.0f}",
          f"{r['model_gflops_per_second']:.1f}", f"{r['mfu']:.0%}",
          f"{r['est_full_training_minutes']}"] for r in report["results"]),
        align=["left"] + ["right"] * 5)
    if report.get("dtype", "float32") == "float32":
        note = (f"fp32 on {report['threads']} CPU threads, torch {report['torch']}; MFU "
                f"against the fp32 matmul peak measured in the same process "
                f"({report['matmul_peak_gflops']} GFLOP/s).")
    else:
        against = (f"the datasheet's dense bf16 peak ({report['datasheet_peak_gflops']:,.0f} "
                   f"GFLOP/s; measured bf16 GEMM peak {report['matmul_peak_gflops']:,.0f})"
                   if report.get("datasheet_peak_gflops") else
                   f"the bf16 GEMM peak measured in the same process "
                   f"({report['matmul_peak_gflops']:,.0f} GFLOP/s)")
        note = f"bf16 autocast on {report['device']}, torch {report['torch']}; MFU against {against}."
    return _with_notes(table, note)


def _expert_ops(report: dict) -> str:
    t, m, k = report["training"], report["merge"], report["mask"]
    rows = [["(a) expert training tokens/s: coordinated vs full-parameter",
             f"{t['coordinated_tokens_per_second']:,.0f}", f"{t['full_tokens_per_second']:,.0f}",
             f"{t['ratio']:.2f}x", "> 1.2x"],
            [f"(b) merge MB/s ({m['experts']} experts, {m['bytes'] / 1e6:.0f} MB) vs file copy",
             f"{m['merge_mb_per_second']:,.0f}", f"{m['copy_mb_per_second']:,.0f}",
             f"{m['ratio']:.2f}x", ">= 0.5x"]]
    rows += [[(f"(c) inference tokens/s, {r['experts']} experts top-{r['top_k']} vs dense "
               f"anchor (FLOPs predict {r['flops_ratio']:.2f}x)"),
              f"{r['tokens_per_second']:,.0f}", f"{r['dense_tokens_per_second']:,.0f}",
              f"{r['measured_ratio']:.2f}x ({r['off_by']:+.0%} vs FLOPs)", "within 15%"]
             for r in report["inference"]]
    rows.append([f"(d) inference tokens/s, {k['masked']} of {k['experts']} experts masked vs none",
                 f"{k['tokens_per_second']:,.0f}", f"{k['unmasked_tokens_per_second']:,.0f}",
                 f"{k['ratio']:.2f}x", "~1x"])
    table = markdown_table(["measurement", "flexo", "baseline (same process)", "ratio", "target"],
                           rows, align=["left", "right", "right", "right", "left"])
    return _with_notes(table, (
        f"`{report['preset']}`-sized models (random weights), fp32 on "
        f"{report['threads']} CPU threads, experts implementation "
        f"`{report['experts_implementation']}`."))


def _dp_cost(report: dict) -> str:
    plain, dp = report["plain"], report["dp"]
    table = _against_baseline(
        ["expert training", "tokens/s", "ratio to plain"],
        ("plain (one gradient per batch)", f"{plain['tokens_per_second']:,.0f}"),
        (f"DP, epsilon {dp['epsilon']:.2f} (per-sample gradients, clipping, noise)",
         f"{dp['tokens_per_second']:,.0f}"), report["ratio"])
    return _with_notes(table, (
        f"`{report['preset']}` preset (random weights), {report['steps']} steps "
        f"of {report['batch_size']} x {report['seq_len']} tokens, public share "
        f"{report['public_ratio']}, fp32 on {report['threads']} CPU threads."))


def _plain_runs(n: int) -> str:
    return f"mean of {n} runs, before and after" if n > 1 else "one run, before the flows' run"


def _orchestration_overhead(report: dict) -> str:
    plain = sum(report["plain_seconds"]) / len(report["plain_seconds"])
    verdict = "within" if report["overhead"] <= report["target"] else "over"
    table = _against_baseline(
        ["the demo's story", "seconds", "ratio"],
        (f"component calls only ({_plain_runs(len(report['plain_seconds']))})", f"{plain:,.1f}"),
        ("through the flows (Prefect + MLflow)", f"{report['flows_seconds']:,.1f}"),
        report["flows_seconds"] / plain)
    return _with_notes(table, (
        f"`{report['plan']}` plan ({report['anchor_preset']} anchor, {report['contributors']} "
        f"contributors, two releases), {report['threads']} CPU threads: overhead "
        f"{report['overhead']:+.1%}, {verdict} the {report['target']:.0%} target."))


def _demo(report: dict) -> str:
    demo = report["demo"]
    first, second = demo["releases"]
    owners = {d: c for c, d in demo["contributed"].items()}
    lines = [markdown_table(
        ["domain", "anchor", f"release v{first['version']}",
         f"v{second['version']} after withdrawal", "release vs anchor"],
        ([domain + (f" ({owners[domain]})" if domain in owners else ""), f"{f['anchor']:,.1f}",
          f"{f['release']:,.1f}", f"{f['after_withdrawal']:,.1f}",
          f"{f['release'] / f['anchor'] - 1:+.1%}"] for domain, f in demo["figures"].items()),
        align=["left"] + ["right"] * 4)]
    for r in (first, second):
        promoted = r.get("production", r.get("promoted"))  # results before issue 14: "promoted"
        state = "production" if promoted else "candidate (gate: " + \
            ("; ".join(r["gate_failures"]) or "passed; not accepted by all") + ")"
        lines.append(f"v{r['version']}: {', '.join(r['experts'])}; {state}.")
    lines.append(f"`{report['plan']}` plan, {report['threads']} CPU threads: the story took "
                 f"{report['flows_seconds'] / 60:.1f} minutes through the flows.")
    return _with_notes(*lines)


def _withdrawal(report: dict) -> str:
    table = markdown_table(
        ["withdrawal of one contributor", "seconds", "ratio", "target"],
        [["deny-list written -> a loaded runtime's next call masks it",
          f"{report['deny_list_to_masked_seconds']:.3f}", "", "< 1 s"],
         ["request (`withdraw_flow` called) -> the loaded runtime masks it",
          f"{report['request_to_masked_seconds']:.2f}", "", "< 1 s"],
         ["baseline: the re-release's merge + evaluation",
          f"{report['release_merge_seconds'] + report['release_evaluate_seconds']:,.1f}",
          "1.00x", ""],
         ["request -> verified production (withdraw, re-release, acceptance, promotion)",
          f"{report['request_to_verified_production_seconds']:,.1f}",
          f"{report['ratio_to_merge_and_evaluation']:.2f}x", "<= 1.5x"],
         *([f"- of which {step.replace('_', ' ')}", f"{seconds:,.1f}", "", ""]
           for step, seconds in report.get("steps_seconds", {}).items())],
        align=["left", "right", "right", "left"])
    return _with_notes(table, (
        f"`{report['plan']}` demo plan, {report['threads']} CPU threads, torch "
        f"{report['torch']}; the loaded runtime's forward pass took "
        f"{report['runtime_pass_seconds'] * 1000:.0f} ms (the resolution of the first two rows); "
        f"the withdrawing expert had {report['share_before']:.1%} of the router mass on its own "
        f"text before, exactly 0 after."))


def _serve_load(report: dict) -> str:
    rows = [[f"`flexo serve`, concurrency {r['concurrency']}", r["requests"],
             f"{r['mean_batch']:.1f}", f"{r['requests_per_second']:.1f}", f"{r['tokens_per_second']:,.0f}",
             f"{r['offline']['tokens_per_second']:,.0f}", f"{r['vs_offline']:.2f}x",
             f"{r['latency_p50'] * 1000:.0f}", f"{r['latency_p95'] * 1000:.0f}",
             f"{r['latency_p99'] * 1000:.0f}", f"{r['ttft_p50'] * 1000:.0f}",
             f"{r['ttft_p95'] * 1000:.0f}", r["errors"]]
            for r in report["levels"]]
    table = markdown_table(
        ["", "requests", "mean batch", "req/s", "tokens/s", "offline tokens/s", "ratio",
         "p50 ms", "p95 ms", "p99 ms", "TTFT p50 ms", "TTFT p95 ms", "errors"], rows,
        align=["left"] + ["right"] * 12)
    target = report["target"]
    top = next(r for r in report["levels"] if r["concurrency"] == target["concurrency"])
    return _with_notes(table, (
        f"`{report['preset']}` preset merged with {report['experts']} experts at top-"
        f"{report['top_k']}, {report['prompt_tokens']}-token prompts, {report['max_tokens']} "
        f"new tokens, greedy, every request streamed; {report['threads']} CPU threads, torch "
        f"{report['torch']}. Offline: batched generation of the same prompts in batches of 16, "
        f"measured in the same run before, between and after each level's "
        f"{report['blocks_per_level']} blocks of requests, the level compared with their mean "
        f"(at concurrency {target['concurrency']}: "
        f"{', '.join(format(r['tokens_per_second'], ',.0f') for r in top['offline']['runs'])}). "
        f"Target: >= "
        f"{target['min_vs_offline']:.1f}x offline at concurrency "
        f"{target['concurrency']}; measured {top['vs_offline']:.4f}x "
        f"({'met' if top['vs_offline'] >= target['min_vs_offline'] else 'not met'}). "
        f"CPU seconds at "
        f"concurrency {target['concurrency']}: the server's generation process "
        f"{top['generation_cpu_seconds']:.1f}, its HTTP process {top['server_cpu_seconds']:.1f}, "
        f"the load generator {top['load_generator_cpu_seconds']:.1f}, over {top['seconds']:.1f} "
        f"s; the model's worker busy {top['utilization']:.0%} of the time, a batch of "
        f"{top['mean_batch']:.1f} in {top['batch_seconds'] * 1000:.0f} ms and "
        f"{top['batch_cpu_seconds']:.2f} CPU s (offline's 16 in "
        f"{top['offline']['batch_seconds'] * 1000:.0f} ms and "
        f"{top['offline']['batch_cpu_seconds']:.2f} CPU s)."))


def rate_with_interval(audit: dict) -> str:
    """An extraction rate with its 95% Wilson interval, as every audit table prints it."""
    return f"{audit['rate']:.1%} ({audit['ci_low']:.1%}-{audit['ci_high']:.1%})"


def _extraction_audit(report: dict) -> str:
    steps, lr = report["overfit_config"]["steps"], report["overfit_config"]["lr"]
    what = {"anchor": "public mix only (never saw the documents)",
            "normal": "default expert config on the whole literature corpus",
            "overfit": f"{steps} steps on the {report['documents']} openings alone, lr {lr:g}, "
                       f"uncoordinated (shared tensors train too)",
            "overfit-dp": "the same overfitting run with DP"}
    rows = [[name, what[name] + (f", epsilon {row['epsilon']:.2f}" if "epsilon" in row else ""),
             f"{row['final_loss']:.2f}" if "final_loss" in row else "-",
             rate_with_interval(row["audit"])] for name, row in report["models"].items()]
    table = markdown_table(["model", "training", "final loss", "extraction rate (95% CI)"], rows,
                           align=["left", "left", "right", "left"])
    return _with_notes(table, (
        f"The openings (first 80 tokens) of {report['documents']} literature "
        f"training documents, 32-token prefix, 10 samples each (top-k 50, top-p 0.95), "
        f"extracted at normalised Levenshtein similarity >= 0.9; `{report['anchor_preset']}` "
        f"anchor; each expert audited as the dense 2-expert model."))


def _paper_claims(report: dict) -> str:
    from benchmarks.paper_claims_report import claims_table

    p = report["preset"]
    passed = sum(c["pass"] for c in report["claims"])
    return _with_notes(claims_table(report), (
        f"{passed} of {len(report['claims'])} claims hold. Preset "
        f"`{p['name']}` ({p['anchor']} anchor, {len(report['domains'])} private domains, "
        f"{report['expert_config']['steps']}-step experts), {report['total_minutes']} minutes "
        f"on {report['threads']} CPU threads; every table and plot in "
        f"[docs/results/paper_claims.md](docs/results/paper_claims.md)."))


def _proxy_precision(report: dict) -> str:
    table = markdown_table(
        ["domain", "public documents chosen", "of them in the domain's slice", "precision",
         "held-out AUC"],
        ([r["domain"], f"{r['chosen']:,}", f"{r['in_slice']:,} (slice: {r['slice_documents']:,})",
          f"{r['precision']:.0%}", f"{r['auc']:.3f}"] for r in report["results"]),
        align=["left", "right", "right", "right", "right"])
    return _with_notes(table, (
        f"Pool: the public mix, {report['pool_documents']:,} documents. Each classifier saw up to "
        f"{report['max_documents']:,} of the domain's private training documents; picks until "
        f"{report['min_tokens']:,} tokens (~{report['chars_per_token']} characters per token); "
        f"{report['seconds']:.0f} s in all on 2 CPU threads."))


RENDERERS: dict[str, Callable[[dict], str]] = {"train_throughput": _train_throughput,
                                               "expert_ops": _expert_ops, "dp_cost": _dp_cost,
                                               "extraction_audit": _extraction_audit,
                                               "paper_claims": _paper_claims,
                                               "orchestration_overhead": _orchestration_overhead,
                                               "demo": _demo, "proxy_precision": _proxy_precision,
                                               "withdrawal": _withdrawal,
                                               "serve_load": _serve_load}
SOURCES = {"paper_claims": ROOT / "docs" / "results" / "paper_claims.json",
           "demo": RESULTS / "orchestration_overhead.json"}


def source(name: str) -> Path:
    return SOURCES.get(name, RESULTS / f"{name}.json")


def render(name: str) -> str:
    return RENDERERS[name](json.loads(source(name).read_text()))


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- table:{name} -->)(.*?)(<!-- /table:{name} -->)", re.DOTALL)


def readme_table(name: str, readme: str) -> str | None:
    match = _pattern(name).search(readme)
    return match.group(2).strip("\n") if match else None


def update_readme() -> None:
    text = README.read_text()
    for name in RENDERERS:
        if source(name).exists():
            text = _pattern(name).sub(lambda m, n=name: f"{m.group(1)}\n{render(n)}\n{m.group(3)}", text)
    atomic_write(README, text)


if __name__ == "__main__":
    update_readme()
