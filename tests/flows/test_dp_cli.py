"""Differentially private expert training through `flexo expert train --dp-epsilon` (issue 4)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from components.builtin_corpora import load_domain
from components.evaluation import evaluate_model
from components.expert_module import WEIGHTS_FILE

ARGS = ("--contributor", "literature", "--domain", "literature", "--router-docs", 200)


def _train(cli, anchor, out, *extra):
    result = cli("expert", "train", *ARGS, "--anchor", anchor, "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def dp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("dp")


@pytest.mark.slow  # ~30 s of DP training: the default suite stays under 15 minutes
def test_dp_training_stays_within_the_target_epsilon_and_records_it(cli, tiny_anchor, dp_root):
    manifest = _train(cli, tiny_anchor, dp_root / "eps8", "--dp-epsilon", 8, "--steps", 60)
    spent = manifest["differential_privacy"]
    assert 0 < spent["epsilon"] <= 8.0
    assert spent["epsilon"] > 7.5  # the noise is calibrated to the target, not far above it
    assert spent["noise_multiplier"] > 0.3 and 0 < spent["sample_rate"] < 0.1
    assert spent["delta"] < 1e-3 and spent["steps"] == 60 and spent["max_grad_norm"] == 1.0
    assert manifest["training"]["dp"]["epsilon"] == 8.0


@pytest.mark.slow  # ~75 s: a second DP module, a merge and two evaluations
def test_dp_with_huge_epsilon_differs_from_plain_training_and_still_learns(
        cli, tiny_anchor, modules, dp_root):
    """Same seed and settings as the plain literature module; epsilon 1e6 means almost no noise,
    yet per-sample clipping and Poisson sampling change the weights. Literature perplexity must
    still fall >= 5% (measured 2026-11-28: 203.9 -> 179.8, -11.8%; plain training: -13.9%)."""
    out = dp_root / "huge"
    manifest = _train(cli, tiny_anchor, out, "--dp-epsilon", 1e6)
    assert manifest["differential_privacy"]["noise_multiplier"] < 0.1
    dp, plain = load_file(out / WEIGHTS_FILE), load_file(modules["literature"] / WEIGHTS_FILE)
    assert dp.keys() == plain.keys()
    changed = [k for k in dp if not k.endswith("router_public") and not torch.equal(dp[k], plain[k])]
    assert len(changed) == len(dp) - sum(k.endswith("router_public") for k in dp)
    merged = dp_root / "huge-merged"
    result = cli("merge", "--anchor", tiny_anchor, "--expert", out, "--out", merged)
    assert result.exit_code == 0, result.output  # frozen tensors are the anchor's: it merges
    corpora = [load_domain("literature").split("test")]
    before = evaluate_model(tiny_anchor, corpora)[0].perplexity
    after = evaluate_model(merged, corpora)[0].perplexity
    assert after <= 0.95 * before, (before, after)


@pytest.mark.parametrize(("extra", "message"), [
    (("--dp-epsilon", 0), "dp.epsilon"),
    (("--dp-epsilon", 8, "--dp-delta", 2), "dp.delta"),
    (("--dp-epsilon", 8, "--dp-max-grad-norm", 0), "dp.max_grad_norm"),
])
def test_bad_dp_options_are_refused_before_anything_is_written(cli, tiny_anchor, tmp_path,
                                                              extra, message):
    out = tmp_path / "module"
    result = cli("expert", "train", *ARGS, "--anchor", tiny_anchor, "--out", out, *extra)
    assert result.exit_code != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
