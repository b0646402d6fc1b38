"""The governance policy file: refused whole when malformed, naming the field; module gates and
licences refuse with the rule, the figure and the threshold."""

from __future__ import annotations

import pytest

from governance.policy import (
    DEFAULT_POLICY,
    ModuleFigures,
    PolicyError,
    gate_failures,
    load_policy,
)

GOOD = ModuleFigures(own_change=-0.12, public_change=0.01, extraction_rate=0.0, dp_epsilon=None,
                     licence="CC-BY-4.0")


def _policy(tmp_path, text: str):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


def test_the_shipped_policy_loads_and_a_good_module_passes_it():
    policy = load_policy(DEFAULT_POLICY)
    assert policy.approvals_required >= 2  # four eyes at least, besides the contributor
    assert gate_failures(policy, GOOD) == []


@pytest.mark.parametrize("text, field, why", [
    ("module_gates:\n  max_public_chnge: 0.1\n", "module_gates.max_public_chnge", "Extra inputs"),
    ("approvals_required: 0\n", "approvals_required", "greater than or equal to 1"),
    ("module_gates:\n  min_own_improvement: two\n", "module_gates.min_own_improvement",
     "valid number"),
    ("roles:\n  reviewers: [Not An Id]\n", "roles.reviewers.0", "contributor id"),
    ("release_licence: wtfpl\n", "release_licence", "unknown release licence 'wtfpl'"),
])
def test_a_malformed_policy_is_refused_naming_the_field(tmp_path, text, field, why):
    with pytest.raises(PolicyError) as e:
        _policy(tmp_path, text)
    assert f"field {field}: " in str(e.value) and why in str(e.value), str(e.value)


def test_a_policy_that_is_not_yaml_or_missing_is_refused(tmp_path):
    with pytest.raises(PolicyError, match="not valid YAML"):
        _policy(tmp_path, "roles: [unclosed\n")
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "nowhere.yaml")


def test_each_gate_names_the_rule_the_figure_and_the_threshold(tmp_path):
    policy = _policy(tmp_path, "module_gates:\n  min_own_improvement: 0.05\n"
                               "  max_public_change: 0.02\n  max_extraction_rate: 0.01\n"
                               "  dp_required: true\n")
    bad = GOOD.model_copy(update={"own_change": -0.031, "public_change": 0.034,
                                  "extraction_rate": 0.0625})
    assert gate_failures(policy, bad) == [
        "module_gates.min_own_improvement: own-domain perplexity -3.1%, must fall at least 5.0%",
        "module_gates.max_public_change: public perplexity +3.4%, at most +2.0%",
        "module_gates.max_extraction_rate: extraction rate 6.2%, at most 1.0%",
        ("module_gates.dp_required: trained without differential privacy; train with "
        "--dp-epsilon")]
    # a recorded waiver lifts its gate only
    waived = gate_failures(policy, bad, frozenset({"max_extraction_rate", "dp_required"}))
    assert [f.split(":")[0] for f in waived] == ["module_gates.min_own_improvement",
                                                 "module_gates.max_public_change"]
    unaudited = gate_failures(policy, GOOD.model_copy(update={"extraction_rate": None,
                                                              "dp_epsilon": 8.0}))
    assert unaudited == [("module_gates.max_extraction_rate: no extraction audit was published "
                         "(at most 1.0% of audited documents may be reproduced)")]


def test_licences_unknown_or_incompatible_are_refused_and_not_waivable(tmp_path):
    policy = load_policy(DEFAULT_POLICY)
    unknown = gate_failures(policy, GOOD.model_copy(update={"licence": "proprietary"}),
                            frozenset({"licence"}))
    assert len(unknown) == 1 and "module licence 'proprietary' is unknown" in unknown[0]
    share_alike = GOOD.model_copy(update={"licence": "CC-BY-SA-4.0"})
    [refusal] = gate_failures(policy, share_alike)
    assert refusal == "licence: a module under cc-by-sa-4.0 cannot go into a release under " \
                      "apache-2.0"
    assert gate_failures(_policy(tmp_path, "release_licence: CC-BY-SA-4.0\n"), share_alike) == []
