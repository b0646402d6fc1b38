"""The public anchor: an OLMo-2 model trained from scratch on the public mix, or imported.

Presets trade quality for time on a 2-core CPU: `tiny` for tests, `small` for the demo, `base` for
benchmarks. The anchor directory is a standard HF checkpoint plus `flexo_anchor.json`, whose
fingerprint every expert module must match before it can be merged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import save_file
from transformers import Olmo2Config, Olmo2ForCausalLM, PreTrainedTokenizerBase

from components import distributed
from components.atomic import atomic_output_dir, check_output_dir
from components.clock import timestamp
from components.devices import pick_device
from components.documents import Corpus, CorpusFingerprint
from components.errors import CheckpointError, ConfigError
from components.fingerprint import fingerprint_checkpoint, fingerprint_tensors
from components.lm_training import TrainConfig, train_causal_lm
from components.router_rows import PUBLIC_ROUTER_FILE, SAMPLE_DOCUMENTS, make_public_router
from components.token_data import token_stream, window_sampler
from components.tokenizer import train_tokenizer

log = logging.getLogger(__name__)

CARD_FILE = "flexo_anchor.json"


class AnchorPreset(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int  # 4x hidden, as SwiGLU models of this size use
    vocab_size: int
    seq_len: int
    batch_size: int
    steps: int
    lr: float
    warmup_steps: int
    tokenizer_chars: int  # text used to learn the BPE merges; more buys little at these sizes
    router_documents: int = SAMPLE_DOCUMENTS  # public documents r_pub is the mean of

    @property
    def train_tokens(self) -> int:
        return self.steps * self.batch_size * self.seq_len


PRESETS: dict[str, AnchorPreset] = {
    p.name: p
    for p in (
        # Seconds on 2 cores: enough to halve perplexity, nothing more.
        AnchorPreset(name="tiny", hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256,
                     vocab_size=2048, seq_len=128, batch_size=16, steps=250, lr=3e-3,
                     warmup_steps=25, tokenizer_chars=2_000_000),
        # Three minutes: the demo's anchor. 4,096 words: the same text takes 13% more tokens
        # than with 8,192, and 32% less time per step. 3 layers instead of 4 and r_pub from 300
        # documents keep the whole demo within its 10 minutes; halving the steps instead left
        # it too weak to route by (public perplexity 239 instead of 170).
        AnchorPreset(name="small", hidden_size=128, num_layers=3, num_heads=4,
                     intermediate_size=512, vocab_size=4096, seq_len=256, batch_size=16,
                     steps=300, lr=2e-3, warmup_steps=50, tokenizer_chars=8_000_000,
                     router_documents=300),
        # The benchmarks' anchor, three quarters of an epoch of the public mix: 3.9-4.6 s per
        # step on 2026-11-30, so 30-35 minutes of the claims run's 120. The 600-step anchor's
        # training loss had nearly flattened by step 450 (25-step mean 4.75; 4.70 at step 600).
        AnchorPreset(name="base", hidden_size=384, num_layers=6, num_heads=6,
                     intermediate_size=1536, vocab_size=8192, seq_len=256, batch_size=16,
                     steps=450, lr=1e-3, warmup_steps=50, tokenizer_chars=8_000_000),
    )
}


def get_preset(name: str) -> AnchorPreset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


class AnchorCard(BaseModel):
    """What flexo records next to an anchor checkpoint (`flexo_anchor.json`)."""

    fingerprint: str  # every tensor, public router rows included (DESIGN §3)
    weights_fingerprint: str  # the model weights alone: seeds the router-init projection
    architecture: Literal["olmo2"] = "olmo2"
    source: str  # "trained" or the imported path / hub id
    preset: str | None = None
    parameters: int
    corpus: CorpusFingerprint | None = None  # the public text it was trained on (no text)
    train_tokens: int = 0
    train_seconds: float = 0.0
    final_loss: float | None = None
    losses: list[float] = []  # one per training step: the loss curve trackers plot
    created_at: str

    def write(self, directory: Path) -> None:
        (Path(directory) / CARD_FILE).write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def read(cls, directory: Path) -> AnchorCard:
        path = Path(directory) / CARD_FILE
        if not path.is_file():
            raise CheckpointError(f"{directory} is not a flexo anchor (no {CARD_FILE}); train one "
                                  f"with `flexo anchor train` or adopt it with `flexo anchor import`")
        return cls.model_validate_json(path.read_text())


def build_model(preset: AnchorPreset, tokenizer: PreTrainedTokenizerBase,
                seed: int = 0) -> Olmo2ForCausalLM:
    config = Olmo2Config(
        vocab_size=len(tokenizer), hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size, num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads, num_key_value_heads=preset.num_heads,
        max_position_embeddings=max(4096, preset.seq_len), tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return Olmo2ForCausalLM(config).float()


def save_anchor(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, out: Path,
                extra: dict[str, torch.Tensor] | None = None, **card: object) -> AnchorCard:
    """Write checkpoint, tokenizer and card atomically; the fingerprint is read back from disk."""
    with atomic_output_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if extra:
            save_file({k: v.contiguous() for k, v in extra.items()}, tmp / PUBLIC_ROUTER_FILE)
        result = AnchorCard(fingerprint=fingerprint_checkpoint(tmp), created_at=timestamp(),
                            weights_fingerprint=fingerprint_tensors(model.state_dict()),
                            parameters=sum(p.numel() for p in model.parameters()), **card)
        result.write(tmp)
    return result


def train_anchor(out: Path, preset: str | AnchorPreset, corpus: Corpus, seed: int = 0,
                 device: str | None = None, progress: bool = True,
                 fsdp: bool = False) -> AnchorCard | None:
    """Tokenizer, then model, trained on the corpus's train split and saved to `out`. Under
    `torchrun` every process trains (components/distributed.py; `fsdp` shards the model over
    them) and rank 0 alone saves and returns the card; the others return None."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    check_output_dir(out)
    dev = pick_device(device)
    distributed.start(dev)
    distributed.rows_per_rank(preset.batch_size)  # refused before any work
    texts = corpus.split("train").texts()
    sample, chars = [], 0
    for text in texts:
        if chars >= preset.tokenizer_chars:
            break
        sample.append(text)
        chars += len(text)
    tokenizer = train_tokenizer(sample, preset.vocab_size)
    # Windows from the whole train split: a budget smaller than the mix still sees all of
    # it (a prefix in hash order left most of the domain slices' long code documents out: code
    # perplexity 914-1002 after 150 `small` steps, 404 from the whole mix).
    stream = token_stream(texts, tokenizer)
    model = build_model(preset, tokenizer, seed).to(dev)
    cfg = TrainConfig(steps=preset.steps, lr=preset.lr, warmup_steps=preset.warmup_steps,
                      weight_decay=0.1, seed=seed, fsdp=fsdp)
    result = train_causal_lm(model, window_sampler(stream, preset.seq_len, preset.batch_size),
                             cfg, desc=f"anchor[{preset.name}]", progress=progress)
    model = distributed.unsharded(model, lambda: build_model(preset, tokenizer, seed))
    if model is None:  # not rank 0
        return None
    router = make_public_router(model, tokenizer, corpus, fingerprint_tensors(model.state_dict()),
                                preset.router_documents)
    return save_anchor(model, tokenizer, out, extra=router, source="trained", preset=preset.name,
                       corpus=corpus.fingerprint(), train_tokens=result.tokens,
                       train_seconds=round(result.seconds, 2), final_loss=result.final_loss,
                       losses=[round(x, 5) for x in result.losses])


def read_fingerprint(directory: Path) -> str:
    """The fingerprint recorded with an anchor, checked against its weights on disk."""
    recorded = AnchorCard.read(directory).fingerprint
    actual = fingerprint_checkpoint(directory)
    if recorded != actual:
        raise CheckpointError(f"anchor {directory} was modified after it was written "
                              f"(fingerprint {actual[:12]} != recorded {recorded[:12]}); "
                              f"re-import or re-train it")
    return actual

