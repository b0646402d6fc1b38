"""Baselines built from the same modules: soup, BTM ensemble, uncoordinated merge."""

import torch
from safetensors.torch import load_file

from components.baselines import BTMEnsemble, contributor_model, model_soup
from components.expert_module import ModuleRef
from components.moe_layout import DOWN, layer_key
from governance.manifest import ExpertManifest


def _ref(directory):
    m = ExpertManifest.read(directory)
    return ModuleRef(name=m.contributor, directory=directory, weights_sha256=m.weights_sha256)


def test_model_soup_averages_every_expert_ffn(merged):
    soup = model_soup(merged)
    moe = load_file(merged / "model.safetensors")
    assert soup.config.model_type == "olmo2"
    torch.testing.assert_close(soup.state_dict()[layer_key(1, "mlp.down_proj.weight")],
                               moe[layer_key(1, DOWN)].mean(dim=0))
    assert torch.equal(soup.state_dict()["lm_head.weight"], moe["lm_head.weight"])


def test_btm_ensemble_averages_member_distributions(tiny_anchor, modules):
    members = [contributor_model(tiny_anchor, _ref(modules[d])) for d in ("code", "legal")]
    ids = torch.randint(0, members[0].config.vocab_size, (2, 16))
    with torch.no_grad():
        single = BTMEnsemble(members[:1])(input_ids=ids).logits
        torch.testing.assert_close(single, members[0](ids).logits.log_softmax(-1), atol=1e-5,
                                   rtol=0)
        both = BTMEnsemble(members)(input_ids=ids).logits.exp()
        expected = (members[0](ids).logits.softmax(-1) + members[1](ids).logits.softmax(-1)) / 2
        torch.testing.assert_close(both, expected, atol=1e-6, rtol=1e-4)


def test_uncoordinated_modules_merge_with_averaged_shared_tensors(cli, tiny_anchor, tmp_path):
    dirs = []
    for domain in ("medical", "code"):
        out = tmp_path / domain
        result = cli("expert", "train", "--contributor", domain, "--domain", domain, "--anchor",
                     tiny_anchor, "--out", out, "--steps", 5, "--router-init", "random",
                     "--uncoordinated")
        assert result.exit_code == 0, result.output
        dirs.append(out)
    a, b = (load_file(d / "expert.safetensors") for d in dirs)
    anchor = load_file(tiny_anchor / "model.safetensors")
    assert not torch.equal(a["shared/lm_head.weight"], anchor["lm_head.weight"])
    merged = tmp_path / "merged"
    result = cli("merge", "--anchor", tiny_anchor, "--expert", dirs[0], "--expert", dirs[1],
                 "--out", merged)
    assert result.exit_code == 0, result.output
    out = load_file(merged / "model.safetensors")
    torch.testing.assert_close(out["lm_head.weight"],
                               (a["shared/lm_head.weight"] + b["shared/lm_head.weight"]) / 2)


def test_union_upper_bound_trains_every_tensor_of_a_dense_model(tiny_anchor, builtin):
    from components.baselines import train_union_model
    from components.checkpoints import load_causal_lm
    from components.expert_training import ExpertConfig

    cfg = ExpertConfig(steps=3, batch_size=4, seq_len=64, warmup_steps=1, checkpoint_every=0)
    union = train_union_model(tiny_anchor, [builtin["code"], builtin["legal"]], builtin["public"],
                              cfg, progress=False)
    anchor = load_causal_lm(tiny_anchor).state_dict()
    assert union.config.model_type == "olmo2"
    unchanged = [k for k, v in union.state_dict().items() if torch.equal(v, anchor[k])]
    assert unchanged == []  # every parameter trained: nothing is held back as in FlexOlmo
