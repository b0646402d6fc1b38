"""`torchrun --nproc_per_node 2 -m flows expert train`: two processes on one global batch train the
module one process trains (issue 17 acceptance 4), and rank 0 alone writes it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from governance.manifest import ExpertManifest

STEP = re.compile(r"expert\[legal\]: step (\d+)/\d+ \(loss ([0-9.]+)")


def _train(launcher: list[str], anchor: Path, out: Path, home: Path) -> subprocess.CompletedProcess:
    args = ["expert", "train", "--contributor", "legal", "--domain", "legal", "--anchor", anchor,
            "--out", out, "--steps", 16, "--router-docs", 100]
    env = {**os.environ, "FLEXO_HOME": str(home), "FLEXO_PROGRESS_BARS": "0"}
    return subprocess.run([*launcher, "-m", "flows", *map(str, args)], env=env, text=True,
                          capture_output=True, timeout=900, check=False)


def _torchrun(processes: int) -> list[str]:
    return [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node",
            str(processes)]


def _loss_curve(home: Path, name: str) -> dict[int, float]:
    [log] = home.glob(f"logs/{name}")
    return {int(s): float(v) for s, v in STEP.findall(log.read_text())}


def test_two_processes_train_the_module_that_one_process_trains(tiny_anchor, tmp_path):
    one = _train([sys.executable], tiny_anchor, tmp_path / "one", tmp_path / "home-one")
    assert one.returncode == 0, one.stderr[-3000:]
    two = _train(_torchrun(2), tiny_anchor, tmp_path / "two", tmp_path / "home-two")
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("expert module for legal written") == 1  # rank 0 speaks, once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home-one", "home-two", "one", "two"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["expert.safetensors",
                                                                    "manifest.json"]
    assert len(list((tmp_path / "home-two" / "logs").glob("expert-*rank1.log"))) == 1

    # the same loss at every step (the log keeps 3 decimals), the same final loss and weights
    curves = (_loss_curve(tmp_path / "home-one", "expert-*.log"),
              _loss_curve(tmp_path / "home-two", "expert-*-rank0.log"))
    assert sorted(curves[0]) == sorted(curves[1]) == list(range(1, 17))
    assert all(abs(curves[0][s] - curves[1][s]) <= 2e-3 for s in curves[0]), curves
    manifests = [ExpertManifest.read(tmp_path / d) for d in ("one", "two")]
    assert abs(manifests[0].metrics["final_loss"] - manifests[1].metrics["final_loss"]) < 1e-3
    assert manifests[0].metrics["train_tokens"] == manifests[1].metrics["train_tokens"]
    weights = [load_file(tmp_path / d / "expert.safetensors") for d in ("one", "two")]
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        if name.endswith("router_public"):  # frozen: the anchor's, bit for bit
            assert torch.equal(tensor, weights[1][name]), name
        else:  # trained: the same update, up to the order gradients were summed in
            assert torch.allclose(tensor, weights[1][name], atol=1e-4), name
    # and the training moved them (a module that did not train would match trivially)
    assert not torch.allclose(weights[0]["layers.0.router"], weights[1]["layers.0.router_public"])


def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_training(
        tiny_anchor, tmp_path):
    three = _train(_torchrun(3), tiny_anchor, tmp_path / "three", tmp_path / "home")
    assert three.returncode != 0
    assert "error: a batch of 16 rows does not split over 3 processes" in three.stderr
    assert not (tmp_path / "three").exists() and not list(tmp_path.glob(".three*"))


@pytest.mark.slow  # two tiny anchors trained (~3 minutes on 2 cores)
def test_two_processes_train_the_anchor_that_one_process_trains(tmp_path):
    def train(launcher: list[str], name: str) -> subprocess.CompletedProcess:
        args = ["anchor", "train", "--preset", "tiny", "--out", tmp_path / name]
        env = {**os.environ, "FLEXO_HOME": str(tmp_path / f"home-{name}"),
               "FLEXO_PROGRESS_BARS": "0"}
        return subprocess.run([*launcher, "-m", "flows", *map(str, args)], env=env, text=True,
                              capture_output=True, timeout=1800, check=False)

    for launcher, name in (([sys.executable], "one"), (_torchrun(2), "two")):
        done = train(launcher, name)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("anchor written to") == 1
    cards = [json.loads((tmp_path / d / "flexo_anchor.json").read_text()) for d in ("one", "two")]
    assert len(cards[0]["losses"]) == len(cards[1]["losses"]) > 0
    assert max(abs(a - b) for a, b in zip(cards[0]["losses"], cards[1]["losses"],
                                          strict=True)) < 2e-3
    assert cards[0]["train_tokens"] == cards[1]["train_tokens"]
