"""What a withdrawal relies on below the flows (issue 15, withdrawal): a loaded runtime obeys the
deny-list on its next call, and tensor hashes find a module's weights inside a merge."""

from __future__ import annotations

import pytest
import torch
from conftest import EXPERT_DOMAINS

from components.checkpoints import load_config, load_tokenizer
from components.deny_list import DenyList
from components.errors import IntegrityError
from components.evaluation import RoutingRecorder
from components.router import routers, set_active
from components.runtime import apply_selection, load_flexo_model
from components.tensor_hashes import checkpoint_tensor_hashes, module_tensor_hashes

PROMPT = "The court held that the contract was void because the parties had not agreed"


def _shares(model, ids) -> dict[str, float]:
    with torch.no_grad(), RoutingRecorder(model) as recorder:
        model(input_ids=ids)
    return recorder.shares()


def test_a_loaded_runtime_masks_a_denied_expert_on_its_next_call(merged, tmp_path):
    deny_list = tmp_path / "deny-list.json"
    model = load_flexo_model(merged, deny_list=deny_list)  # no file yet: nothing denied
    ids = load_tokenizer(merged)(PROMPT, return_tensors="pt").input_ids
    before = _shares(model, ids)
    assert before["legal"] > 0

    DenyList().deny("legal", "t", "legal").write(deny_list)  # no reload, no restart
    after = _shares(model, ids)
    assert after["legal"] == 0.0 and after["code"] > 0
    # what it routes is exactly the model with legal switched off
    reference = load_flexo_model(merged)
    apply_selection(reference, exclude=["legal"])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits)
    # no caller's selection brings it back, and generation obeys it too
    set_active(model, [True] * 4)
    assert _shares(model, ids)["legal"] == 0.0
    apply_selection(model, only=["legal"])
    assert all(not r.usable()[1 + EXPERT_DOMAINS.index("legal")] for r in routers(model))
    model.generate(ids, max_new_tokens=3, do_sample=False)

    DenyList().write(deny_list)  # read again each call, not cached: lifted, it routes again
    apply_selection(model)
    assert _shares(model, ids)["legal"] == pytest.approx(before["legal"])

    deny_list.write_text("{not json")  # an unreadable list stops the runtime: fail closed
    with pytest.raises(IntegrityError, match="deny-list .* unreadable"):
        _shares(model, ids)


def test_tensor_hashes_find_each_module_in_a_merge_and_nowhere_else(merged, modules, tiny_anchor,
                                                                     cli, tmp_path):
    held = checkpoint_tensor_hashes(merged)
    anchor = checkpoint_tensor_hashes(tiny_anchor)
    without_legal = tmp_path / "without-legal"
    result = cli("merge", "--anchor", tiny_anchor, "--expert", modules["code"], "--expert",
                 modules["literature"], "--out", without_legal)
    assert result.exit_code == 0, result.output
    rest = checkpoint_tensor_hashes(without_legal)
    ffn_tensors = 2 * load_config(tiny_anchor).num_hidden_layers  # gate_up and down per layer
    for domain in EXPERT_DOMAINS:
        own = module_tensor_hashes(modules[domain] / "expert.safetensors")
        assert len(held & own) >= ffn_tensors  # every FFN of the module, found by its slice
        assert not anchor & own  # the anchor holds none of a module's own tensors
        assert bool(rest & own) == (domain != "legal")
