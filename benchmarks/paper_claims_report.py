"""Judge claims C1-C7 from a paper_claims run and write JSON, Markdown tables and PNG plots.

Thresholds are the issue's, fixed before any run; a claim that fails is reported FAIL with the
figures that failed it. "Average" everywhere is the mean perplexity over the private domains and
the public mix, each scored on its held-out test split.

`python -m benchmarks.paper_claims_report [DIR]` re-renders DIR/paper_claims.md (default
docs/results) from the committed DIR/paper_claims.json, without rerunning anything.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.readme_tables import rate_with_interval
from components import plots
from components.atomic import atomic_write
from components.plots import plt
from governance.markdown import markdown_table

MERGED = "FlexOlmo top-2"
PLOTS = {"perplexity": "paper_claims_perplexity.png", "opt_out": "paper_claims_opt_out.png",
         "routing": "paper_claims_routing.png"}


def average(ppl: dict[str, float]) -> float:
    return sum(ppl.values()) / len(ppl)


def _change(new: float, old: float) -> float:
    return new / old - 1


def _fmt(x: float) -> str:
    return f"{x:,.1f}" if x >= 10 else f"{x:.2f}"


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def judge(report: dict) -> list[dict]:
    """The seven claims, each with PASS/FAIL and the figures behind it."""
    ev = {name: e["perplexity"] for name, e in report["evaluations"].items()}
    domains, public = report["domains"], report["public"]
    anchor, merged = ev["anchor"], ev[MERGED]
    claims = []

    def claim(cid: str, text: str, ok: bool, figures: str) -> None:
        claims.append({"id": cid, "claim": text, "pass": bool(ok), "figures": figures})

    beats = {d: _change(merged[d], anchor[d]) for d in domains}
    pub = _change(merged[public], anchor[public])
    claim("C1", "merged beats the anchor on every private domain; public perplexity rises < 2%",
          all(c < 0 for c in beats.values()) and pub < 0.02,
          ", ".join(f"{d} {_pct(c)}" for d, c in beats.items()) + f"; public {_pct(pub)}")

    avg = {name: average(p) for name, p in ev.items()}
    claim("C2", "merged beats model soup and the BTM ensemble on the average",
          avg[MERGED] < avg["model soup"] and avg[MERGED] < avg["BTM ensemble"],
          f"avg ppl merged {_fmt(avg[MERGED])}, soup {_fmt(avg['model soup'])}, "
          f"BTM {_fmt(avg['BTM ensemble'])}")
    claim("C3", "coordinated training beats uncoordinated merging",
          avg[MERGED] < avg["uncoordinated merged"],
          f"avg ppl coordinated {_fmt(avg[MERGED])}, uncoordinated "
          f"{_fmt(avg['uncoordinated merged'])}")
    gap = _change(avg[MERGED], avg["unrestricted (union)"])
    claim("C4", "merged is within 10% of the unrestricted upper bound's average perplexity",
          gap <= 0.10, f"avg ppl merged {_fmt(avg[MERGED])}, upper bound "
          f"{_fmt(avg['unrestricted (union)'])} ({_pct(gap)})")

    back, moved = {}, {}
    for d in domains:
        without = ev[f"opt-out: without {d}"]
        back[d] = _change(without[d], anchor[d])
        moved[d] = max((abs(_change(without[o], merged[o])), o) for o in [*domains, public]
                       if o != d)
    claim("C5", "removing expert d brings domain d back within 5% of the anchor and moves every "
          "other domain < 2%",
          all(abs(b) <= 0.05 for b in back.values()) and all(m < 0.02 for m, _ in
                                                                 moved.values()),
          "; ".join(f"-{d}: {d} {_pct(back[d])} vs anchor, largest other move "
                    f"{moved[d][0]:.1%} ({moved[d][1]})" for d in domains))

    embed, rand = avg[MERGED], avg["ablation: random init"]
    bias_pub, nobias_pub = merged[public], ev["ablation: no negative bias"][public]
    claim("C6", "embed router init beats random init; the negative bias does not hurt public",
          embed < rand and bias_pub <= nobias_pub,
          f"avg ppl embed {_fmt(embed)}, random {_fmt(rand)}, hidden "
          f"{_fmt(avg['ablation: hidden-state init'])}; public ppl with bias {_fmt(bias_pub)}, "
          f"without {_fmt(nobias_pub)}")

    ex = report["extraction"]["models"]
    dense = next(v for k, v in ex.items() if k.startswith("dense expert"))
    merged_ex = ex["FlexOlmo merged"]
    claim("C7", "the merged model's extraction rate is no higher than the dense expert's",
          merged_ex["rate"] <= dense["rate"],
          f"merged {merged_ex['extracted']}/{merged_ex['documents']} "
          f"({merged_ex['rate']:.1%}), dense expert {dense['extracted']}/{dense['documents']} "
          f"({dense['rate']:.1%}), anchor {ex['anchor']['rate']:.1%}")
    return claims


def claims_table(report: dict) -> str:
    return markdown_table(["claim", "", "result", "figures"],
                          ([c["id"], c["claim"], f"**{'PASS' if c['pass'] else 'FAIL'}**",
                            c["figures"]] for c in report["claims"]))


def _by_column(first: str, rows: dict[str, dict], cols: list[str], fmt: Callable[[float], str],
               extra: dict[str, Callable[[dict], str]] | None = None) -> str:
    """One row per `rows` key, one right-aligned number column per `cols` entry (and `extra`)."""
    extra = extra or {}
    return markdown_table([first, *cols, *extra],
                          ([name, *(fmt(row[c]) for c in cols), *(f(row) for f in extra.values())]
                           for name, row in rows.items()),
                          align=["left"] + ["right"] * (len(cols) + len(extra)))


def perplexity_table(report: dict) -> str:
    rows = {name: e["perplexity"] for name, e in report["evaluations"].items()
            if not name.startswith("opt-out")}
    return _by_column("model", rows, [*report["domains"], report["public"]], _fmt,
                      {"average": lambda p: _fmt(average(p))})


def opt_out_matrix(report: dict) -> dict[str, dict[str, float]]:
    """Relative perplexity change against the full merge, per removed expert and corpus."""
    merged = report["evaluations"][MERGED]["perplexity"]
    return {d: {c: _change(p, merged[c]) for c, p in
                report["evaluations"][f"opt-out: without {d}"]["perplexity"].items()}
            for d in report["domains"]}


def opt_out_table(report: dict) -> str:
    return _by_column("removed", opt_out_matrix(report), [*report["domains"], report["public"]],
                      _pct)


def routing_table(report: dict) -> str:
    routing = report["evaluations"][MERGED]["routing"]
    return _by_column("corpus", routing, list(next(iter(routing.values()))),
                      lambda share: f"{share:.0%}")


def diagnostics_table(report: dict) -> str:
    """Per domain: what its expert achieves alone, and whether the merge routes its text to it."""
    ev, public = report["evaluations"], report["public"]
    anchor, merged = ev["anchor"]["perplexity"], ev[MERGED]["perplexity"]
    routing = ev[MERGED]["routing"]
    rows = []
    for d in report["domains"]:
        alone = ev[f"expert alone: {d}"]["perplexity"]
        shares = routing[d]
        other = max((v, e) for e, v in shares.items() if e not in (d, public))
        rows.append([d, _pct(_change(alone[d], anchor[d])),
                     _pct(_change(alone[public], anchor[public])),
                     _pct(_change(merged[d], anchor[d])), f"{shares[d]:.0%}",
                     f"{shares[public]:.0%}", f"{other[1]} {other[0]:.0%}"])
    return markdown_table(["domain", "expert alone: own domain", "expert alone: public",
                           "merged: own domain", "share routed to its expert",
                           "share routed to public", "largest other expert"], rows,
                          align=["left"] + ["right"] * 5 + ["left"])


def extraction_table(report: dict) -> str:
    return markdown_table(["model", "extracted", "rate (95% CI)", "mean best similarity"],
                          ([name, f"{a['extracted']}/{a['documents']}", rate_with_interval(a),
                            f"{a['mean_best_similarity']:.2f}"]
                           for name, a in report["extraction"]["models"].items()),
                          align=["left", "right", "left", "right"])


def markdown(report: dict) -> str:
    p, e = report["preset"], report["expert_config"]
    return "\n".join([
        "# FlexOlmo's claims at small scale", "",
        (f"Preset `{p['name']}`: `{p['anchor']}` anchor ({report['anchor']['parameters']:,} "
         f"parameters), {len(report['domains'])} private domains, experts {e['steps']} steps of "
         f"{e['batch_size']} x {e['seq_len']} tokens (public share {e['public_ratio']}), "
         f"perplexity on {p['eval_tokens']:,} held-out test tokens per corpus. "
         f"{report['threads']} CPU threads, {report['total_minutes']} minutes in all. "
         "Generated by `python -m benchmarks.paper_claims` from `paper_claims.json`."), "",
        "## Claims", "", claims_table(report), "",
        "## Perplexity by method (lower is better)", "", perplexity_table(report), "",
        f"![perplexity]({PLOTS['perplexity']})", "",
        "## Opt-out: change against the full merge when one expert is removed", "",
        opt_out_table(report), "", f"![opt-out]({PLOTS['opt_out']})", "",
        f"## Routing share per corpus ({MERGED}, mean router probability)", "",
        routing_table(report), "", f"![routing]({PLOTS['routing']})", "",
        "## Diagnostics: each expert alone against the anchor, and the merge's routing", "",
        diagnostics_table(report), "",
        f"## Extraction audit ({report['extraction']['domain']} training documents)", "",
        extraction_table(report), "",
    ])


def plot(report: dict, out: Path) -> dict[str, Path]:
    cols = [*report["domains"], report["public"]]
    methods = [n for n in report["evaluations"]
               if not n.startswith(("opt-out", "expert alone")) and n != "anchor"]
    anchor = report["evaluations"]["anchor"]["perplexity"]
    fig, ax = plt.subplots(figsize=(11, 5))
    plots.grouped_bars(ax, cols, {name: [100 * _change(report["evaluations"][name]["perplexity"][c],
                                                       anchor[c]) for c in cols]
                                  for name in methods})
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("held-out perplexity vs the anchor (%)")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Per-domain perplexity by method (change against the anchor; lower is better)")
    paths = {k: out / v for k, v in PLOTS.items()}
    plots.save(fig, paths["perplexity"])

    matrix = opt_out_matrix(report)
    fig, ax = plt.subplots(figsize=(7, 4))
    plots.heatmap(ax, [f"without {d}" for d in matrix], cols,
                  [[matrix[d][c] for c in cols] for d in matrix], "+.1%", "RdBu_r", centre=True)
    ax.set_title("Opt-out: perplexity change vs the full merge")
    plots.save(fig, paths["opt_out"])

    plots.routing_heatmap(paths["routing"], report["evaluations"][MERGED]["routing"],
                          f"Routing share per corpus ({MERGED})")
    return paths


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report["claims"] = judge(report)
    atomic_write(out / "paper_claims.json", json.dumps(report, indent=2) + "\n")
    atomic_write(out / "paper_claims.md", markdown(report))
    plot(report, out)
    for c in report["claims"]:
        print(f"{c['id']} {'PASS' if c['pass'] else 'FAIL'}: {c['figures']}")


def rerender(out: Path) -> Path:
    """Rewrite `paper_claims.md` from the `paper_claims.json` beside it (tables only, no plots)."""
    return atomic_write(out / "paper_claims.md",
                        markdown(json.loads((out / "paper_claims.json").read_text())))


if __name__ == "__main__":
    from benchmarks.paper_claims import RESULTS

    print(rerender(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS))
