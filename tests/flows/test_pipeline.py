"""The registry side of the pipeline through its flows and CLI, on a tiny world: an imported
anchor, two contributors (with proxy selection), demo reviews, a candidate release; then the
contributors' acceptance and promotion, lineage, a cached re-contribution, injected failures,
review rules and a withdrawal (issue 6 acceptance 2, 4, 5; issue 14 acceptance 3)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import mlflow
import pytest
from dvc_project import cache_texts, dvc_project
from mlflow import MlflowClient
from model_server import REPO, flexo_serve, load, mlflow_serve
from prefect_server import run_worker, server_client, server_deployment, wait_for_runs

from components.documents import Corpus
from components.expert_training import ExpertConfig

CONTRIBUTORS = {"code-co": "code", "med-co": "medical"}
# Each module's licence: its source text's (DATA.md; the HPO asks for attribution: CC-BY-4.0)
LICENCES = {"code-co": "psf-2.0", "med-co": "cc-by-4.0"}
REVIEWERS = ("rita", "sam")  # the shipped policy wants two approvals


def _small(corpus: Corpus, n: int = 300) -> Corpus:
    return Corpus.from_texts(corpus.name, ((d.text, d.source) for d in corpus.documents[:n]))


def _contribute_config(steps: int = 20, proxies: bool = True):
    from components.proxy_selection import ProxyConfig
    from flows.contribute import ContributeConfig

    # No audit (tests/flows/test_contribute_flow.py covers it); a small proxy, which release
    # router tuning reads (versions that are never released need none).
    return ContributeConfig(expert=ExpertConfig(steps=steps, router_documents=50,
                                                checkpoint_every=0), audit=None,
                            proxies=ProxyConfig(min_tokens=20_000, max_documents=200)
                            if proxies else None, eval_max_tokens=4096)


def _release_config():
    from flows.release import ReleaseConfig

    # A tiny anchor's experts barely move perplexity: a lax public limit keeps the gate's outcome
    # out of these tests (tests/governance checks its rules).
    return ReleaseConfig(router_tuning_steps=5, eval_max_tokens=2048, max_public_increase=10.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_anchor, builtin):
    from components.user_data import write_directory
    from flows.anchor import anchor_flow
    from flows.contribute import contribute_flow
    from flows.release import release_flow
    from flows.review import declare_reviewer, review_flow

    root = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLEXO_HOME", str(root / "home"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        anchor = anchor_flow(source=str(tiny_anchor))
        data, contributions = {}, {}
        for contributor, domain in CONTRIBUTORS.items():
            data[contributor] = write_directory(_small(builtin[domain]),  # all splits: its
                                                root / "data" / contributor, domain)  # held-out
            contributions[contributor] = contribute_flow(
                contributor, data[contributor], None,
                _contribute_config().model_copy(update={"licence": LICENCES[contributor]}))
        for reviewer in REVIEWERS:
            declare_reviewer(reviewer, kind="demo")
        for contributor, result in contributions.items():  # no audit ran: waived, on record
            review_flow(contributor, result.version, "rita", "approved",
                        note="test world: no extraction audit (test_contribute_flow audits)",
                        waivers={"max_extraction_rate": "no audit in the test world"})
            review_flow(contributor, result.version, "sam", "approved")
        release = release_flow(_release_config())
        yield {"home": root / "home", "anchor": anchor, "data": data,
               "contributions": contributions, "release": release}


@pytest.fixture(scope="module")
def pending_version(world):
    """A second version of code-co's module, still pending review (another config, so another
    module): what the review tests decide on, made here rather than by another test."""
    from flows.contribute import contribute_flow

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLEXO_HOME", str(world["home"]))
        return contribute_flow("code-co", world["data"]["code-co"], None,
                               _contribute_config(steps=21, proxies=False))


def _client() -> MlflowClient:
    from flows.tracking import runs

    runs.configure()
    return MlflowClient()


def _train_runs(contributor: str) -> list:
    """The contributor's `train` child runs: one per time the training task really ran."""
    runs = mlflow.search_runs(experiment_names=["flexo-contribute"], output_format="list",
                              filter_string="tags.mlflow.runName = 'train'")
    return [r for r in runs if _parent_contributor(r) == contributor]


def _parent_contributor(run) -> str:
    parent = mlflow.get_run(run.data.tags["mlflow.parentRunId"])
    return parent.data.tags["flexo.contributor"]


def test_release_is_registered_with_aliases_tags_plots_and_a_loadable_checkpoint(world,
                                                                                 stored_events):
    import torch
    from transformers import AutoModelForCausalLM

    from components.evaluation import RoutingRecorder
    from components.fingerprint import fingerprint_checkpoint
    from governance.release import ReleaseRecord

    client = _client()
    release = world["release"]
    candidate = client.get_model_version_by_alias("flexo-release", "candidate")
    assert str(candidate.version) == str(release.version) == "1" and release.gate_passed
    assert "production" not in client.get_registered_model("flexo-release").aliases  # not yet
    anchor_v = client.get_model_version("flexo-anchor", "1")
    assert anchor_v.tags["anchor_fingerprint"] == world["anchor"].fingerprint
    assert candidate.tags["anchor_version"] == "1"
    assert candidate.tags["experts"] == "code-co:1,med-co:1"

    [event] = [e for e in stored_events("flexo.release.published", "flexo.release.1")
               if "code-co" in e["experts"]]  # other tests of a session may release a v1 too
    assert event == {"version": 1, "gate": "passed", "experts": {"code-co": 1, "med-co": 1}}
    approved = stored_events("flexo.expert.approved", "flexo.expert.med-co")
    assert [e["reviewer_kind"] for e in approved] == ["demo"]

    # The release directory: an HF checkpoint plus release.json and a model card.
    directory = world["home"] / "releases" / "v1"
    assert directory == release.directory
    assert candidate.tags["checkpoint_sha256"] == fingerprint_checkpoint(directory)
    # Each contribution published public ids from the pool its anchor names (registered with it).
    pool = json.loads((world["anchor"].directory / "public_pool.json").read_text())
    ids = {d["id"] for d in pool["documents"]}
    for contribution in world["contributions"].values():
        assert contribution.proxies.pool_fingerprint == pool["fingerprint"]
        assert set(contribution.proxies.ids) <= ids and contribution.proxies.tokens >= 20_000
    record = ReleaseRecord.model_validate_json((directory / "release.json").read_text())
    assert [e.contributor for e in record.experts] == ["code-co", "med-co"]
    assert {e.reviewed_by for e in record.experts} == {"rita,sam"}
    assert "med-co" in (directory / "README.md").read_text()
    model = AutoModelForCausalLM.from_pretrained(directory)
    assert model.config.model_type == "flex_olmo" and model.config.num_experts == 3

    # The registered version loads as a pyfunc and generates, with experts switchable per call:
    # excluding code-co changes what the model computes (its routing share falls to 0, the
    # logits move), not only the text.
    pyfunc = mlflow.pyfunc.load_model("models:/flexo-release@candidate")
    assert {p.name for p in pyfunc.metadata.get_params_schema().params} >= {"only", "exclude",
                                                                      "max_new_tokens"}
    release_model = pyfunc.unwrap_python_model()

    def computed():
        ids = release_model.tokenizer("def main(): return", return_tensors="pt").input_ids
        with RoutingRecorder(release_model.model) as recorder, torch.no_grad():
            logits = release_model.model(input_ids=ids).logits
        return logits, recorder.shares()

    [text] = pyfunc.predict(["def main("], params={"max_new_tokens": 6})
    logits, shares = computed()
    [without] = pyfunc.predict(["def main("], params={"max_new_tokens": 6, "exclude": "code-co"})
    logits_without, shares_without = computed()
    assert isinstance(text.text, str) and isinstance(without.text, str)
    assert text.experts_on == ["public", "code-co", "med-co"]
    assert without.experts_on == ["public", "med-co"] and without.routing is None
    assert shares["code-co"] > 0 and shares_without["code-co"] == 0
    assert shares_without["med-co"] > 0
    assert not torch.allclose(logits, logits_without)
    pyfunc.predict(["def main("], params={"max_new_tokens": 6, "only": "code-co"})
    assert computed()[1]["med-co"] == 0

    # Parent run with one child per task; the evaluation carries metrics, table and plots.
    run = mlflow.get_run(candidate.tags["release_run_id"])
    assert run.data.tags["flexo.expert.code-co.run_id"] == \
        world["contributions"]["code-co"].mlflow_run_id
    children = mlflow.search_runs(experiment_names=["flexo-release"], output_format="list",
                                  filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert {c.info.run_name for c in children} == {"merge", "evaluate"}
    merge_params = next(c for c in children if c.info.run_name == "merge").data.params
    assert merge_params["router_tuning_steps"] == "5"  # tuned on the published proxies
    evaluation = mlflow.get_run(candidate.tags["evaluation_run_id"])
    for domain in ("public", "code", "legal", "medical", "literature"):
        assert evaluation.data.metrics[f"perplexity.{domain}.release"] > 1
        shares = [v for k, v in evaluation.data.metrics.items()
                  if k.startswith(f"routing.{domain}.")]
        assert len(shares) == 3 and abs(sum(shares) - 1) < 1e-4
    artifacts = {a.path for a in client.list_artifacts(evaluation.info.run_id, "plots")}
    assert artifacts == {"plots/perplexity.png", "plots/routing.png"}
    png = Path(mlflow.artifacts.download_artifacts(run_id=evaluation.info.run_id,
                                                   artifact_path="plots/routing.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _ledger() -> list[dict]:
    from flows.ledger import home_ledger

    return [e.model_dump() for e in home_ledger().entries()]


def test_every_governance_event_is_in_the_ledger_and_the_release_run_witnesses_it(world, cli):
    """Publish, review and release are ledger entries, in order; the release's MLflow run keeps
    the checkpoint signed right after its entry, so a ledger rewritten since no longer matches."""
    entries = _ledger()
    kinds = [(e["event"], e["actor"], e["subject"]) for e in entries]
    assert kinds[:7] == [("publish", "code-co", "code-co"), ("publish", "med-co", "med-co"),
                         ("review", "rita", "code-co"), ("review", "sam", "code-co"),
                         ("review", "rita", "med-co"), ("review", "sam", "med-co"),
                         ("release", "operator", "flexo-release v1")]
    release = entries[6]
    assert release["details"]["experts"] == "code-co:1,med-co:1"
    assert release["details"]["gate"] == "passed"
    # the first approval leaves the version pending, with its waiver on record; the second
    # approves it
    assert entries[2]["details"] == {
        "version": 1, "decision": "approved", "reviewer_kind": "demo", "approvals": "1/2",
        "status": "pending", "waiver.max_extraction_rate": "no audit in the test world"}
    assert entries[3]["details"] == {"version": 1, "decision": "approved",
                                     "reviewer_kind": "demo", "approvals": "2/2",
                                     "status": "approved"}
    run_id = _client().get_model_version("flexo-release", "1").tags["release_run_id"]
    witness = mlflow.artifacts.load_dict(f"runs:/{run_id}/ledger_checkpoint.json")
    from flows.ledger import home_ledger

    signed = home_ledger().records()[6][1]
    assert witness == signed.model_dump() and witness["size"] == 7
    verified = cli("ledger", "verify")
    assert verified.exit_code == 0 and f"{len(entries)} entries" in verified.stdout


ANSWER_FIELDS = ["contributor", "release", "anchor_perplexity", "release_perplexity", "change",
                 "own_routing_share", "public_routing_share", "accepted"]


def _accept(cli, contributor: str, data: Path, *extra) -> dict:
    result = cli("accept", "--contributor", contributor, "--release", 1, "--data", data,
                 "--eval-tokens", 2048, "--json", *extra)
    assert result.exit_code in (0, 6), result.output
    answer = json.loads(result.stdout)
    assert list(answer) == ANSWER_FIELDS  # exactly these fields, in this order
    assert (result.exit_code == 0) == answer["accepted"]
    return answer


def _status_rows(stdout: str) -> list[list[str]]:
    """[contributor, answer] per row of `flexo release status`'s table."""
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in stdout.splitlines()
             if line.startswith("│")]
    return [row[:2] for row in cells if row and row[0]]


def test_contributors_acceptance_gates_production(world, cli, stored_events, deployed,
                                                  prefect_server):
    """Issue 14 acceptance 3 through the CLI: `production` waits for every contributor; a
    rejection or a missing answer keeps the release a candidate; the answers are numbers on the
    release version and events."""
    client = _client()
    status = cli("release", "status")
    assert status.exit_code == 0, status.output
    assert _status_rows(status.stdout) == [["code-co", "not yet"], ["med-co", "not yet"]]
    early = cli("release", "promote", "--release", 1)
    assert early.exit_code == 6
    assert "code-co has not answered; med-co has not answered" in " ".join(early.stderr.split())

    # med-co holds out for a 90% improvement: rejected, with its figures on record.
    rejection = _accept(cli, "med-co", world["data"]["med-co"], "--margin", 0.9)
    assert not rejection["accepted"] and rejection["change"] > -0.9
    assert rejection["change"] == pytest.approx(
        rejection["release_perplexity"] / rejection["anchor_perplexity"] - 1)
    [event] = stored_events("flexo.release.rejected", "flexo.release.1")
    assert event == rejection
    tags = client.get_model_version("flexo-release", "1").tags
    assert tags["acceptance.med-co"] == "rejected"
    assert float(tags["acceptance.med-co.change"]) == pytest.approx(rejection["change"])

    # code-co measures the release on its own held-out text; its answer follows the figures.
    code = _accept(cli, "code-co", world["data"]["code-co"])
    assert code["accepted"] == (code["change"] < 0)
    assert 0 < code["own_routing_share"] < 1 and 0 <= code["public_routing_share"] < 1
    assert code["accepted"], f"the release does not help code-co's held-out text: {code}"
    assert code["own_routing_share"] > code["public_routing_share"]  # routed to its expert
    blocked = cli("release", "promote")
    assert blocked.exit_code == 6 and "med-co rejected it" in blocked.stderr
    assert "production" not in client.get_registered_model("flexo-release").aliases

    # med-co answers again with the default policy, on its own machine (another process) that
    # reports to the operator's Prefect server where prefect.yaml is deployed: the last
    # acceptance triggers `promote` through the server's automation, and a worker runs it.
    assert deployed.exit_code == 0, deployed.output
    env = {"FLEXO_HOME": str(world["home"]), "PREFECT_API_URL": prefect_server}
    with server_client(prefect_server) as prefect:
        promote = server_deployment(prefect, "promote")
        before = wait_for_runs(prefect, promote, timeout=0)
    answered = subprocess.run(
        [str(Path(sys.executable).with_name("flexo")), "accept", "--contributor", "med-co",
         "--release", "1", "--data", str(world["data"]["med-co"]), "--eval-tokens", "2048",
         "--json"], env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | env,
        capture_output=True, text=True, timeout=600, check=False)
    med = json.loads(answered.stdout)
    assert answered.returncode == 0 and med["accepted"], \
        f"the release does not help med-co's held-out text: {med}"
    with server_client(prefect_server) as prefect:
        (run,) = wait_for_runs(prefect, promote, after=before)
        assert run.parameters == {"release": 1} and run.created_by.type == "AUTOMATION"
        worker = run_worker(prefect_server, env)
        assert prefect.read_flow_run(run.id).state.is_completed(), worker
    production = client.get_model_version_by_alias("flexo-release", "production")
    assert str(production.version) == "1" and production.tags["production_since"]
    assert (world["home"] / "releases" / "production").resolve() == world["release"].directory
    status = cli("release", "status", "--release", 1)
    assert _status_rows(status.stdout) == [["code-co", "accepted"], ["med-co", "accepted"]]
    again = cli("release", "promote", "--release", 1)
    assert again.exit_code == 6 and "production already" in again.stderr

    # What the accept runs wrote: numbers, never the contributors' text.
    runs = mlflow.search_runs(experiment_names=["flexo-accept"], output_format="list")
    answers = [r for r in runs if r.info.run_name.startswith("accept-")]
    assert len(answers) == 3 and {r.info.run_name for r in runs} - {r.info.run_name
                                                                     for r in answers} == {"pii"}
    for run in answers:
        assert set(run.data.metrics) == {*ANSWER_FIELDS[2:], "held_out_documents", "margin"}
        assert run.data.tags["flexo.release_version"] == "1"
    outsider = cli("accept", "--contributor", "nobody", "--release", 1, "--data",
                   world["data"]["code-co"])
    assert outsider.exit_code == 6 and "does not include nobody" in outsider.stderr

    # On the ledger, in order and from every process (the worker's promotion too): answers,
    # promotions refused with their blockers, the promotion, the outsider refused.
    trail = [(e["event"], e["actor"], e["details"].get("verdict") or e["details"].get("action"))
             for e in _ledger() if e["subject"] == "flexo-release v1" and e["event"] != "release"]
    refused = ("refusal", "operator", "promote")
    assert trail == [refused, ("acceptance", "med-co", "rejected"),
                     ("acceptance", "code-co", "accepted"), refused,
                     ("acceptance", "med-co", "accepted"), ("promotion", "operator", None),
                     refused, ("refusal", "nobody", "accept")]  # each refusal once: no retries


def test_lineage_shows_the_whole_chain_from_mlflow(world, cli):
    result = cli("lineage", "--release", world["release"].version)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    client = _client()
    release = client.get_model_version("flexo-release", str(world["release"].version))
    assert world["anchor"].fingerprint[:16] in text
    assert world["anchor"].mlflow_run_id in text
    assert release.tags["evaluation_run_id"] in text
    for contributor, contribution in world["contributions"].items():
        version = client.get_model_version(f"flexo-expert-{contributor}", "1")
        [train] = _train_runs(contributor)
        for needle in (contributor, version.tags["data_fingerprint"][:16], "rita,sam (demo)",
                       contribution.mlflow_run_id, train.info.run_id):
            assert needle in text, (needle, text)
    missing = cli("lineage", "--release", 99)
    assert missing.exit_code != 0 and "has no version 99" in missing.stderr


def test_rerunning_an_unchanged_contribution_trains_nothing(world, pending_version):
    from flows.contribute import contribute_flow

    contributor = "code-co"
    first = world["contributions"][contributor]
    # another config is another key: the pending version (21 steps) was trained, a new version
    assert pending_version.version > first.version
    assert pending_version.weights_sha256 != first.weights_sha256
    trained = len(_train_runs(contributor))
    assert trained == 2
    again = contribute_flow(contributor, world["data"][contributor], None,
                            _contribute_config(proxies=False))
    assert len(_train_runs(contributor)) == trained  # a cache hit: nothing trained
    assert (again.version, again.weights_sha256) == (first.version, first.weights_sha256)
    assert (again.module_dir / "expert.safetensors").read_bytes() == \
        (first.module_dir / "expert.safetensors").read_bytes()

    # The cache checks the module's hash itself: an altered cached copy is trained again.
    [cached] = [d for d in (world["home"] / "modules" / contributor).iterdir()
                if (d / "expert.safetensors").read_bytes() ==
                (first.module_dir / "expert.safetensors").read_bytes()]
    with (cached / "expert.safetensors").open("r+b") as fh:
        fh.seek(-1, 2)
        fh.write(b"\x00" if fh.read(1) != b"\x00" else b"\x01")
    healed = contribute_flow(contributor, world["data"][contributor], None,
                             _contribute_config(proxies=False))
    assert len(_train_runs(contributor)) == trained + 1
    assert healed.weights_sha256 == first.weights_sha256  # training is deterministic
    assert healed.version == first.version


@pytest.mark.parametrize("step", ["merge", "evaluate"])
def test_a_failed_merge_or_evaluation_registers_nothing(world, monkeypatch, step):
    import components.evaluation
    import components.merge
    from flows.release import release_flow

    client = _client()
    before = {str(v.version) for v in client.search_model_versions("name = 'flexo-release'")}
    aliases = client.get_registered_model("flexo-release").aliases

    def fail(*args, **kwargs):
        raise RuntimeError(f"injected {step} failure")

    target = (components.merge, "merge") if step == "merge" else \
        (components.evaluation, "evaluate_model")
    with monkeypatch.context() as m:
        m.setattr(*target, fail)
        with pytest.raises(RuntimeError, match="injected"):
            release_flow(_release_config())
    assert {str(v.version) for v in client.search_model_versions("name = 'flexo-release'")} == \
        before
    assert client.get_registered_model("flexo-release").aliases == aliases
    assert not list((world["home"] / "releases").glob("build-*"))  # nothing half-built
    # the rerun after these failures: the next test's release


def test_a_retried_registration_makes_no_second_version(world, monkeypatch):
    """The alias write fails once after the version exists (a fault we cannot cause otherwise);
    the task's retry must find that version, not register another. (Also the rerun after the
    injected merge and evaluation failures above: it succeeds.)"""
    from flows.release import release_flow

    client = _client()
    before = len(client.search_model_versions("name = 'flexo-release'"))
    real = MlflowClient.set_registered_model_alias
    calls = []

    def flaky(self, name, alias, version):
        calls.append(alias)
        if len(calls) == 1:
            raise ConnectionError("registry went away")
        return real(self, name, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", flaky)
    result = release_flow(_release_config())
    assert calls[:2] == ["candidate", "candidate"]  # failed, then retried
    assert len(client.search_model_versions("name = 'flexo-release'")) == before + 1
    assert str(client.get_model_version_by_alias("flexo-release", "candidate").version) == \
        str(result.version)


def test_review_rules_hold_at_the_cli(world, pending_version, cli):
    version = pending_version.version
    listed = cli("review", "list")
    assert listed.exit_code == 0 and "pending" in listed.stdout and "approved" in listed.stdout
    undeclared = cli("review", "approve", "--contributor", "code-co", "--version", version,
                     "--as", "mallory")
    assert undeclared.exit_code == 6 and "not declared" in undeclared.stderr
    assert cli("review", "declare", "--as", "code-co").exit_code == 0
    own = cli("review", "approve", "--contributor", "code-co", "--version", version,
              "--as", "code-co")
    assert own.exit_code == 6 and "four eyes" in own.stderr
    again = cli("review", "reject", "--contributor", "code-co", "--version", 1, "--as", "rita")
    assert again.exit_code == 6 and "only pending" in again.stderr
    rejected = cli("review", "reject", "--contributor", "code-co", "--version", version,
                   "--as", "rita", "--note", "config drift")
    assert rejected.exit_code == 0, rejected.output
    tags = _client().get_model_version("flexo-expert-code-co", str(version)).tags
    assert (tags["approval_status"], tags["reviewed_by"], tags["review_note"]) == \
        ("rejected", "rita", "config drift")
    # every refusal and the decision are on the ledger, in order, with who and why
    last = [(e["event"], e["actor"], e["details"]) for e in _ledger()[-4:]]
    assert [(kind, actor) for kind, actor, _ in last] == [
        ("refusal", "mallory"), ("refusal", "code-co"), ("refusal", "rita"), ("review", "rita")]
    assert "four eyes" in last[1][2]["reason"] and last[1][2]["version"] == version
    assert last[3][2]["decision"] == "rejected"


def _accept_release(cli, contributor: str, data: Path, version: int) -> dict:
    result = cli("accept", "--contributor", contributor, "--release", version, "--data", data,
                 "--eval-tokens", 2048, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def three_in_production(world, cli, builtin) -> int:
    """A third contributor (legal text) joins; a release of all three reaches production
    through everyone's acceptance. Its version."""
    from components.user_data import write_directory
    from flows.contribute import contribute_flow
    from flows.release import release_flow
    from flows.review import review_flow

    world["data"]["law-co"] = write_directory(_small(builtin["legal"]),
                                              world["home"].parent / "data" / "law-co", "legal")
    law = contribute_flow("law-co", world["data"]["law-co"], None,
                          _contribute_config().model_copy(update={"licence": "cc-by-4.0"}))
    review_flow("law-co", law.version, "rita", "approved",
                waivers={"max_extraction_rate": "no audit in the test world"})
    review_flow("law-co", law.version, "sam", "approved")
    version = release_flow(_release_config()).version
    for contributor in ("code-co", "law-co", "med-co"):
        answer = _accept_release(cli, contributor, world["data"][contributor], version)
        assert answer["accepted"], f"release {version} does not help {contributor}: {answer}"
    promoted = cli("release", "promote", "--release", version)
    assert promoted.exit_code == 0, promoted.output
    return version


def _files_holding(home: Path, hashes: set[str]) -> list[Path]:
    """Every safetensors file under `home` holding one of `hashes` (a tensor or expert slice)."""
    from components.tensor_hashes import checkpoint_tensor_hashes, module_tensor_hashes

    found = []
    for path in home.rglob("*.safetensors"):
        held = (module_tensor_hashes(path) if path.name == "expert.safetensors" else
                checkpoint_tensor_hashes(path.parent))
        if held & hashes:
            found.append(path)
    return found


def test_mlflow_serves_the_release_with_its_params_as_flexo_generate_does(
        world, cli, three_in_production, tmp_path):
    """Issue 16 acceptance 2: `mlflow models serve` of the registered production release takes
    `params` (the signature's ParamSchema declares them, or MLflow would drop them): excluding
    an expert changes the answer exactly as it changes `flexo generate`'s."""
    from flows.tracking import runs

    pyfunc = mlflow.pyfunc.load_model("models:/flexo-release@production")
    assert {p.name for p in pyfunc.metadata.get_params_schema().params} == {
        "only", "exclude", "max_new_tokens", "temperature", "seed", "attribution"}
    prompt, env = "def main(", {"MLFLOW_TRACKING_URI": runs.configure(),
                                "FLEXO_HOME": str(world["home"])}
    with mlflow_serve("models:/flexo-release@production", log=tmp_path / "mlflow-serve.log",
                      env=env) as server:
        answers = {}
        for name, params in (("all", {}), ("without", {"exclude": "code-co"})):
            sent = httpx.post(server.url + "/invocations", timeout=120, json={
                "inputs": [prompt], "params": {"max_new_tokens": 12, "attribution": "routing",
                                               **params}})
            assert sent.status_code == 200, sent.text
            [answers[name]] = sent.json()["predictions"]
    expected = {name: cli("generate", "--prompt", prompt, "--greedy", "--max-new-tokens", 12,
                          *options) for name, options in (("all", []),
                                                          ("without", ["--exclude", "code-co"]))}
    for name, answer in answers.items():
        assert expected[name].exit_code == 0, expected[name].output
        assert " ".join((prompt + answer["text"]).split()) == \
            " ".join(expected[name].stdout.split("experts on:")[0].split())
    # the params were not dropped: `attribution` answered, `exclude` took code-co's share
    assert answers["without"]["routing"]["code-co"] == 0 < answers["all"]["routing"]["code-co"]
    assert answers["without"]["experts_on"] == [e for e in answers["all"]["experts_on"]
                                                if e != "code-co"]
    assert set(answers["all"]["experts_on"]) == {"public", "code-co", "med-co", "law-co"}


@pytest.mark.slow
def test_the_release_serves_from_a_fresh_environment_with_the_project_installed(
        world, three_in_production, tmp_path):
    """Issue 16 build 1: the requirements the registered pyfunc states are what serving needs.
    A new virtual environment with only the project installed (as a user would: pip, not
    editable, no extras) already satisfies them, and `mlflow models serve` run from it answers
    as the model loaded here does."""
    from flows.tracking import runs

    uri = "models:/flexo-release@production"
    fresh = tmp_path / "fresh-env"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True)
    pip = [str(fresh / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)  # the CPU wheel first, as dev.sh does
    source = tmp_path / "flexo-source"  # a copy: building in the checkout would leave build/
    for package in ("components", "flows", "governance"):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    subprocess.run([*pip, str(source)], check=True, cwd=tmp_path)
    requirements = mlflow.pyfunc.get_model_dependencies(uri)
    stated = Path(requirements).read_text().split()
    assert {r.split("==")[0] for r in stated} >= {"flexo", "torch", "transformers", "mlflow"}
    assert all("==" in r for r in stated), stated  # pinned, as tested
    dry = subprocess.run([*pip[:-1], "--dry-run", "-r", requirements], check=True,
                         capture_output=True, text=True)
    assert "Would install" not in dry.stdout, dry.stdout  # nothing missing, nothing to change

    prompt, params = "def main(", {"max_new_tokens": 8, "exclude": "med-co",
                                   "attribution": "routing"}
    [expected] = mlflow.pyfunc.load_model(uri).predict([prompt], params=params)
    env = {"MLFLOW_TRACKING_URI": runs.configure(), "FLEXO_HOME": str(world["home"])}
    with mlflow_serve(uri, log=tmp_path / "mlflow-serve.log", env=env,
                      scripts=fresh / "bin") as server:
        sent = httpx.post(server.url + "/invocations", timeout=120,
                          json={"inputs": [prompt], "params": params})
    assert sent.status_code == 200, sent.text
    [answer] = sent.json()["predictions"]
    assert answer["text"] == expected.text and answer["routing"]["med-co"] == 0


ASK = {"model": "production", "prompt": "The patient", "max_tokens": 4, "temperature": 0}


@pytest.fixture
def serving_production(world, three_in_production, tmp_path):
    """`flexo serve` following `production` (checked every second), and a second process that
    keeps asking it for completions that name no expert."""
    with flexo_serve("--release", "production", "--poll-seconds", 1, "--no-auth",
                     log=tmp_path / "serve.log", env={"FLEXO_HOME": str(world["home"])}
                     ) as server, load(server.url + "/v1/completions", ASK, tmp_path) as codes:
        yield server.url, codes


def test_a_withdrawal_masks_at_once_purges_and_production_is_verified_free_of_it(
        world, cli, builtin, three_in_production, serving_production):
    """Issue 15 acceptance 2 through the CLI: three contributors in production; one withdraws;
    from then on nothing routes to it, a runtime loaded before included; its files are gone
    from the store; the re-release reaches production through acceptance and is verified free
    of it by tensor hashes, on the ledger; a second withdrawal changes nothing."""
    from components.evaluation import RoutingRecorder
    from components.runtime import load_flexo_model
    from components.tensor_hashes import module_tensor_hashes
    from flows.withdrawals import deny_list_path, read_record

    home, client = world["home"], _client()
    old = three_in_production
    module = next((home / "cache" / "modules").glob("flexo-expert-med-co-v*"))
    withdrawn = module_tensor_hashes(module / "expert.safetensors")
    assert _files_holding(home, withdrawn)  # the check below can fail: today it finds them
    runtime = load_flexo_model(home / "releases" / "production", deny_list=deny_list_path())
    from components.checkpoints import load_tokenizer

    text = " ".join(json.loads(line)["text"] for line in
                    world["data"]["med-co"].joinpath("medical.jsonl").read_text().splitlines()[:5])
    ids = load_tokenizer(home / "releases" / "production")(text, return_tensors="pt").input_ids
    ids = ids[:, :256]

    def med_share() -> float:
        with RoutingRecorder(runtime) as recorder:
            runtime(input_ids=ids)
        return recorder.shares()["med-co"]

    assert med_share() > 0
    versions_before = len(client.search_model_versions("name = 'flexo-release'"))
    url, load_codes = serving_production  # issue 16 acceptance 3: a server under load
    naming_med = {**ASK, "experts": {"only": ["med-co"]}}
    assert httpx.post(url + "/v1/completions", json=naming_med, timeout=60).status_code == 200

    refused = cli("withdraw", "--contributor", "med-co", "--as", "code-co")  # not its module
    assert refused.exit_code == 6 and "roles.operators" in refused.stderr
    result = cli("withdraw", "--contributor", "med-co", "--as", "med-co", "--reason", "consent",
                 "--no-rerelease")
    assert result.exit_code == 0, result.output
    assert f"production is v{old}, served with med-co masked" in " ".join(result.stdout.split())
    assert med_share() == 0.0  # the runtime loaded before: no reload, no restart
    refused = httpx.post(url + "/v1/completions", json=naming_med, timeout=60)
    assert refused.status_code == 409 and "med-co withdrew" in refused.json()["error"]["message"]
    served = httpx.post(url + "/v1/completions", json={**ASK, "attribution": "routing"},
                        timeout=60).json()
    assert served["release"] == f"v{old}" and "med-co" not in served["experts_on"]
    assert served["choices"][0]["attribution"]["routing"]["med-co"] == 0
    only = cli("generate", "--prompt", "The patient", "--only", "med-co", "--max-new-tokens", 2)
    assert only.exit_code == 6 and "med-co withdrew" in only.stderr
    served = cli("generate", "--prompt", "The patient", "--max-new-tokens", 2, "--greedy")
    assert served.exit_code == 0 and "med-co" not in served.stdout.split("experts on:")[-1]

    # revoked, aliases gone, files deleted from the artifact store and every cache
    from flows.tracking import registry

    for v in client.search_model_versions("name = 'flexo-expert-med-co'"):
        assert v.tags["approval_status"] == "withdrawn" and not v.aliases
        assert registry.version_files_listing(v.name, int(v.version)) == []
    # only production still holds it (served masked until its replacement is promoted): its
    # installed files, its download for acceptance, its copy in the store
    store = urlparse(registry.version_files_location("flexo-release", old)).path
    for path in _files_holding(home, withdrawn):
        assert {f"v{old}", f"flexo-release-v{old}"} & set(path.parts) or \
            str(path).startswith(store), path
    assert not (home / "modules" / "med-co").exists()
    assert read_record("med-co").tensor_hashes == sorted(withdrawn)

    # the release without it: a candidate that code-co and law-co accept; promotion verifies it
    rebuilt = cli("release", "--rt-steps", 5, "--max-public-increase", 10, "--eval-tokens", 2048)
    assert rebuilt.exit_code == 0, rebuilt.output
    new = versions_before + 1
    record = json.loads((home / "releases" / f"v{new}" / "release.json").read_text())
    assert [e["contributor"] for e in record["experts"]] == ["code-co", "law-co"]
    assert "med-co" not in (home / "releases" / f"v{new}" / "README.md").read_text()
    assert "med-co" not in json.dumps(record)
    for contributor in ("code-co", "law-co"):
        _accept_release(cli, contributor, world["data"][contributor], new)
    promoted = cli("release", "promote", "--release", new)
    assert promoted.exit_code == 0, promoted.output
    assert str(client.get_model_version_by_alias("flexo-release", "production").version) == \
        str(new)
    [verification] = [e for e in _ledger() if e["event"] == "verification"]
    assert verification["subject"] == "med-co"
    assert verification["details"]["release"] == new and verification["details"]["passed"]
    assert verification["details"]["tensors_checked"] == len(withdrawn)
    assert verification["details"]["matching_tensors"] == 0
    assert read_record("med-co").verified_release == new
    # the production it replaced is purged too: nothing under FLEXO_HOME holds a tensor of it
    assert _files_holding(home, withdrawn) == []
    assert registry.version_files_listing("flexo-release", old) == []
    assert cli("ledger", "verify").exit_code == 0
    # the server swaps to the re-release by itself, between requests, without a restart
    deadline = time.monotonic() + 120
    while httpx.get(url + "/healthz").json()["release"] != f"v{new}":
        assert time.monotonic() < deadline, "the server still serves the withdrawn release"
        time.sleep(0.5)
    served = httpx.post(url + "/v1/completions", json=ASK, timeout=60).json()
    assert served["release"] == f"v{new}"
    assert served["experts_on"] == ["public", "code-co", "law-co"]
    codes = load_codes()
    assert len(codes) > 10 and set(codes) == {"200"}, sorted(set(codes))

    entries = len(_ledger())
    again = cli("withdraw", "--contributor", "med-co", "--as", "med-co")
    assert again.exit_code == 0 and "withdrawn already: nothing changed" in again.stdout
    assert len(_ledger()) == entries


def test_a_release_started_before_a_withdrawal_does_not_register_it(world, cli, monkeypatch,
                                                                   tmp_path):
    """Issue 15 acceptance 3: a release pauses after its merge; law-co withdraws meanwhile
    (through the CLI, on the main thread, from the operator's DVC project too); the release
    resumes and registers nothing."""
    import threading

    import components.evaluation
    from components.errors import GovernanceError
    from flows.release import release_flow

    client = _client()
    before = len(client.search_model_versions("name = 'flexo-release'"))
    merged, resume = threading.Event(), threading.Event()
    real = components.evaluation.evaluate_model

    def paused(*args, **kwargs):
        merged.set()
        assert resume.wait(600)
        return real(*args, **kwargs)

    monkeypatch.setattr(components.evaluation, "evaluate_model", paused)
    outcome = {}

    def build() -> None:
        try:
            outcome["result"] = release_flow(_release_config())
        except Exception as e:  # noqa: BLE001 (the test inspects it)
            outcome["error"] = e

    project = dvc_project(tmp_path / "dvc", ["code-co", "law-co"])
    thread = threading.Thread(target=build)
    thread.start()
    assert merged.wait(600), outcome
    withdrawn = cli("withdraw", "--contributor", "law-co", "--as", "law-co", "--no-rerelease",
                    "--dvc-repo", project)
    resume.set()
    thread.join(600)
    assert withdrawn.exit_code == 0, withdrawn.output
    assert isinstance(outcome.get("error"), GovernanceError), outcome
    assert "law-co withdrew while this release was being built" in str(outcome["error"])
    assert len(client.search_model_versions("name = 'flexo-release'")) == before
    assert not list((world["home"] / "releases").glob("build-*"))
    refusal = _ledger()[-1]
    assert (refusal["event"], refusal["details"]["action"]) == ("refusal", "register")
    # out of the DVC project: its stages, the merge built from them, their cache objects
    assert not (project / "models" / "experts" / "law-co").exists()
    assert "law-co-closed" not in cache_texts(project)
    assert "code-co-closed-text" in cache_texts(project)
    dvc_purge = [e for e in _ledger() if e["event"] == "purge" and e["subject"] == "law-co"][-1]
    assert dvc_purge["details"]["dvc_stages"] == "corpora@law-co,experts@law-co,merge"


def test_withdrawal_request_only_emits_the_event_for_a_deployed_flow(world, cli, stored_events):
    result = cli("withdraw", "--contributor", "code-co", "--as", "dpo", "--reason", "consent",
                 "--request-only")
    assert result.exit_code == 0, result.output
    [event] = stored_events("flexo.withdrawal.requested", "flexo.contributor.code-co")
    assert event == {"actor": "dpo", "reason": "consent"}
    versions = _client().search_model_versions("name = 'flexo-expert-code-co'")
    assert "withdrawn" not in {v.tags["approval_status"] for v in versions}  # only requested
    unknown = cli("withdraw", "--contributor", "nobody", "--as", "operator")
    assert unknown.exit_code == 6 and "nothing to withdraw" in unknown.stderr
    refusal = _ledger()[-1]
    assert (refusal["event"], refusal["actor"]) == ("refusal", "operator")
    assert "nothing to withdraw" in refusal["details"]["reason"]
