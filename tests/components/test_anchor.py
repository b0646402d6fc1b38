import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, FlexOlmoConfig, FlexOlmoForCausalLM

from components.anchor import AnchorCard, build_model, get_preset
from components.anchor_import import import_anchor
from components.atomic import atomic_output_dir
from components.errors import CheckpointError, ConfigError, OutputExistsError
from components.evaluation import perplexity
from components.fingerprint import fingerprint_checkpoint
from components.token_data import token_stream


def _public():
    from components.builtin_corpora import load_domain

    return load_domain("public")


def _no_public():
    raise AssertionError("a FlexOlmo import must not need the public mix")


def test_trained_anchor_is_a_standard_hf_checkpoint(tiny_anchor):
    model = AutoModelForCausalLM.from_pretrained(tiny_anchor)
    tokenizer = AutoTokenizer.from_pretrained(tiny_anchor)
    assert model.config.model_type == "olmo2"
    assert model.config.vocab_size == len(tokenizer)
    assert {p.name for p in tiny_anchor.iterdir()} >= {"config.json", "model.safetensors",
                                                        "tokenizer.json", "flexo_anchor.json"}
    assert not list(tiny_anchor.glob("*.bin")) and not list(tiny_anchor.glob("*.pt"))
    ids = tokenizer("In the beginning", return_tensors="pt").input_ids
    assert torch.isfinite(model(ids).logits).all()


def test_training_at_least_halves_held_out_public_perplexity(tiny_anchor, builtin):
    trained = AutoModelForCausalLM.from_pretrained(tiny_anchor)
    tokenizer = AutoTokenizer.from_pretrained(tiny_anchor)
    untrained = build_model(get_preset("tiny"), tokenizer, seed=0)
    stream = token_stream(builtin["public"].split("test").texts(), tokenizer, max_tokens=20_000)
    before = perplexity(untrained, stream, 128).perplexity
    after = perplexity(trained, stream, 128).perplexity
    assert after <= 0.5 * before, (before, after)


def test_card_records_corpus_fingerprint_without_text(tiny_anchor, builtin):
    card = AnchorCard.read(tiny_anchor)
    assert card.corpus == builtin["public"].fingerprint()
    assert card.preset == "tiny" and card.parameters > 0
    text = (tiny_anchor / "flexo_anchor.json").read_text()
    assert builtin["public"].documents[0].text[:40] not in text


def test_import_of_an_olmo2_checkpoint_keeps_its_fingerprint(tiny_anchor, tmp_path):
    plain = tmp_path / "olmo2"  # the HF checkpoint alone: no flexo card, no r_pub rows
    shutil.copytree(tiny_anchor, plain, ignore=shutil.ignore_patterns("flexo_anchor.json",
                                                                       "public_router.*"))
    card = import_anchor(plain, tmp_path / "imported", public=_public)
    # Same weights and, made again from the same public text, the same r_pub rows.
    assert card.weights_fingerprint == AnchorCard.read(tiny_anchor).weights_fingerprint
    assert card.fingerprint == AnchorCard.read(tiny_anchor).fingerprint
    assert card.source == str(plain)


def test_import_of_a_flexo_anchor_keeps_its_rows_without_reading_public_text(tiny_anchor,
                                                                            tmp_path):
    card = import_anchor(tiny_anchor, tmp_path / "again", public=_no_public)
    assert card.fingerprint == AnchorCard.read(tiny_anchor).fingerprint


def test_import_of_a_flexolmo_checkpoint_takes_the_public_expert(tiny_anchor, tmp_path):
    """Expert 1 = expert 0 makes the MoE equal to its public expert: the dense import must match."""
    dense = AutoModelForCausalLM.from_pretrained(tiny_anchor)
    c = dense.config
    config = FlexOlmoConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                            intermediate_size=c.intermediate_size,
                            num_hidden_layers=c.num_hidden_layers,
                            num_attention_heads=c.num_attention_heads,
                            num_key_value_heads=c.num_key_value_heads, num_experts=2,
                            num_experts_per_tok=2, pad_token_id=c.pad_token_id,
                            eos_token_id=c.eos_token_id, bos_token_id=c.bos_token_id)
    torch.manual_seed(1)
    moe = FlexOlmoForCausalLM(config).eval()
    with torch.no_grad():
        for layer in moe.model.layers:
            layer.mlp.experts.gate_up_proj[1] = layer.mlp.experts.gate_up_proj[0]
            layer.mlp.experts.down_proj[1] = layer.mlp.experts.down_proj[0]
            layer.mlp.gate.weight.normal_()
    source = tmp_path / "flexolmo"
    moe.save_pretrained(source)
    AutoTokenizer.from_pretrained(tiny_anchor).save_pretrained(source)

    card = import_anchor(source, tmp_path / "anchor", public=_no_public)
    imported = AutoModelForCausalLM.from_pretrained(tmp_path / "anchor")
    assert imported.config.model_type == "olmo2"
    ids = torch.randint(0, c.vocab_size, (2, 16))
    with torch.no_grad():
        # fp32; the MoE sums p0*f + p1*f with p0+p1=1, so only rounding differs.
        torch.testing.assert_close(imported(ids).logits, moe(ids).logits, atol=1e-4, rtol=1e-4)
    from safetensors.torch import load_file

    router = load_file(tmp_path / "anchor" / "public_router.safetensors")
    assert sorted(router) == [f"checkpoint/layers.{i}" for i in range(c.num_hidden_layers)]
    torch.testing.assert_close(router["checkpoint/layers.0"], moe.model.layers[0].mlp.gate.weight[0])
    assert card.fingerprint == fingerprint_checkpoint(tmp_path / "anchor")


def test_import_refuses_what_it_cannot_use(tmp_path, tiny_anchor):
    with pytest.raises(CheckpointError, match="no config.json"):
        import_anchor(tmp_path, tmp_path / "out", public=_no_public)
    with pytest.raises(CheckpointError, match="cannot read a model config"):
        import_anchor("allenai/not-a-local-model", tmp_path / "out2", public=_no_public)
    with pytest.raises(OutputExistsError):
        import_anchor(tiny_anchor, tiny_anchor, public=_no_public)
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        get_preset("huge")


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(target) as tmp:
        (tmp / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
