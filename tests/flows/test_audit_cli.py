"""`flexo audit` tells memorised text from unseen text (paper §5.3 method)."""

import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from components.builtin_corpora import load_domain
from components.extraction_audit import wilson_interval
from components.lm_training import TrainConfig, train_causal_lm


def _write(directory, texts):
    directory.mkdir()
    (directory / "docs.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    return directory


def test_audit_separates_memorised_from_unseen_text(cli, tiny_anchor, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_anchor)
    model = AutoModelForCausalLM.from_pretrained(tiny_anchor)
    corpus = load_domain("literature")

    def long_docs(split, n):
        docs = [d for d in corpus.split(split).texts() if len(tokenizer(d).input_ids) >= 64]
        return docs[:n]

    seen, unseen = long_docs("train", 8), long_docs("test", 8)
    batch = torch.tensor([tokenizer(t).input_ids[:64] for t in seen])  # what the audit probes
    train_causal_lm(model, lambda generator: batch, TrainConfig(steps=150, lr=3e-3,
                                                                warmup_steps=10), progress=False)
    model.save_pretrained(tmp_path / "overfit")
    tokenizer.save_pretrained(tmp_path / "overfit")

    rates = {}
    for name, texts in (("seen", seen), ("unseen", unseen)):
        result = cli("audit", "--model", tmp_path / "overfit", "--data",
                     _write(tmp_path / name, texts), "--samples", 4, "--split", "all", "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["documents"] == 8
        rates[name] = report["rate"]
        assert report["ci_low"] <= report["rate"] <= report["ci_high"]
    assert rates["seen"] >= 0.75 and rates["unseen"] == 0.0, rates


def test_wilson_interval_brackets_the_rate():
    low, high = wilson_interval(1, 100)
    assert 0 < low < 0.01 < high < 0.06
    assert wilson_interval(0, 10)[0] == 0.0
