"""Judge claims C1-C7 from a paper_claims run and write JSON, Markdown tables and PNG plots.

Thresholds are the issue's, fixed before any run; a claim that fails is reported FAIL with the
figures that failed it. "Average" everywhere is the mean perplexity over the private domains and
the public mix, each scored on its held-out test split. C1, C2, C4, C5 and C7 judge the merge as
flexo releases it (`report["shipped"]`); C3 and C6 compare untuned top-2 merges, as their
ablations are; C1 and C5 of the untuned merge (the paper's headline) are reported beside them.

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

AUDITED_MERGE = "FlexOlmo merged (as released)"  # the extraction audit's merged model
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


def opt_out_key(model: str, domain: str) -> str:
    """The evaluation of `model` with `domain`'s expert masked at runtime."""
    return f"{model}, without {domain}"


def _lever_key(report: dict, experts: str, tuning: str, k: int) -> str | None:
    """The evaluation key of a lever-grid merge; None when the run did not build it."""
    return next((lever["keys"][str(k)] for lever in report["levers"]
                 if lever["experts"] == experts and lever["tuning"] == tuning), None)


def beats_anchor(report: dict, model: str) -> tuple[bool, str]:
    """C1 for one model: every private domain below the anchor, public within +2%."""
    ev = report["evaluations"]
    anchor, merged = ev["anchor"]["perplexity"], ev[model]["perplexity"]
    change = {c: _change(merged[c], anchor[c]) for c in [*report["domains"], report["public"]]}
    pub = change.pop(report["public"])
    return (all(c < 0 for c in change.values()) and pub < 0.02,
            ", ".join(f"{d} {_pct(c)}" for d, c in change.items()) + f"; public {_pct(pub)}")


def outside_slice(report: dict, model: str) -> dict[str, float]:
    """Per removed domain d: the public mix's change against the full merge on its text outside
    d's 5% slice. The slice is d's own text (the proxy oracle), so it is d's to move; the rest of
    the mix is the other text C5 holds to < 2%."""
    outside = report["public_outside_slice"]
    return {d: _change(outside[opt_out_key(model, d)][d], outside[model][d])
            for d in report["domains"]}


def opt_out_returns(report: dict, model: str) -> tuple[bool, str]:
    """C5 for one model and its opt-out evaluations: domain d back within 5% of the anchor; every
    other private domain, and the public mix outside d's slice, moved < 2%. The whole mix's move
    is reported beside it."""
    ev, domains, public = report["evaluations"], report["domains"], report["public"]
    against_merge = opt_out_matrix(report, model)
    back = {d: _change(ev[opt_out_key(model, d)]["perplexity"][d], ev["anchor"]["perplexity"][d])
            for d in domains}
    outside = outside_slice(report, model)
    moved = {d: max([(abs(c), o) for o, c in against_merge[d].items() if o not in (d, public)]
                    + [(abs(outside[d]), f"{public} outside {d}'s slice")])
             for d in domains}
    return (all(abs(b) <= 0.05 for b in back.values()) and all(m < 0.02 for m, _ in
                                                               moved.values()),
            "; ".join(f"-{d}: {d} {_pct(back[d])} vs anchor, largest other move "
                      f"{moved[d][0]:.1%} ({moved[d][1]}; whole {public} mix "
                      f"{_pct(against_merge[d][public])})" for d in domains))


def judge(report: dict) -> list[dict]:
    """The seven claims, each with PASS/FAIL and the figures behind it."""
    ev = {name: e["perplexity"] for name, e in report["evaluations"].items()}
    shipped, untuned = report["shipped"], report["untuned_top2"]
    claims = []

    def claim(cid: str, text: str, ok: bool, figures: str) -> None:
        claims.append({"id": cid, "claim": text, "pass": bool(ok), "figures": figures})

    claim("C1", "merged beats the anchor on every private domain; public perplexity rises < 2%",
          *beats_anchor(report, shipped))
    avg = {name: average(p) for name, p in ev.items()}
    claim("C2", "merged beats model soup and the BTM ensemble on the average",
          avg[shipped] < avg["model soup"] and avg[shipped] < avg["BTM ensemble"],
          f"avg ppl merged {_fmt(avg[shipped])}, soup {_fmt(avg['model soup'])}, "
          f"BTM {_fmt(avg['BTM ensemble'])}")
    claim("C3", "coordinated training beats uncoordinated merging (both untuned, top-2)",
          avg[untuned] < avg["uncoordinated merged"],
          f"avg ppl coordinated {_fmt(avg[untuned])}, uncoordinated "
          f"{_fmt(avg['uncoordinated merged'])}")
    gap = _change(avg[shipped], avg["unrestricted (union)"])
    claim("C4", "merged is within 10% of the unrestricted upper bound's average perplexity",
          gap <= 0.10, f"avg ppl merged {_fmt(avg[shipped])}, upper bound "
          f"{_fmt(avg['unrestricted (union)'])} ({_pct(gap)})")
    claim("C5", "removing expert d brings domain d back within 5% of the anchor and moves every "
          "other domain < 2%", *opt_out_returns(report, shipped))

    shipped_init, other_init = report["shipped_init"], report["other_init"]
    other_key = _lever_key(report, other_init, "none", 2)
    other = f"{other_init} {_fmt(avg[other_key])}" if other_key else f"{other_init} not run " \
        "(--levers)"
    informed, rand = avg[untuned], avg["ablation: random init"]
    bias_pub, nobias_pub = ev[untuned][report["public"]], \
        ev["ablation: no negative bias"][report["public"]]
    claim("C6", "a domain-informed router init beats random init; the negative bias does not "
          "hurt public (untuned, top-2)",
          informed < rand and bias_pub <= nobias_pub,
          f"avg ppl {shipped_init} (shipped) {_fmt(informed)}, random {_fmt(rand)}, "
          f"{other}; public "
          f"ppl with bias {_fmt(bias_pub)}, without {_fmt(nobias_pub)}")

    ex = report["extraction"]["models"]
    dense = next(v for k, v in ex.items() if k.startswith("dense expert"))
    merged_ex = ex[AUDITED_MERGE]
    claim("C7", "the merged model's extraction rate is no higher than the dense expert's",
          merged_ex["rate"] <= dense["rate"],
          f"merged {merged_ex['extracted']}/{merged_ex['documents']} "
          f"({merged_ex['rate']:.1%}), dense expert {dense['extracted']}/{dense['documents']} "
          f"({dense['rate']:.1%}), anchor {ex['anchor']['rate']:.1%}")
    return claims


def untuned_table(report: dict) -> str:
    """C1 and C5 of the untuned merge at the released top-k: what router tuning buys."""
    rows = []
    for cid, (ok, figures) in (("C1", beats_anchor(report, report["untuned"])),
                               ("C5", opt_out_returns(report, report["untuned"]))):
        rows.append([cid, f"**{'PASS' if ok else 'FAIL'}**", figures])
    return markdown_table(["claim", "untuned", "figures"], rows)


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


def main_methods(report: dict) -> list[str]:
    """The perplexity table's rows: every method once, without the lever grid and opt-outs."""
    other_init = _lever_key(report, report["other_init"], "none", 2)
    picked = [report["shipped"], report["untuned"], report["untuned_top2"]]
    rest = [n for n in report["evaluations"] if n not in picked and not n.startswith(
        ("FlexOlmo (", "anchor", "expert alone"))]
    return ["anchor", *(f"expert alone: {d}" for d in report["domains"]), *picked, *rest,
            *([other_init] if other_init else [])]


def perplexity_table(report: dict) -> str:
    rows = {name: report["evaluations"][name]["perplexity"] for name in main_methods(report)}
    return _by_column("model", rows, [*report["domains"], report["public"]], _fmt,
                      {"average": lambda p: _fmt(average(p))})


def lever_table(report: dict) -> str:
    """Every merge of the grid at top-2 and all experts: change against the anchor per corpus,
    the share each domain's text routes to its own expert, and whether C1 holds."""
    ev, anchor = report["evaluations"], report["evaluations"]["anchor"]["perplexity"]
    cols = [*report["domains"], report["public"]]
    rows = []
    for lever in report["levers"]:
        for k, key in lever["keys"].items():
            ppl, routing = ev[key]["perplexity"], ev[key]["routing"]
            own = sum(routing[d][d] for d in report["domains"]) / len(report["domains"])
            rows.append([lever["label"], k, *(_pct(_change(ppl[c], anchor[c])) for c in cols),
                         _fmt(average(ppl)), f"{own:.0%}",
                         "yes" if beats_anchor(report, key)[0] else "no"])
    return markdown_table(["merge", "top-k", *cols, "average", "own-expert share", "C1"], rows,
                          align=["left"] + ["right"] * (len(cols) + 3) + ["left"])


def proxy_table(report: dict) -> str:
    return markdown_table(["domain", "held-out AUC", "documents", "tokens",
                           "in its public slice (oracle)"],
                          ([d, f"{p['auc']:.3f}", p["documents"], f"{p['tokens']:,}",
                            f"{p['in_slice']}/{p['documents']} ({p['precision']:.0%})"]
                           for d, p in report["proxies"].items()),
                          align=["left"] + ["right"] * 4)


def opt_out_matrix(report: dict, model: str) -> dict[str, dict[str, float]]:
    """Relative perplexity change against the full merge, per removed expert and corpus."""
    merged = report["evaluations"][model]["perplexity"]
    return {d: {c: _change(p, merged[c]) for c, p in
                report["evaluations"][opt_out_key(model, d)]["perplexity"].items()}
            for d in report["domains"]}


def opt_out_table(report: dict, model: str) -> str:
    public, column = report["public"], f"{report['public']} outside its slice"
    outside = outside_slice(report, model)
    rows = {d: row | {column: outside[d]} for d, row in opt_out_matrix(report, model).items()}
    return _by_column("removed", rows, [*report["domains"], public, column], _pct)


def routing_table(report: dict) -> str:
    routing = report["evaluations"][report["shipped"]]["routing"]
    return _by_column("corpus", routing, list(next(iter(routing.values()))),
                      lambda share: f"{share:.0%}")


def diagnostics_table(report: dict) -> str:
    """Per domain: what its expert achieves alone, and whether the merge routes its text to it."""
    ev, public = report["evaluations"], report["public"]
    anchor, merged = ev["anchor"]["perplexity"], ev[report["shipped"]]["perplexity"]
    routing = ev[report["shipped"]]["routing"]
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
    p, e, rc = report["preset"], report["expert_config"], report["release_config"]
    shipped = report["shipped"]
    return "\n".join([
        "# FlexOlmo's claims at small scale", "",
        (f"Preset `{p['name']}`: `{p['anchor']}` anchor ({report['anchor']['parameters']:,} "
         f"parameters), {len(report['domains'])} private domains, experts {e['steps']} steps of "
         f"{e['batch_size']} x {e['seq_len']} tokens (public share {e['public_ratio']}), "
         f"perplexity on {p['eval_tokens']:,} held-out test tokens per corpus. "
         f"{report['threads']} CPU threads, {report['total_minutes']} minutes in all. "
         "Generated by `python -m benchmarks.paper_claims` from `paper_claims.json`."), "",
         (f"The claims judge the merge as `flexo release` builds it: **{shipped}**. Each "
          "domain's proxies are chosen by its own classifier over the anchor's public pool "
          "(as `flexo contribute` does), resolved by the operator, and the routers tuned with "
          f"them ({report['router_tuning']['steps']:.0f} steps at lr "
          f"{rc['router_tuning_lr']:g}, the supervised loss); "
          "C3 and C6 compare untuned top-2 merges, as their ablations are."), "",
        "## Claims", "", claims_table(report), "",
        f"The untuned merge (the paper's headline FlexOlmo), {report['untuned']}:", "",
        untuned_table(report), "",
        "## Proxy selection (each domain's own classifier over the public pool)", "",
        proxy_table(report), "",
        "## Levers: expert steps, router init, router tuning, top-k", "",
        lever_table(report), "",
        "## Perplexity by method (lower is better)", "", perplexity_table(report), "",
        f"![perplexity]({PLOTS['perplexity']})", "",
        "## Opt-out: change against the full merge when one expert is removed", "",
        (f"The {report['public']} mix holds a 5% slice of each private domain's documents, that "
         f"domain's own text: C5 holds the mix to < 2% on its text outside the removed "
         f"domain's slice (last column); the `{report['public']}` column is the whole mix."), "",
        f"As released ({shipped}):", "", opt_out_table(report, shipped), "",
        f"Untuned ({report['untuned']}):", "", opt_out_table(report, report["untuned"]), "",
        f"![opt-out]({PLOTS['opt_out']})", "",
        f"## Routing share per corpus ({shipped}, mean router probability)", "",
        routing_table(report), "", f"![routing]({PLOTS['routing']})", "",
        "## Diagnostics: each expert alone against the anchor, and the merge's routing", "",
        diagnostics_table(report), "",
        f"## Extraction audit ({report['extraction']['domain']} training documents)", "",
        extraction_table(report), "",
    ])


def plot(report: dict, out: Path) -> dict[str, Path]:
    cols = [*report["domains"], report["public"]]
    methods = [n for n in main_methods(report)
               if not n.startswith("expert alone") and n != "anchor"]
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

    matrix = opt_out_matrix(report, report["shipped"])
    fig, ax = plt.subplots(figsize=(7, 4))
    plots.heatmap(ax, [f"without {d}" for d in matrix], cols,
                  [[matrix[d][c] for c in cols] for d in matrix], "+.1%", "RdBu_r", centre=True)
    ax.set_title("Opt-out (as released): perplexity change vs the full merge")
    plots.save(fig, paths["opt_out"])

    plots.routing_heatmap(paths["routing"], report["evaluations"][report["shipped"]]["routing"],
                          "Routing share per corpus (as released)")
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
