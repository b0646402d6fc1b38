"""The merge is a plan first (STYLE §4): which output tensor comes from which source tensors,
built from safetensors headers alone, and the same plan the real merge executed."""

from __future__ import annotations

import json

import pytest
from conftest import EXPERT_DOMAINS
from safetensors import safe_open

import components.expert_module
import components.merge
from components.anchor import read_fingerprint
from components.expert_module import ModuleRef, read_header
from components.merge import plan_merge
from components.moe_layout import ROUTER, layer_key
from governance.manifest import ExpertManifest


class _HeadersOnly:
    """safe_open that answers keys, metadata and shapes, and fails the test on any tensor read:
    a spy around the real file (the fault 'a weight was read' has no other observable)."""

    def __init__(self, *args, **kwargs):
        self._file = safe_open(*args, **kwargs)

    def __enter__(self):
        self._open = self._file.__enter__()
        return self

    def __exit__(self, *exc):
        return self._file.__exit__(*exc)

    def keys(self):
        return self._open.keys()

    def metadata(self):
        return self._open.metadata()

    def get_slice(self, key):
        shape = self._open.get_slice(key).get_shape()
        return type("Shape", (), {"get_shape": lambda _self: shape})()

    def get_tensor(self, key):
        pytest.fail(f"the plan read tensor {key}")


def test_plan_reads_headers_only_and_is_the_plan_the_merge_executed(tiny_anchor, modules, merged,
                                                                     monkeypatch):
    monkeypatch.setattr(components.merge, "safe_open", _HeadersOnly)
    monkeypatch.setattr(components.expert_module, "safe_open", _HeadersOnly)
    fingerprint = read_fingerprint(tiny_anchor)
    refs = [ModuleRef(name=d, directory=modules[d],
                      weights_sha256=ExpertManifest.read(modules[d]).weights_sha256)
            for d in EXPERT_DOMAINS]
    plan = plan_merge(tiny_anchor, [read_header(r, fingerprint) for r in refs], 2, fingerprint)
    monkeypatch.undo()

    # The same plan as the merge that wrote `merged` (same anchor, modules, order, top-k).
    recorded = json.loads((merged / "flexo_merge.json").read_text())
    assert plan.digest() == recorded["plan_digest"]
    assert plan.experts == ["public", *EXPERT_DOMAINS] and plan.top_k == 2
    # Every tensor of the merged checkpoint is planned, and nothing else.
    with safe_open(merged / "model.safetensors", framework="pt") as st:
        assert {t.name for t in plan.tensors} == set(st.keys())
    # Expert j's router row comes from module j, in the order given; r_pub from a module's copy.
    layers = len(plan.biases)
    for i in range(layers):
        [rows] = [t for t in plan.tensors if t.name == layer_key(i, ROUTER)]
        assert rows.combine == "stack"
        assert [part[0].key for part in rows.parts] == \
            [f"layers.{i}.router_public"] + [f"layers.{i}.router"] * len(EXPERT_DOMAINS)
        assert [part[0].file for part in rows.parts[1:]] == \
            [str(modules[d] / "expert.safetensors") for d in EXPERT_DOMAINS]
