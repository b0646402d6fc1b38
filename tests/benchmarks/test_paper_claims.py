"""benchmarks/paper_claims.py at the tiny preset: every table, plot and claim is produced, claims
follow the figures, and a rerun of a finished run trains nothing."""

from __future__ import annotations

import copy
import json
import math

import matplotlib.image as mpimg
import pytest

from benchmarks import paper_claims
from benchmarks.paper_claims_report import PLOTS, judge, opt_out_key, write_report

# The claims benchmark at the tiny preset trains an anchor, four experts and every baseline
# (~3 minutes): it runs with the slow suite, keeping the default suite under 15 minutes.
pytestmark = pytest.mark.slow

METHODS = {"anchor", "model soup", "BTM ensemble", "uncoordinated merged",
           "unrestricted (union)", "ablation: random init", "ablation: no negative bias"}


def _args(work) -> list[str]:
    return ["--preset", "tiny", "--levers", "--workdir", str(work), "--out", str(work / "out"),
            "--no-progress"]


@pytest.fixture(scope="module")
def claims_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("paper-claims")
    return work, paper_claims.main(_args(work))


def _verdict(report: dict, cid: str) -> bool:
    return next(c["pass"] for c in judge(report) if c["id"] == cid)


def test_tiny_preset_writes_every_table_plot_and_claim(claims_run):
    work, _ = claims_run
    out = work / "out"
    report = json.loads((out / "paper_claims.json").read_text())
    assert [c["id"] for c in report["claims"]] == [f"C{i}" for i in range(1, 8)]
    assert all(isinstance(c["pass"], bool) and c["figures"] for c in report["claims"])

    domains = report["domains"]
    corpora = {*domains, report["public"]}
    assert len(domains) >= 4
    grid = {key for lever in report["levers"] for key in lever["keys"].values()}
    expected = METHODS | grid | {f"expert alone: {d}" for d in domains} | {
        opt_out_key(report[model], d) for d in domains for model in ("shipped", "untuned")}
    assert set(report["evaluations"]) == expected
    # the claims judge the release path: own-classifier proxies, tuned routers, every expert on
    init = report["shipped_init"]
    assert report["shipped"] == f"FlexOlmo ({init} experts, proxy-tuned, 10 steps) top-5"
    assert report["untuned"] == f"FlexOlmo ({init} experts, untuned) top-5"
    assert report["router_tuning"]["steps"] == 10
    assert {lv["tuning"] for lv in report["levers"]} == {"none", "public", "proxies",
                                                          "proxies-private"}
    # the grid: both domain-informed inits, the shipped one longer
    assert {lv["experts"] for lv in report["levers"]} == {"embed", "hidden", f"{init}-long"}
    assert set(report["proxies"]) == set(domains)
    for d, proxy in report["proxies"].items():  # each domain's classifier told it apart
        assert proxy["auc"] > 0.8 and proxy["documents"] > 0 and proxy["tokens"] >= 50_000, d
    for name, e in report["evaluations"].items():
        assert set(e["perplexity"]) == corpora, name
        assert all(math.isfinite(p) and p > 1 for p in e["perplexity"].values()), name
        for shares in e["routing"].values():
            assert sum(shares.values()) == pytest.approx(1.0, abs=1e-6), name
    outside = report["public_outside_slice"]  # C5's public text: the mix outside d's slice
    for model in (report["shipped"], report["untuned"]):
        assert set(outside[model]) == set(domains)
        assert all(set(outside[opt_out_key(model, d)]) == {d} for d in domains)
        # other text than the whole mix: code's slice is a tenth of the mix's test text (a
        # small slice may miss the sampled windows)
        assert outside[model]["code"] != report["evaluations"][model]["perplexity"][
            report["public"]]
    for d in domains:  # a removed expert gets no routing mass anywhere
        routing = report["evaluations"][opt_out_key(report["shipped"], d)]["routing"]
        assert all(shares[d] == 0 for shares in routing.values())
    training = report["training"]  # the bias ablation trains no bias; the method does
    assert all(training[f"no-bias/{d}"]["mean_bias"] == 0 for d in domains)
    assert all(training[f"{init}/{d}"]["mean_bias"] < 0 for d in domains)
    assert training[f"{init}-long/code"]["final_loss"] < \
        training[f"{init}/code"]["final_loss"]  # the expert-steps lever trained longer
    assert set(report["extraction"]["models"]) == {
        "anchor", f"dense expert ({report['extraction']['domain']})",
        "FlexOlmo merged (as released)"}

    md = (out / "paper_claims.md").read_text()
    for heading in ("## Claims", "## Proxy selection", "## Levers", "## Perplexity by method",
                    "## Opt-out", "## Routing share", "## Diagnostics", "## Extraction audit"):
        assert heading in md
    for c in report["claims"]:
        assert f"| {c['id']} " in md and f"**{'PASS' if c['pass'] else 'FAIL'}**" in md
    for name in PLOTS.values():
        assert f"]({name})" in md
        image = mpimg.imread(out / name)  # a real PNG, decoded
        assert image.shape[0] > 200 and image.shape[1] > 200


def test_rerun_of_a_finished_run_trains_nothing(claims_run):
    work, first = claims_run
    before = json.loads((work / "state.json").read_text())
    again = paper_claims.main(_args(work))
    after = json.loads((work / "state.json").read_text())
    assert after["stages"] == before["stages"]  # nothing re-ran: same stages, same seconds
    assert len(after["invocations"]) == len(before["invocations"]) + 1
    assert again["claims"] == first["claims"]


def test_claims_follow_the_figures(claims_run):
    report = copy.deepcopy(claims_run[1])
    ev = {name: e["perplexity"] for name, e in report["evaluations"].items()}
    merged, anchor = ev[report["shipped"]], ev["anchor"]
    domains, public = report["domains"], report["public"]

    untuned = ev[report["untuned_top2"]]
    for factor, holds in ((2.0, True), (0.5, False)):  # C3: uncoordinated worse / better
        for c in untuned:
            ev["uncoordinated merged"][c] = untuned[c] * factor
        assert _verdict(report, "C3") is holds

    for d in domains:  # C1: every domain better than the anchor, public within 2%
        merged[d] = anchor[d] * 0.9
    merged[public] = anchor[public] * 1.019
    assert _verdict(report, "C1") is True
    merged[public] = anchor[public] * 1.021
    assert _verdict(report, "C1") is False

    outside = report["public_outside_slice"]
    for d in domains:  # C5: removal gives the anchor back on d and leaves the rest alone
        ev[opt_out_key(report["shipped"], d)].update({c: merged[c] for c in merged})
        ev[opt_out_key(report["shipped"], d)][d] = anchor[d] * 1.04
        outside[opt_out_key(report["shipped"], d)][d] = outside[report["shipped"]][d]
    assert _verdict(report, "C5") is True
    first = opt_out_key(report["shipped"], domains[0])
    ev[first][domains[1]] = merged[domains[1]] * 1.03  # another private domain moved
    assert _verdict(report, "C5") is False
    ev[first][domains[1]] = merged[domains[1]]
    # the whole public mix moves with the removed domain's own slice in it: reported, not judged
    ev[first][public] = merged[public] * 1.03
    assert _verdict(report, "C5") is True
    outside[first][domains[0]] = outside[report["shipped"]][domains[0]] * 1.03  # the rest moved
    assert _verdict(report, "C5") is False


def test_a_run_without_the_lever_grid_reports_every_claim(claims_run, tmp_path):
    """The default run builds no grid merge, the other init's untuned merge included (C6 names
    it as not run): every claim, table and plot is still written from what it has."""
    report = copy.deepcopy(claims_run[1])
    needed = {report["shipped"], report["untuned"]}
    report["levers"] = [lv for lv in report["levers"] if lv["keys"]["5"] in needed]
    keep = {key for lv in report["levers"] for key in lv["keys"].values()}
    dropped = {key for lv in claims_run[1]["levers"] for key in lv["keys"].values()} - keep
    report["evaluations"] = {name: e for name, e in report["evaluations"].items()
                             if name not in dropped}
    write_report(report, tmp_path)
    written = json.loads((tmp_path / "paper_claims.json").read_text())
    assert [c["id"] for c in written["claims"]] == [f"C{i}" for i in range(1, 8)]
    c6 = next(c for c in written["claims"] if c["id"] == "C6")
    assert f"{report['other_init']} not run" in c6["figures"]
    md = (tmp_path / "paper_claims.md").read_text()
    assert "## Levers" in md and not any(name in md for name in dropped)
