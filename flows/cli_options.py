"""Training options that `flexo expert train` and `flexo contribute` share, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

RouterInitOpt = Annotated[str, typer.Option("--router-init", help="embed | hidden | random")]
StepsOpt = Annotated[int | None, typer.Option("--steps", help="Training steps (default: 200).")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Peak learning rate (default: 4e-3).")]
PublicRatioOpt = Annotated[float | None, typer.Option(
    "--public-ratio", help="Share of public text per batch (default: 0.4).")]
RouterDocsOpt = Annotated[int | None, typer.Option(
    "--router-docs", help="Documents per domain for the router init (default: 1000).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
DpEpsilonOpt = Annotated[float | None, typer.Option(
    "--dp-epsilon", help="Train with differential privacy to this epsilon.")]
DpDeltaOpt = Annotated[float | None, typer.Option(
    "--dp-delta", help="DP delta (default: 0.1 / private windows).")]
DpClipOpt = Annotated[float, typer.Option("--dp-max-grad-norm",
                                          help="DP per-sample clipping norm.")]
DeviceOpt = Annotated[str | None, typer.Option(
    "--device", help="cpu or cuda (default: cuda if any).")]


def expert_config(*, seed: int, router_init: str, steps: int | None, lr: float | None,
                  public_ratio: float | None, router_docs: int | None,
                  dp_epsilon: float | None, dp_delta: float | None, dp_max_grad_norm: float,
                  uncoordinated: bool = False):
    """An ExpertConfig from options; unset ones keep the config's defaults. Invalid values raise
    pydantic's ValidationError, which `friendly_errors` turns into one line."""
    from components.expert_training import ExpertConfig

    given = {"steps": steps, "lr": lr, "public_ratio": public_ratio,
             "router_documents": router_docs,
             "dp": None if dp_epsilon is None else {"epsilon": dp_epsilon, "delta": dp_delta,
                                                    "max_grad_norm": dp_max_grad_norm}}
    return ExpertConfig(seed=seed, router_init=router_init, uncoordinated=uncoordinated,
                        **{k: v for k, v in given.items() if v is not None})


def check_pii_policy(policy: str) -> str:
    from components.errors import ConfigError

    if policy not in ("fail", "redact", "allow"):
        raise ConfigError(f"unknown --pii policy '{policy}'; choose fail, redact or allow")
    return policy
