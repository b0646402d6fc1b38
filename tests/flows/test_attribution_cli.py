"""`flexo generate --attribution` and `flexo credits` (issue 15, attribution): each generation is
attributed to the experts and recorded as numbers; credits are the sums of the records."""

from __future__ import annotations

import json
import sqlite3

import pytest

PROMPTS = ("def parse(line):", "The court held that", "It was a dark and stormy night")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEXO_HOME", str(tmp_path))
    return tmp_path


def _experts(merged) -> list[str]:
    return json.loads((merged / "config.json").read_text())["flexo_experts"][1:]


def _generate(cli, merged, prompt: str, *extra: str) -> str:
    result = cli("generate", "--model", merged, "--prompt", prompt, "--max-new-tokens", 12,
                 "--greedy", *extra)
    assert result.exit_code == 0, result.output
    return result.stdout


def _rows(stdout: str) -> dict[str, list[str]]:
    """The attribution table's rows: expert -> its cells."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 2 and cells[0] and cells[0] not in ("expert", ""):
            rows[cells[0]] = cells[1:]
    return rows


def test_attribution_of_a_masked_expert_is_zero_and_the_public_expert_counts(home, cli, merged):
    experts = _experts(merged)
    masked = experts[0]
    rows = _rows(_generate(cli, merged, PROMPTS[0], "--attribution", "loo", "--exclude", masked))
    assert set(rows) == {"public", *experts}
    assert rows[masked] == ["0.0%", "+0.000"]  # no routing weight, and masking it changes nothing
    assert float(rows["public"][1]) != 0  # the anchor's FFN shaped the text
    shares = [float(cells[0].rstrip("%")) for cells in rows.values()]
    assert sum(shares) == pytest.approx(100, abs=0.2)
    # the same expert on: it gets routing weight and a leave-one-out drop of its own
    on = _rows(_generate(cli, merged, PROMPTS[0], "--attribution", "loo"))
    assert on[masked][0] != "0.0%" and on[masked][1] != "+0.000"


def test_credits_sum_the_records_and_no_text_is_stored(home, cli, merged):
    outputs = [_generate(cli, merged, p, "--as", "reader", *(("--attribution", "loo")
                                                            if i == 0 else ()))
               for i, p in enumerate(PROMPTS)]
    chosen = _experts(merged)[1]
    _generate(cli, merged, PROMPTS[1], "--only", chosen, "--as", "other")
    store = home / "attribution.sqlite"
    with sqlite3.connect(store) as conn:
        bodies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM records ORDER BY id")]
    assert len(bodies) == 4 and [b["consumer"] for b in bodies] == ["reader"] * 3 + ["other"]
    assert bodies[3]["active"] == ["public", chosen]

    result = cli("credits", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["generations"] == 4
    total = sum(b["generated_tokens"] for b in bodies)
    for credit in report["credits"]:  # recomputed from the raw records
        name = credit["contributor"]
        routed = sum(b["routing"][name] * b["generated_tokens"] for b in bodies)
        assert credit["routed_tokens"] == pytest.approx(routed)
        assert credit["share"] == pytest.approx(routed / total)
        assert credit["generations"] == sum(name in b["active"] for b in bodies)
        assert credit["loo_generations"] == (1 if bodies[0]["loo"][name] is not None else 0)
    assert sum(c["share"] for c in report["credits"]) == pytest.approx(1)
    assert cli("credits", "--since", "2999-01-01", "--json").stdout.count('"generations": 0') == 1

    # numbers only: neither a prompt nor any generated text is in the store
    data = store.read_bytes()
    for prompt, stdout in zip(PROMPTS, outputs, strict=True):
        generated = stdout.splitlines()[0].removeprefix(prompt).strip()
        assert prompt.encode() not in data
        if len(generated) >= 8:
            assert generated.encode() not in data


def test_an_expert_is_credited_on_its_own_domains_text_more_than_on_public_text(home, cli, merged,
                                                                             builtin):
    """Attribution follows the routing: code's expert, on greedy continuations of six held-out
    code documents, gets at least twice the routing share it gets on six public ones. Measured
    on this tiny merge (untuned top-2 routers), these prompts: 9.5% against 1.1% (8.9x), one
    document from 0% to 41%: the mean over six keeps the margin. The bound is asked of code's
    expert: literature's takes most of the mass on every text of this merge (80% on its own,
    66% on public, 48-token prompts). At demo scale, with tuned routers, the unseen domain's
    expert gets 2.09x its public share (README, the unseen domain)."""
    def mean_share(domain: str) -> float:
        shares = []
        for text in builtin[domain].split("test").texts()[:6]:
            rows = _rows(cli("generate", "--model", merged, "--prompt", text[:200],
                             "--max-new-tokens", 24, "--greedy", "--attribution",
                             "routing").stdout)
            shares.append(float(rows["code"][0].rstrip("%")))
        return sum(shares) / len(shares)

    own, public = mean_share("code"), mean_share("public")
    assert own >= 2 * public > 0, (own, public)
