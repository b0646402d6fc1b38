"""The method's core claims on real modules trained on real text (DESIGN §1)."""

import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from components.builtin_corpora import load_domain
from components.evaluation import evaluate_model
from components.expert_module import WEIGHTS_FILE, file_sha256
from components.expert_training import ExpertConfig, train_expert
from components.moe_layout import DENSE_FFN, DOWN, GATE_UP, ROUTER, fuse_ffn, is_shared, layer_key
from components.runtime import apply_selection, load_flexo_model


@pytest.fixture(scope="module")
def merged_one(tmp_path_factory, cli, tiny_anchor, modules):
    """The literature module alone on the anchor: the contributor's 2-expert model."""
    out = tmp_path_factory.mktemp("one") / "literature"
    result = cli("merge", "--anchor", tiny_anchor, "--expert", modules["literature"], "--out", out)
    assert result.exit_code == 0, result.output
    return out


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_frozen_tensors_stay_bit_identical_and_trainable_ones_change(tiny_anchor, merged_one,
                                                                      modules):
    anchor = load_file(tiny_anchor / "model.safetensors")
    moe = load_file(merged_one / "model.safetensors")
    module = load_file(modules["literature"] / WEIGHTS_FILE)
    layers = sum(1 for k in anchor if k.endswith("mlp.gate_proj.weight"))
    shared = [k for k in anchor if is_shared(k)]
    assert len(shared) == len(anchor) - 3 * layers
    for name in shared:  # embeddings, attention incl. q/k norms, all norms, lm_head
        assert torch.equal(moe[name], anchor[name]), name
    for i in range(layers):
        gate, up, down = (anchor[layer_key(i, n)] for n in DENSE_FFN)
        assert torch.equal(moe[layer_key(i, GATE_UP)][0], fuse_ffn(gate, up))  # public expert
        assert torch.equal(moe[layer_key(i, DOWN)][0], down)
        assert torch.equal(moe[layer_key(i, ROUTER)][0], module[f"layers.{i}.router_public"])
        # trained: slot-1 FFN, r_i and b_i, in every layer
        assert not torch.equal(module[f"layers.{i}.gate_up_proj"], fuse_ffn(gate, up))
        assert (module[f"layers.{i}.down_proj"] != down).float().mean() > 0.5
        r_i = module[f"layers.{i}.router"]
        assert abs(r_i.norm().item() - 1.0) > 1e-3  # init rows are unit vectors
        assert module[f"layers.{i}.bias"].item() < 0  # init 0; trained, kept <= 0


def test_expert_improves_its_domain_and_keeps_public_perplexity(tiny_anchor, merged_one):
    """Tiny preset, seed 0: literature perplexity >= 8% lower; public rises < 5% (measured on
    2026-11-28: literature 203.9 -> 175.5, -13.9%; public 165.3 -> 166.8, +0.9%)."""
    corpora = [load_domain("public").split("test"), load_domain("literature").split("test")]
    before = {r.domain: r.perplexity for r in evaluate_model(tiny_anchor, corpora)}
    after = {r.domain: r.perplexity for r in evaluate_model(merged_one, corpora)}
    assert after["literature:test"] <= 0.92 * before["literature:test"], (before, after)
    assert after["public:test"] < 1.05 * before["public:test"], (before, after)


def test_merge_loads_with_plain_transformers_and_matches_runtime_with_zero_bias(merged, tmp_path):
    plain = AutoModelForCausalLM.from_pretrained(merged).eval()
    assert plain.config.model_type == "flex_olmo" and plain.config.num_experts == 4
    assert plain.config.flexo_experts == ["public", "code", "legal", "literature"]
    ids = torch.randint(0, plain.config.vocab_size, (3, 40), generator=torch.Generator().manual_seed(0))
    # With the trained (negative) biases flexo routes differently from a plain load...
    assert (_logits(load_flexo_model(merged), ids) - _logits(plain, ids)).abs().max() > 1e-4
    # ...and with every bias zero the two are the same model.
    zero = tmp_path / "zero-bias"
    shutil.copytree(merged, zero)
    from safetensors.torch import save_file

    biases = load_file(zero / "flexo_router.safetensors")
    save_file({k: torch.zeros_like(v) for k, v in biases.items()}, zero / "flexo_router.safetensors")
    torch.testing.assert_close(_logits(load_flexo_model(zero), ids), _logits(plain, ids),
                               atol=1e-5, rtol=0)


def test_mask_equals_merge_without_the_expert(cli, tiny_anchor, modules, merged, tmp_path):
    """Same logits within 1e-5: the remaining experts get identical softmax weights and are summed
    in the same order; only fp32 rounding in the routing could differ."""
    model = load_flexo_model(merged)
    ids = torch.randint(0, model.config.vocab_size, (3, 40),
                        generator=torch.Generator().manual_seed(1))
    names = list(modules)
    for j in names:
        rest = [n for n in names if n != j]
        out = tmp_path / f"without-{j}"
        args = [a for n in rest for a in ("--expert", modules[n])]
        result = cli("merge", "--anchor", tiny_anchor, *args, "--out", out)
        assert result.exit_code == 0, result.output
        apply_selection(model, exclude=[j])
        torch.testing.assert_close(_logits(model, ids), _logits(load_flexo_model(out), ids),
                                   atol=1e-5, rtol=0)
    # Every private expert off: top-k falls to 1, the public expert gets weight 1: the anchor.
    apply_selection(model, exclude=names)
    anchor = AutoModelForCausalLM.from_pretrained(tiny_anchor).eval()
    torch.testing.assert_close(_logits(model, ids), _logits(anchor, ids), atol=1e-5, rtol=0)
    apply_selection(model)  # all back on, no reload
    full = _logits(model, ids)
    assert (full - _logits(anchor, ids)).abs().max() > 1e-3


def test_interrupted_training_resumes_to_the_same_module(tiny_anchor, tmp_path):
    """A crash at step 7 of 10 (checkpoint every 5), then a rerun: the weights equal an
    uninterrupted run's, bit for bit."""
    corpus, public = load_domain("medical"), load_domain("public")
    cfg = ExpertConfig(steps=10, checkpoint_every=5, router_init="random", warmup_steps=2)
    (tmp_path / "straight").mkdir()
    straight = train_expert(tiny_anchor, "medical", corpus, public, cfg, tmp_path / "straight",
                            progress=False)

    import components.expert_training as et

    original = et.mixed_sampler
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        sample = original(*args, **kwargs)

        def wrapped(generator):
            calls["n"] += 1
            if calls["n"] == 8:
                raise KeyboardInterrupt  # the fault: a kill mid-run
            return sample(generator)

        return wrapped

    resume = tmp_path / "resume"
    (tmp_path / "first").mkdir()
    et.mixed_sampler = crashing
    try:
        with pytest.raises(KeyboardInterrupt):
            train_expert(tiny_anchor, "medical", corpus, public, cfg, tmp_path / "first",
                         resume_dir=resume, progress=False)
    finally:
        et.mixed_sampler = original
    assert (resume / "state.json").exists()
    (tmp_path / "second").mkdir()
    resumed = train_expert(tiny_anchor, "medical", corpus, public, cfg, tmp_path / "second",
                           resume_dir=resume, progress=False)
    assert resumed.metrics["resumed_from_step"] == 5
    assert resumed.weights_sha256 == straight.weights_sha256
    assert file_sha256(tmp_path / "second" / WEIGHTS_FILE) == straight.weights_sha256
