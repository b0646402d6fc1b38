"""`contribute_flow` / `flexo contribute` (issue 4 acceptance 1-2): bad data stops the flow before
training with the failing expectation named; PII is counted, redacted before training, and never
written anywhere: not in reports, logs, Prefect's database or MLflow's store and artifacts."""

import json
import os
import random
from pathlib import Path

import mlflow
import pytest
from pii_samples import PLANTED

from components.builtin_corpora import load_domain, public_mix
from components.documents import Corpus
from components.errors import DataError
from components.pii import screen, scrub
from components.user_data import load_directory

CONTRIBUTOR = "clinic-7"
PLANTED_VALUES = [v for vs in PLANTED.values() for v in vs]


def _clean_docs(n: int) -> list[str]:
    """Literature documents with no PII look-alikes, so planted counts are the only counts."""
    docs = [t for t in load_domain("literature").texts() if not scrub(t)[1] and len(t) > 400]
    return docs[:n]


def _write_jsonl(directory: Path, texts: list[str]) -> Path:
    directory.mkdir(parents=True)
    (directory / "docs.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    return directory


def _bad_inputs(root: Path) -> dict[str, tuple[Path, str]]:
    """Each bad input and the expectation that must name its failure."""
    rng = random.Random(0)
    good = _clean_docs(60)
    cases = {}
    empty = root / "empty"
    empty.mkdir(parents=True)
    cases["empty"] = (empty, "enough documents")
    latin1 = root / "latin1"
    latin1.mkdir()
    for i, text in enumerate(good[:40]):
        (latin1 / f"{i}.txt").write_bytes((text + " café über naïve").encode("latin-1", "replace"))
    cases["non-utf8"] = (latin1, "valid UTF-8")
    cases["duplicates"] = (_write_jsonl(root / "dup", good[:5] * 12), "few duplicates")
    cases["too-short"] = (_write_jsonl(root / "short", [f"note {i}" for i in range(50)]),
                          "document length")
    garbage = root / "garbage"
    garbage.mkdir()
    controls = [c for c in range(32) if c not in (9, 10, 13)]
    for i in range(30):  # valid UTF-8, but control characters: a binary file renamed .txt
        (garbage / f"{i}.txt").write_bytes(bytes(rng.choices(controls, k=3000)))
    cases["binary"] = (garbage, "printable text")
    return cases


def _planted_dir(root: Path) -> tuple[Path, list[str]]:
    texts = _clean_docs(300)
    for i, value in enumerate(PLANTED_VALUES):  # one value per document, at the start
        texts[i] = f"Reference {value} on file. " + texts[i]
    return _write_jsonl(root, texts), texts


def _training_runs(home: Path) -> int:
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    if mlflow.get_experiment_by_name("flexo-contribute") is None:
        return 0
    runs = mlflow.search_runs(experiment_names=["flexo-contribute"],
                              filter_string="tags.mlflow.runName = 'train'")
    return len(runs)


def _versions(home: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    return client.search_model_versions(f"name = 'flexo-expert-{CONTRIBUTOR}'")


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FLEXO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "home"


def test_bad_data_stops_the_flow_before_training(home, tmp_path, tiny_anchor):
    from flows.contribute import contribute_flow

    for name, (data, expectation) in _bad_inputs(tmp_path / "bad").items():
        with pytest.raises(DataError, match="data checks failed") as failure:
            contribute_flow(CONTRIBUTOR, data, tiny_anchor)
        assert expectation in str(failure.value), (name, str(failure.value))
    assert _training_runs(home) == 0
    assert _versions(home) == []
    assert not list((home / "contributions").rglob("*.safetensors"))


def test_pii_policy_fail_stops_before_training(home, tmp_path, tiny_anchor):
    from flows.contribute import ContributeConfig, contribute_flow

    data, _ = _planted_dir(tmp_path / "data")
    with pytest.raises(DataError, match=r"PII found \(11 values") as failure:
        contribute_flow(CONTRIBUTOR, data, tiny_anchor, ContributeConfig(pii="fail"))
    assert not any(v in str(failure.value) for v in PLANTED_VALUES)
    assert _training_runs(home) == 0 and _versions(home) == []


def test_contribute_redacts_pii_publishes_pending_and_writes_no_raw_text(
        cli, home, tmp_path, tiny_anchor, caplog, stored_events):
    data, texts = _planted_dir(tmp_path / "data")
    result = cli("contribute", "--contributor", CONTRIBUTOR, "--data", data,
                 "--anchor", tiny_anchor, "--steps", 30, "--router-docs", 50,
                 "--audit-documents", 40, "--audit-samples", 2, "--licence", "CC-BY-4.0")
    assert result.exit_code == 0, result.output
    assert "version 1 (pending review)" in result.stdout

    [version] = _versions(home)
    module = next((home / "contributions" / CONTRIBUTOR).glob("*/module"))
    manifest = json.loads((module / "manifest.json").read_text())
    anchor_card = json.loads((tiny_anchor / "flexo_anchor.json").read_text())
    assert version.tags["approval_status"] == "pending"
    assert version.tags["weights_sha256"] == manifest["weights_sha256"]
    assert version.tags["anchor_fingerprint"] == anchor_card["fingerprint"]
    [event] = stored_events("flexo.expert.published", f"flexo.expert.{CONTRIBUTOR}")
    assert event == {"registered_model": f"flexo-expert-{CONTRIBUTOR}", "version": 1,
                     "weights_sha256": manifest["weights_sha256"]}

    # Counts by kind are exact, and training saw the redacted corpus, not the raw one.
    assert manifest["data_checks"]["pii"]["counts"] == {k: len(v) for k, v in PLANTED.items()}
    raw = load_directory(data)
    redacted, _ = screen([d.text for d in raw.documents], "redact")
    seen = Corpus.from_texts("x", zip(redacted, [d.source for d in raw.documents], strict=True))
    assert manifest["data_fingerprint"]["digest"] == seen.fingerprint().digest
    assert version.tags["data_fingerprint"] == seen.fingerprint().digest != raw.fingerprint().digest

    # Every step has its child run under the flow's run; the audit and evaluation are recorded.
    runs = mlflow.search_runs(experiment_names=["flexo-contribute"])
    children = runs[runs["tags.mlflow.parentRunId"] == version.run_id]
    assert set(children["tags.mlflow.runName"]) == {"validate", "pii", "proxies", "train",
                                                    "evaluate", "audit"}
    assert manifest["privacy_audit"]["documents"] == 40
    # What the policy's gates judge at review, published as tags from the manifest's figures.
    assert manifest["licence"] == version.tags["licence"] == "cc-by-4.0"
    assert float(version.tags["own_change"]) == manifest["metrics"]["local.domain_change"]
    assert float(version.tags["public_change"]) == manifest["metrics"]["local.public_change"]
    assert float(version.tags["extraction_rate"]) == manifest["privacy_audit"]["rate"]
    assert "dp_epsilon" not in version.tags  # trained without differential privacy

    # Its proxy: public documents of the anchor's pool, by id, with the numbers that chose them.
    proxies = manifest["proxies"]
    pool = public_mix()
    assert proxies["pool_fingerprint"] == pool.fingerprint().digest == anchor_card["corpus"]["digest"]
    assert set(proxies["ids"]) <= {d.digest for d in pool.documents}
    assert not set(proxies["ids"]) & {d.digest for d in raw.documents}
    assert proxies["scores"] == sorted(proxies["scores"], reverse=True)
    assert proxies["threshold"] == proxies["scores"][-1] and proxies["tokens"] >= 50_000
    assert 0.5 < proxies["auc"] <= 1 and proxies["own_documents"] > 0
    assert "proxy: " in result.stdout
    assert manifest["metrics"]["local.domain_perplexity"] > 0

    # No planted value and no sampled sentence of the corpus anywhere flexo or Prefect wrote.
    rng = random.Random(1)
    sentences = [s.strip() for t in rng.sample(texts, 20) for s in t.split(".")
                 if len(s.strip()) > 40][:40]
    needles = [v.encode() for v in PLANTED_VALUES] + [s.encode() for s in sentences]
    assert len(sentences) >= 20
    written = [p for root in (home, Path(os.environ["PREFECT_HOME"]))
               for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in written)
    for path in written:
        blob = path.read_bytes()
        leaked = [n for n in needles if n in blob]
        assert not leaked, (path, leaked[:2])
    streams = (result.stdout + result.stderr + caplog.text).encode()
    assert not [n for n in needles if n in streams]
