"""Loading HF checkpoints from a local directory or a hub id, safetensors only."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from components.errors import CheckpointError

SUPPORTED = ("olmo2", "flex_olmo")


def _where(source: str | Path) -> str:
    path = Path(source)
    if path.exists() and not (path / "config.json").is_file():
        raise CheckpointError(f"{path} has no config.json; pass a Hugging Face checkpoint "
                              f"directory (save_pretrained output)")
    return str(source)


def load_config(source: str | Path):
    """The config of a local checkpoint or hub id, refusing architectures flexo cannot use."""
    try:
        config = AutoConfig.from_pretrained(_where(source))
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read a model config from '{source}' ({first}); pass a "
                              f"local checkpoint directory, or a hub id when online") from None
    if config.model_type not in SUPPORTED:
        raise CheckpointError(f"'{source}' is a {config.model_type} model; flexo needs an "
                              f"OLMo-2 or FlexOlmo checkpoint ({', '.join(SUPPORTED)})")
    return config


def load_causal_lm(source: str | Path, device: str | torch.device = "cpu",
                   dtype: torch.dtype | str = torch.float32) -> PreTrainedModel:
    """An OLMo-2 / FlexOlmo model from safetensors weights only (never pickle)."""
    load_config(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(_where(source), dtype=dtype,
                                                     use_safetensors=True)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot load weights from '{source}': "
                              f"{str(err).splitlines()[0]}; it needs *.safetensors weights") from None
    return model.to(device).eval()


def load_tokenizer(source: str | Path) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(_where(source))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot load a tokenizer from '{source}' "
                              f"({str(err).splitlines()[0]}); save one beside the model") from None
