"""`flexo demo`, the main job, as a user runs it in a fresh FLEXO_HOME."""

import math
import re

import pytest
from transformers import AutoModelForCausalLM

DOMAINS = ("public", "code", "legal", "medical", "literature")


def _run_demo(cli, monkeypatch, home, *flags):
    monkeypatch.setenv("FLEXO_HOME", str(home))
    result = cli("demo", *flags)
    assert result.exit_code == 0, result.output
    (anchor,) = home.glob("runs/demo-*/anchor")
    figures = {}
    for domain in DOMAINS:
        match = re.search(rf"│ {domain}\s+│\s+([\d,.]+) │", result.stdout)
        assert match, (domain, result.stdout)
        figures[domain] = float(match.group(1).replace(",", ""))
    return anchor, figures


def test_quick_demo_trains_and_evaluates_an_anchor(cli, monkeypatch, tmp_path):
    anchor, figures = _run_demo(cli, monkeypatch, tmp_path / "home", "--quick")
    model = AutoModelForCausalLM.from_pretrained(anchor)
    # Uniform guessing over the tiny vocabulary would score len(vocab); training must beat it
    # by far on the public mix it saw and still clearly on domains it saw only 5% of.
    assert figures["public"] < model.config.vocab_size / 8
    assert all(math.isfinite(v) and v < model.config.vocab_size / 2 for v in figures.values())


@pytest.mark.slow
def test_default_demo_uses_the_small_preset(cli, monkeypatch, tmp_path):
    anchor, figures = _run_demo(cli, monkeypatch, tmp_path / "home")
    model = AutoModelForCausalLM.from_pretrained(anchor)
    assert model.config.hidden_size == 128 and model.config.vocab_size == 8192
    assert figures["public"] < model.config.vocab_size / 16
