"""`torchrun --nproc_per_node 2 -m flows expert train`: two processes on one global batch train the
module one process trains (issue 17 acceptance 4), whether each holds a copy of the model (DDP) or
half of it (`--fsdp`, FSDP2), and rank 0 alone writes it; a sharded run killed mid-training
resumes from its checkpoint to the module an uninterrupted run trains."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from governance.manifest import ExpertManifest

STEP = re.compile(r"expert\[legal\]: step (\d+)/\d+ \(loss ([0-9.]+)")


def _command(launcher: list[str], anchor: Path, out: Path, steps: int = 16,
             extra: tuple[str, ...] = ()) -> list[str]:
    args = ["expert", "train", "--contributor", "legal", "--domain", "legal", "--anchor", anchor,
            "--out", out, "--steps", steps, "--router-docs", 100, *extra]
    return [*launcher, "-m", "flows", *map(str, args)]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "FLEXO_HOME": str(home), "FLEXO_PROGRESS_BARS": "0"}


def _train(launcher: list[str], anchor: Path, out: Path, home: Path, steps: int = 16,
           extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(_command(launcher, anchor, out, steps, extra), env=_env(home), text=True,
                          capture_output=True, timeout=900, check=False)


def _torchrun(processes: int) -> list[str]:
    return [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node",
            str(processes)]


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, parents first (torchrun starts each rank in its own session,
    so killing torchrun's process group would leave the ranks training)."""
    tree, i = [pid], 0
    while i < len(tree):
        for children in Path(f"/proc/{tree[i]}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # a process that just ended
                tree += [int(c) for c in children.read_text().split()]
        i += 1
    return tree


def _loss_curve(home: Path, name: str) -> dict[int, float]:
    [log] = home.glob(f"logs/{name}")
    return {int(s): float(v) for s, v in STEP.findall(log.read_text())}


def _same_weights(one: Path, two: Path) -> None:
    weights = [load_file(d / "expert.safetensors") for d in (one, two)]
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        if name.endswith("router_public"):  # frozen: the anchor's, bit for bit
            assert torch.equal(tensor, weights[1][name]), name
        else:  # trained: the same update, up to the order gradients were summed in
            assert torch.allclose(tensor, weights[1][name], atol=1e-4), name
    # and the training moved them (a module that did not train would match trivially)
    assert not torch.allclose(weights[0]["layers.0.router"], weights[1]["layers.0.router_public"])


@pytest.fixture(scope="module")
def one_process(tiny_anchor, tmp_path_factory) -> Path:
    """The module one process trains in 16 steps; its FLEXO_HOME beside it."""
    root = tmp_path_factory.mktemp("one-process")
    one = _train([sys.executable], tiny_anchor, root / "one", root / "home-one")
    assert one.returncode == 0, one.stderr[-3000:]
    return root


@pytest.mark.parametrize("sharding", [(), ("--fsdp",)], ids=["ddp", "fsdp"])
def test_two_processes_train_the_module_that_one_process_trains(tiny_anchor, one_process,
                                                                 sharding, tmp_path):
    two = _train(_torchrun(2), tiny_anchor, tmp_path / "two", tmp_path / "home-two",
                 extra=sharding)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("expert module for legal written") == 1  # rank 0 speaks, once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home-two", "two"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["expert.safetensors",
                                                                    "manifest.json"]
    assert len(list((tmp_path / "home-two" / "logs").glob("expert-*rank1.log"))) == 1

    # the same loss at every step (the log keeps 3 decimals), the same final loss and weights
    curves = (_loss_curve(one_process / "home-one", "expert-*.log"),
              _loss_curve(tmp_path / "home-two", "expert-*-rank0.log"))
    assert sorted(curves[0]) == sorted(curves[1]) == list(range(1, 17))
    assert all(abs(curves[0][s] - curves[1][s]) <= 2e-3 for s in curves[0]), curves
    manifests = [ExpertManifest.read(d) for d in (one_process / "one", tmp_path / "two")]
    assert abs(manifests[0].metrics["final_loss"] - manifests[1].metrics["final_loss"]) < 1e-3
    assert manifests[0].metrics["train_tokens"] == manifests[1].metrics["train_tokens"]
    assert manifests[1].training["fsdp"] is bool(sharding)
    _same_weights(one_process / "one", tmp_path / "two")


def test_a_sharded_run_killed_mid_training_resumes_to_the_uninterrupted_module(tiny_anchor,
                                                                                tmp_path):
    """FSDP checkpoints gather the shards whole and a resumed run shards them again: killed
    after its first checkpoint (step 50 of 120), the rerun resumes there and ends where one
    uninterrupted process ends."""
    one = _train([sys.executable], tiny_anchor, tmp_path / "one", tmp_path / "home-one", 120)
    assert one.returncode == 0, one.stderr[-3000:]
    command = _command(_torchrun(2), tiny_anchor, tmp_path / "two", 120, ("--fsdp",))
    saved = tmp_path / ".two.resume" / "state.json"
    run = subprocess.Popen(command, env=_env(tmp_path / "home-two"), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not saved.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in reversed(_process_tree(run.pid)):  # the ranks, then torchrun: the node is gone
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run.wait()
    assert saved.exists() and not (tmp_path / "two").exists()
    again = _train(_torchrun(2), tiny_anchor, tmp_path / "two", tmp_path / "home-two", 120,
                   ("--fsdp",))
    assert again.returncode == 0, again.stderr[-3000:]
    manifests = [ExpertManifest.read(tmp_path / d) for d in ("one", "two")]
    assert manifests[1].metrics["resumed_from_step"] in (50.0, 100.0)
    assert abs(manifests[0].metrics["final_loss"] - manifests[1].metrics["final_loss"]) < 1e-3
    _same_weights(tmp_path / "one", tmp_path / "two")
    assert not saved.parent.exists()  # checkpoints go once the module is written


def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_training(
        tiny_anchor, tmp_path):
    three = _train(_torchrun(3), tiny_anchor, tmp_path / "three", tmp_path / "home")
    assert three.returncode != 0
    assert "error: a batch of 16 rows does not split over 3 processes" in three.stderr
    assert not (tmp_path / "three").exists() and not list(tmp_path.glob(".three*"))


@pytest.mark.slow  # two tiny anchors trained (~3 minutes on 2 cores)
def test_two_processes_train_the_anchor_that_one_process_trains(tiny_anchor, tmp_path):
    """The session's tiny anchor (`flexo anchor train --preset tiny`, one process, seed 0) is
    what DDP and FSDP over two processes train too."""
    def train(launcher: list[str], name: str, *extra: str) -> subprocess.CompletedProcess:
        args = ["anchor", "train", "--preset", "tiny", "--out", tmp_path / name, *extra]
        return subprocess.run([*launcher, "-m", "flows", *map(str, args)],
                              env=_env(tmp_path / f"home-{name}"), text=True,
                              capture_output=True, timeout=1800, check=False)

    for launcher, name, *extra in ((_torchrun(2), "two"), (_torchrun(2), "sharded", "--fsdp")):
        done = train(launcher, name, *extra)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("anchor written to") == 1
    cards = [json.loads((d / "flexo_anchor.json").read_text())
             for d in (tiny_anchor, tmp_path / "two", tmp_path / "sharded")]
    assert cards[0]["preset"] == "tiny"
    for card in cards[1:]:
        assert len(cards[0]["losses"]) == len(card["losses"]) > 0
        assert max(abs(a - b) for a, b in zip(cards[0]["losses"], card["losses"],
                                              strict=True)) < 2e-3
        assert cards[0]["train_tokens"] == card["train_tokens"]


def _contribute(launcher: list[str], anchor: Path, data: Path,
                home: Path) -> subprocess.CompletedProcess:
    args = ["contribute", "--contributor", "clinic-7", "--data", data, "--anchor", anchor,
            "--steps", 16, "--router-docs", 100, "--audit-documents", 0, "--proxy-tokens", 0]
    env = _env(home) | {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
                        "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([*launcher, "-m", "flows", *map(str, args)], env=env, text=True,
                          capture_output=True, timeout=900, check=False)


def test_contribute_under_torchrun_trains_on_every_rank_and_publishes_once(tiny_anchor,
                                                                             tmp_path):
    """Rank 0 runs the flow (one MLflow run, one registry version, one line on the console) and
    both ranks train the module one process trains; run again, the module is cached and rank 0
    tells rank 1 there is nothing to train."""
    import mlflow

    from components.builtin_corpora import load_domain

    data = tmp_path / "data"
    data.mkdir()
    texts = [t for t in load_domain("literature").texts() if len(t) > 400][:200]
    texts[:3] = [f"Write to clerk{i}@example.org first. {t}" for i, t in enumerate(texts[:3])]
    (data / "docs.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))

    one = _contribute([sys.executable], tiny_anchor, data, tmp_path / "home-one")
    assert one.returncode == 0, one.stderr[-3000:]
    two = _contribute(_torchrun(2), tiny_anchor, data, tmp_path / "home-two")
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("published flexo-expert-clinic-7 version 1") == 1

    [module_one] = (tmp_path / "home-one" / "contributions" / "clinic-7").glob("*/module")
    [module_two] = (tmp_path / "home-two" / "contributions" / "clinic-7").glob("*/module")
    manifests = [ExpertManifest.read(m) for m in (module_one, module_two)]
    assert manifests[0].data_fingerprint == manifests[1].data_fingerprint  # redacted alike
    assert abs(manifests[0].metrics["final_loss"] - manifests[1].metrics["final_loss"]) < 1e-3
    _same_weights(module_one, module_two)

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'home-two' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["flexo-contribute"])
    assert sorted(runs["tags.mlflow.runName"]).count("train") == 1  # rank 1 tracked nothing
    assert len(runs[runs["tags.flexo.kind"] == "contribute"]) == 1
    [log_two] = (tmp_path / "home-two" / "logs").glob("contribute-*-rank1.log")
    assert "clerk0@example.org" not in log_two.read_text()

    again = _contribute(_torchrun(2), tiny_anchor, data, tmp_path / "home-two")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "published flexo-expert-clinic-7 version 1" in again.stdout  # the same weights
    client = mlflow.MlflowClient()
    assert len(client.search_model_versions("name = 'flexo-expert-clinic-7'")) == 1
    runs = mlflow.search_runs(experiment_names=["flexo-contribute"])
    assert sorted(runs["tags.mlflow.runName"]).count("train") == 1  # cached: nobody trained
