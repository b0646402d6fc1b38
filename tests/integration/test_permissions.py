"""Permissions against the real MLflow server (issue 17 acceptance 2): each identity holds what
`flexo infra users sync` granted from the policy and nothing more. A contributor cannot publish
another's module, record reviews or move `production`; a consumer cannot write anything; each
refusal is MLflow's permission error (the server enforces it, whatever client is used), shown by
flexo as one line. Reviews are recorded under the server identity that made them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.exceptions import MlflowException
from servers import CONTRIBUTE

from flows.cli.app import server_refusal
from flows.contribute import EXPERIMENT as CONTRIBUTE_EXPERIMENT

pytestmark = [pytest.mark.slow, pytest.mark.integration]

def _one_line_refusal(result, *fragments: str) -> str:
    """A refusal: non-zero exit, one `error:` line on stderr naming what was refused."""
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr.replace("\n", " "), result.stderr
    return errors[0]


def _denied(call) -> str:
    """MLflow's permission error for `call`, and flexo's one line for it."""
    with pytest.raises(MlflowException) as caught:
        call()
    assert caught.value.error_code == "PERMISSION_DENIED", caught.value
    line = server_refusal(caught.value)
    assert line and "\n" not in line
    return line


def test_reviews_are_recorded_under_the_server_identity_that_made_them(consortium, world):
    version = consortium.client("operator").get_model_version("flexo-expert-alpha", "1")
    assert version.tags["approval_status"] == "approved"
    assert {"approval.rev-one", "approval.rev-two"} <= set(version.tags)
    assert version.tags["reviewed_by"] == "rev-one,rev-two"
    # a reviewer may not claim another's name: flexo refuses the disagreeing --as ...
    claimed = consortium.flexo("rev-one", "review", "approve", "--contributor", "beta",
                               "--version", 1, "--as", "rev-two")
    _one_line_refusal(claimed, "disagrees with your MLflow identity 'rev-one'")
    # ... and the server refuses the tag, whoever's client writes it
    line = _denied(lambda: consortium.client("rev-one").set_model_version_tag(
        "flexo-expert-beta", "1", "approval.rev-two", "2026-12-02T00:00:00Z"))
    assert "only its own approval" in line


def test_a_contributor_cannot_publish_anothers_module(consortium, world):
    operator = consortium.client("operator")
    before = operator.search_model_versions("name = 'flexo-expert-beta'")
    result = consortium.flexo("alpha", "contribute", "--contributor", "beta",
                              "--data", world["data"]["alpha"], *CONTRIBUTE)
    _one_line_refusal(result, "refused by the MLflow server", "'alpha'",
                      "model-versions/create")
    after = operator.search_model_versions("name = 'flexo-expert-beta'")
    assert [v.version for v in after] == [v.version for v in before]  # nothing half-written


def test_a_contributor_cannot_set_review_tags(consortium, world):
    alpha = consortium.client("alpha")
    # on its own module: four eyes, enforced by the server's registry rules
    line = _denied(lambda: alpha.set_model_version_tag("flexo-expert-alpha", "1",
                                                       "approval.alpha", "2026-12-02"))
    assert "cannot record a review" in line
    _denied(lambda: alpha.set_model_version_tag("flexo-expert-alpha", "1", "approval_status",
                                                "approved"))
    # on another's: no permission on that model at all
    _denied(lambda: alpha.set_model_version_tag("flexo-expert-beta", "1", "approval.alpha", "x"))
    # through flexo: not a reviewer of the policy, one line
    result = consortium.flexo("alpha", "review", "approve", "--contributor", "beta",
                              "--version", 1)
    _one_line_refusal(result, "roles.reviewers", "'alpha'")
    assert consortium.client("operator").get_model_version(
        "flexo-expert-beta", "1").tags["approval_status"] == "pending"


def test_a_contributor_cannot_move_production(consortium, world):
    release = consortium.client("operator").get_model_version_by_alias(
        "flexo-release", "candidate").version
    line = _denied(lambda: consortium.client("alpha").set_registered_model_alias(
        "flexo-release", "production", release))
    assert "only its operators" in line
    _denied(lambda: consortium.client("alpha").delete_registered_model_alias(
        "flexo-release", "candidate"))
    result = consortium.flexo("alpha", "release", "promote", "--release", release)
    _one_line_refusal(result, "roles.operators")
    aliases = consortium.client("operator").get_model_version("flexo-release", release).aliases
    assert "production" not in aliases and "candidate" in aliases
    # what a contributor may write on a release: its own acceptance, nobody else's
    _denied(lambda: consortium.client("alpha").set_model_version_tag(
        "flexo-release", release, "acceptance.beta", "accepted"))


def test_a_consumer_reads_the_release_and_cannot_write_anything(consortium, world):
    app = consortium.client("app")
    release = app.get_model_version_by_alias("flexo-release", "candidate")
    assert release.name == "flexo-release"
    experiment = app.get_experiment_by_name("flexo-release").experiment_id
    _denied(lambda: app.set_model_version_tag("flexo-release", release.version, "x", "y"))
    _denied(lambda: app.set_registered_model_alias("flexo-release", "production",
                                                   release.version))
    _denied(lambda: app.create_registered_model("flexo-expert-app"))
    _denied(lambda: app.create_experiment("app-experiment"))
    _denied(lambda: app.create_run(experiment))
    _denied(lambda: app.delete_model_version("flexo-release", release.version))
    _denied(lambda: app.get_model_version("flexo-expert-alpha", "1"))  # not even reading those
    result = consortium.flexo("app", "contribute", "--contributor", "app",
                              "--data", world["data"]["alpha"], *CONTRIBUTE)
    assert result.returncode != 0


def test_wrong_credentials_are_one_line(consortium, world):
    result = consortium.flexo("alpha", "review", "list",
                              extra={"MLFLOW_TRACKING_PASSWORD": "not-alphas-password"})
    _one_line_refusal(result, "refused the credentials of 'alpha'")


def test_users_sync_takes_back_what_the_policy_no_longer_gives(consortium, world, tmp_path):
    """A contributor taken out of the policy loses, at the next sync, every permission on
    flexo's models and experiments (the operator keeps managing its model); synced with the
    policy that lists it again, it has them back."""
    smaller = yaml.safe_load(consortium.policy.read_text())
    smaller["roles"]["contributors"].remove("beta")
    without_beta = tmp_path / "policy.yaml"
    without_beta.write_text(yaml.safe_dump(smaller))

    def sync(policy: Path):
        return consortium.flexo(None, "infra", "users", "sync", "--dir", consortium.directory,
                                extra={"FLEXO_POLICY": str(policy)})

    consortium.client("beta").get_registered_model("flexo-expert-beta")  # beta may, today
    try:
        result = sync(without_beta)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "beta: EDIT on registered_model flexo-expert-beta revoked" in result.stdout
        assert "beta: EDIT on registered_model flexo-release revoked" in result.stdout
        assert "operator:" not in result.stdout  # operators keep every flexo model
        beta = consortium.client("beta")
        _denied(lambda: beta.get_registered_model("flexo-expert-beta"))
        _denied(lambda: beta.get_registered_model("flexo-release"))
        _denied(lambda: beta.get_experiment_by_name(CONTRIBUTE_EXPERIMENT))
        operator = consortium.client("operator")
        assert operator.get_registered_model("flexo-expert-beta").name == "flexo-expert-beta"
        assert "revoked" not in sync(without_beta).stdout.replace("0 revoked", "")  # idempotent
    finally:
        again = sync(consortium.policy)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "beta: EDIT on registered_model flexo-expert-beta" in again.stdout
    consortium.client("beta").get_registered_model("flexo-expert-beta")
