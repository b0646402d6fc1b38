"""`flexo expert train`, `flexo merge` and `flexo generate` through the CLI, refusals included."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from governance.manifest import ExpertManifest


def _one_line_error(result, needle):
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_module_directory_holds_weights_and_a_manifest_without_text(modules, tiny_anchor):
    from components.builtin_corpora import load_domain
    from components.expert_module import file_sha256

    directory = modules["legal"]
    assert sorted(p.name for p in directory.iterdir()) == ["expert.safetensors", "manifest.json"]
    manifest = ExpertManifest.read(directory)
    assert manifest.contributor == "legal"
    assert manifest.weights_sha256 == file_sha256(directory / "expert.safetensors")
    assert manifest.anchor_fingerprint == json.loads(
        (tiny_anchor / "flexo_anchor.json").read_text())["fingerprint"]
    corpus = load_domain("legal")
    assert manifest.data_fingerprint.digest == corpus.fingerprint().digest
    text = (directory / "manifest.json").read_text()
    for doc in corpus.documents[:200]:
        assert doc.text[:60] not in text
    assert not list(directory.parent.glob(".legal*"))  # no resume or partial dirs left


@pytest.mark.slow  # ~35 s (a second anchor imported): keeps the default suite < 15 min
def test_merge_refuses_a_module_from_another_anchor(cli, tiny_anchor, modules, tmp_path):
    other = tmp_path / "other-src"
    shutil.copytree(tiny_anchor, other)
    (other / "flexo_anchor.json").unlink()
    weights = load_file(other / "model.safetensors")
    w = weights["model.norm.weight"]
    w[0] = torch.nextafter(w[0], torch.tensor(float("inf")))
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    assert cli("anchor", "import", "--from", other, "--out", tmp_path / "other").exit_code == 0
    out = tmp_path / "merged"
    result = cli("merge", "--anchor", tmp_path / "other", "--expert", modules["code"], "--out", out)
    _one_line_error(result, "was trained on anchor")
    assert not out.exists()


def test_merge_refuses_tampered_pickled_and_misshapen_modules(cli, tiny_anchor, modules, tmp_path):
    tampered = tmp_path / "tampered"
    shutil.copytree(modules["code"], tampered)
    blob = bytearray((tampered / "expert.safetensors").read_bytes())
    blob[-10] ^= 0x01  # one bit of one weight
    (tampered / "expert.safetensors").write_bytes(bytes(blob))

    pickled = tmp_path / "pickled"
    shutil.copytree(modules["code"], pickled)
    torch.save({"layers.0.router": torch.zeros(4)}, pickled / "expert.bin")

    misshapen = tmp_path / "misshapen"
    shutil.copytree(modules["code"], misshapen)
    weights = load_file(misshapen / "expert.safetensors")
    weights["layers.0.down_proj"] = weights["layers.0.down_proj"][:, :-1].contiguous()
    from safetensors import safe_open

    with safe_open(modules["code"] / "expert.safetensors", framework="pt") as st:
        metadata = st.metadata()
    save_file(weights, misshapen / "expert.safetensors", metadata=metadata)
    from components.expert_module import file_sha256

    manifest = ExpertManifest.read(misshapen)
    manifest.weights_sha256 = file_sha256(misshapen / "expert.safetensors")  # honest manifest
    manifest.write(misshapen)

    for directory, needle in ((tampered, "does not match the sha256"),
                              (pickled, "expert.bin is a pickle-format file"),
                              (misshapen, "layers.0.down_proj has shape")):
        out = tmp_path / f"out-{directory.name}"
        result = cli("merge", "--anchor", tiny_anchor, "--expert", modules["legal"],
                     "--expert", directory, "--out", out)
        _one_line_error(result, needle)
        assert not out.exists()
    assert not list(tmp_path.glob(".out-*"))


def test_generate_switches_experts_per_call_and_refuses_unknown_ids(cli, merged):
    base = cli("generate", "--model", merged, "--prompt", "def main(", "--greedy",
               "--max-new-tokens", 12)
    assert base.exit_code == 0, base.output
    assert "experts on: public, code, legal, literature" in base.stdout
    off = cli("generate", "--model", merged, "--prompt", "def main(", "--greedy",
              "--max-new-tokens", 12, "--exclude", "code", "--exclude", "legal")
    assert off.exit_code == 0 and "experts on: public, literature" in off.stdout
    only = cli("generate", "--model", merged, "--prompt", "def main(", "--greedy",
               "--max-new-tokens", 12, "--only", "code")
    assert only.exit_code == 0 and "experts on: public, code\n" in only.stdout
    _one_line_error(cli("generate", "--model", merged, "--prompt", "x", "--exclude", "nobody"),
                    "unknown expert 'nobody'; this model has: code, legal, literature")
    _one_line_error(cli("generate", "--model", merged, "--prompt", "x", "--exclude", "public"),
                    "public expert is the anchor")


def _with_proxies(modules: dict[str, Path], anchor: Path, root: Path) -> dict[str, Path]:
    """Copies of the session's modules whose manifests carry a proxy selection, chosen by the
    contributor-side code `flexo expert train --proxy-tokens` runs (a small sample, for time)."""
    from components.builtin_corpora import load_domain
    from components.proxy_selection import ProxyConfig
    from flows.modules import choose_proxies

    copies = {}
    for domain, module in modules.items():
        copies[domain] = root / domain
        shutil.copytree(module, copies[domain])
        proxies = choose_proxies(anchor, load_domain(domain),
                                 ProxyConfig(min_tokens=5000, max_documents=100))
        manifest = ExpertManifest.read(module).model_copy(update={"proxies": proxies})
        manifest.write(copies[domain])
    return copies


def test_router_tuning_changes_only_routers(cli, tiny_anchor, modules, merged, tmp_path):
    out = tmp_path / "tuned"
    tunable = _with_proxies(modules, tiny_anchor, tmp_path / "modules")
    args = [a for d in ("code", "legal", "literature") for a in ("--expert", tunable[d])]
    result = cli("merge", "--anchor", tiny_anchor, *args, "--out", out, "--router-tuning",
                 "--rt-steps", 10)
    assert result.exit_code == 0, result.output
    tuned, plain = load_file(out / "model.safetensors"), load_file(merged / "model.safetensors")
    changed = {k for k in plain if not torch.equal(tuned[k], plain[k])}
    assert changed and all(k.endswith("mlp.gate.weight") for k in changed)
    record = json.loads((out / "flexo_merge.json").read_text())
    assert record["router_tuning"]["steps"] == 10

    # A module that published no proxy selection cannot be router-tuned: one line, no output.
    refused = cli("merge", "--anchor", tiny_anchor, "--expert", tunable["code"], "--expert",
                  modules["legal"], "--out", tmp_path / "refused", "--router-tuning",
                  "--rt-steps", 10)
    _one_line_error(refused, "legal's module publishes no proxy selection")
    assert not (tmp_path / "refused").exists()


def test_expert_train_refuses_bad_options_before_work(cli, tiny_anchor, tmp_path):
    out = tmp_path / "m"
    cases = [
        (["--contributor", "Bad_ID", "--domain", "code"], "contributor id 'Bad_ID' is invalid"),
        (["--contributor", "public", "--domain", "code"], "reserved"),
        (["--contributor", "acme"], "exactly one of --data DIR or --domain NAME"),
        (["--contributor", "acme", "--domain", "cooking"],
         "'cooking' is not one of 'code', 'legal', 'medical', 'literature'"),
        (["--contributor", "acme", "--domain", "code", "--router-init", "magic"],
         "'magic' is not one of 'embed', 'hidden', 'random'"),
        (["--contributor", "acme", "--domain", "code", "--public-ratio", "1.5"],
         "invalid option public_ratio"),
    ]
    for args, needle in cases:
        result = cli("expert", "train", "--anchor", tiny_anchor, "--out", out, *args)
        _one_line_error(result, needle)
        assert not out.exists()
    result = cli("expert", "train", "--anchor", tmp_path, "--out", out, "--contributor", "acme",
                 "--domain", "code")
    _one_line_error(result, "flexo_anchor.json")


def test_the_papers_embedding_router_init_trains_a_module(cli, tiny_anchor, modules, tmp_path):
    out = tmp_path / "embed"
    result = cli("expert", "train", "--contributor", "code", "--domain", "code", "--anchor",
                 tiny_anchor, "--out", out, "--router-init", "embed", "--steps", 3,
                 "--router-docs", 50)
    assert result.exit_code == 0, result.output
    embed = load_file(out / "expert.safetensors")
    hidden = load_file(modules["code"] / "expert.safetensors")  # the default init
    anchor_rows = load_file(tiny_anchor / "public_router.safetensors")
    # each init trains against the anchor's r_pub for that method, stored with the anchor
    assert torch.equal(hidden["layers.0.router_public"], anchor_rows["hidden/layers.0"])
    assert torch.equal(embed["layers.0.router_public"], anchor_rows["embed/layers.0"])
    assert not torch.equal(hidden["layers.0.router"], embed["layers.0.router"])
    assert ExpertManifest.read(out).training["router_init"] == "embed"
    assert ExpertManifest.read(modules["code"]).training["router_init"] == "hidden"
    mixed = cli("merge", "--anchor", tiny_anchor, "--expert", modules["legal"], "--expert", out,
                "--out", tmp_path / "mixed")
    _one_line_error(mixed, "trained against another public router row")
    assert not (tmp_path / "mixed").exists()
