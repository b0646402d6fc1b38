"""flexo's own loading path for merged models: biases applied, experts switched per call.

A runtime loaded with a deny-list re-reads it before every forward pass (a `stat`; the file only
when it changed) and masks the experts on it: a withdrawal reaches an already-loaded model on its
next call.

A plain `transformers` load of a flexo release ignores `flexo_router.safetensors`, so it routes
without the negative biases (the bias only ever lowers a private expert's logit, so a plain load
sends at least as much weight to private experts as flexo does). With every bias zero the two
paths give the same logits.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import PreTrainedConfig, PreTrainedModel

from components.checkpoints import load_causal_lm
from components.deny_list import denied_names
from components.errors import ConfigError
from components.merge import BIAS_FILE, PUBLIC
from components.moe_layout import layer_key
from components.router import install_routers, set_active, set_denied, use_fast_experts


def load_flexo_model(directory: Path, device: str = "cpu", dtype: torch.dtype = torch.float32,
                     deny_list: Path | None = None) -> PreTrainedModel:
    """A model ready for flexo's runtime: a FlexOlmo merge with its biases (and the experts on
    `deny_list` masked from every pass on), or a dense anchor."""
    model = load_causal_lm(directory, device=device, dtype=dtype)
    if model.config.model_type != "flex_olmo":
        return model
    layers = model.config.num_hidden_layers
    bias_path = Path(directory) / BIAS_FILE
    bias = None
    if bias_path.exists():
        saved = load_file(bias_path)
        bias = torch.stack([saved[layer_key(i, "mlp.gate.bias")] for i in range(layers)])
    install_routers(model, bias=None if bias is None else bias.to(device=device, dtype=dtype))
    use_fast_experts(model, device)
    if deny_list is not None:
        watch_deny_list(model, deny_list)
    return model


def watch_deny_list(model: PreTrainedModel, path: Path) -> None:
    """Before each forward pass of `model`, mask the experts that `path` denies."""
    names = expert_names(model.config)
    applied: list[frozenset[str]] = []

    def before_forward(_module, _args) -> None:
        denied = denied_names(path)
        if applied != [denied]:
            set_denied(model, [i > 0 and n in denied for i, n in enumerate(names)])
            applied[:] = [denied]

    model.register_forward_pre_hook(before_forward)


def expert_names(config: PreTrainedConfig) -> list[str]:
    """Expert names in router order (public first), from the config alone: no weights needed."""
    if config.model_type != "flex_olmo":
        return [PUBLIC]
    names = getattr(config, "flexo_experts", None)
    return list(names) if names else [PUBLIC] + [
        f"expert-{j}" for j in range(1, config.num_experts)]


def selection(names: list[str], only: list[str] | None = None,
              exclude: list[str] | None = None) -> list[bool]:
    """Which experts are on: the public one always; `only` keeps just those, `exclude` drops."""
    for requested in (only or []) + (exclude or []):
        if requested not in names[1:]:
            if requested == PUBLIC:
                raise ConfigError("the public expert is the anchor and cannot be switched off or "
                                  "selected; name contributor experts only")
            raise ConfigError(f"unknown expert '{requested}'; this model has: "
                              f"{', '.join(names[1:]) or 'no contributor experts'}")
    on = [True] + [only is None or n in only for n in names[1:]]
    return [flag and n not in (exclude or []) for flag, n in zip(on, names, strict=True)]


def apply_selection(model: PreTrainedModel, only: list[str] | None = None,
                    exclude: list[str] | None = None) -> list[bool]:
    active = selection(expert_names(model.config), only, exclude)
    if model.config.model_type == "flex_olmo":
        set_active(model, active)
    return active
