import pytest
import torch
from safetensors.torch import load_file, save_file

from components.anchor import AnchorCard, read_fingerprint
from components.checkpoints import load_causal_lm
from components.errors import CheckpointError
from components.fingerprint import fingerprint_checkpoint, fingerprint_tensors


def _one_ulp_up(t: torch.Tensor, index: int = 0) -> torch.Tensor:
    t = t.clone()
    flat = t.view(-1)
    flat[index] = torch.nextafter(flat[index], torch.tensor(float("inf"), dtype=t.dtype))
    return t


def test_fingerprint_is_identical_after_save_and_load(tiny_anchor):
    card = AnchorCard.read(tiny_anchor)
    loaded = load_causal_lm(tiny_anchor)
    assert fingerprint_tensors(loaded.state_dict()) == card.weights_fingerprint
    rows = load_file(tiny_anchor / "public_router.safetensors")
    assert fingerprint_tensors({**loaded.state_dict(), **rows}) == card.fingerprint
    assert fingerprint_checkpoint(tiny_anchor) == card.fingerprint
    assert read_fingerprint(tiny_anchor) == card.fingerprint


def test_one_ulp_in_any_shared_tensor_changes_the_fingerprint(tiny_anchor):
    state = load_causal_lm(tiny_anchor).state_dict()
    base = fingerprint_tensors(state)
    seen = {base}
    for name in state:  # every tensor: embeddings, attention, q/k norms, FFN, norms, lm_head
        changed = dict(state, **{name: _one_ulp_up(state[name], index=state[name].numel() // 2)})
        assert not torch.equal(changed[name], state[name])
        digest = fingerprint_tensors(changed)
        assert digest not in seen, name
        seen.add(digest)


@pytest.mark.parametrize(("file", "key"), [("model.safetensors", "lm_head.weight"),
                                          ("public_router.safetensors", "embed/layers.1")])
def test_a_checkpoint_edited_on_disk_is_refused(tiny_anchor, tmp_path, file, key):
    """One ulp in the weights or in r_pub: both are covered by the anchor fingerprint."""
    import shutil

    copy = tmp_path / "anchor"
    shutil.copytree(tiny_anchor, copy)
    weights = load_file(copy / file)
    weights[key] = _one_ulp_up(weights[key])
    save_file(weights, copy / file, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="modified after it was written"):
        read_fingerprint(copy)
