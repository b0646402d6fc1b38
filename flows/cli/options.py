"""Options more than one command takes, declared once: choices as Enums (Typer shows and checks
them), and the expert-training options, which `flexo expert train` and `flexo contribute` both
take as one `ExpertConfig`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from components.builtin_corpora import PRIVATE_DOMAINS, PUBLIC


class Preset(str, Enum):  # components.anchor.PRESETS (a test keeps the two equal)
    tiny = "tiny"
    small = "small"
    base = "base"


class RouterInit(str, Enum):  # components.router_rows.RouterInit
    embed = "embed"
    hidden = "hidden"
    random = "random"


class PiiPolicy(str, Enum):
    fail = "fail"
    redact = "redact"
    allow = "allow"


Domain = Enum("Domain", {name: name for name in (PUBLIC, *PRIVATE_DOMAINS)}, type=str)
PrivateDomain = Enum("PrivateDomain", {name: name for name in PRIVATE_DOMAINS}, type=str)

DeviceOpt = Annotated[str | None, typer.Option(
    "--device", help="cpu or cuda (default: cuda if any).")]
PiiOpt = Annotated[PiiPolicy, typer.Option(help="What to do with PII found in the text.")]
ContributorOpt = Annotated[str, typer.Option(help="Contributor id: 2-40 of a-z, 0-9, '-'.")]
OutOpt = Annotated[Path, typer.Option("--out", help="New directory for the output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def acting_as(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """`--as` against a server: the MLflow identity the credentials name, and a given `--as`
    that disagrees with it refused (the server records who wrote what; flexo must not claim
    another name). Embedded: the value as given."""
    from flows.settings import server_identity

    user = server_identity()
    if user is None:
        if value is None:
            raise typer.BadParameter("who acts? pass --as NAME")
        return value
    source = ctx.get_parameter_source(param.name)  # typer's own (vendored) click: by name
    given = value is not None and getattr(source, "name", "") != "DEFAULT"
    if given and value != user:
        raise typer.BadParameter(f"'{value}' disagrees with your MLflow identity '{user}' "
                                 f"(MLFLOW_TRACKING_USERNAME); drop --as, or use {value}'s "
                                 f"credentials")
    return user


def as_option(help: str) -> Any:
    """The `--as` option: who acts (from the MLflow credentials when a server is configured)."""
    return typer.Option("--as", help=f"{help} With an MLflow server: your MLflow user.",
                        callback=acting_as)


OperatorOpt = Annotated[str, as_option("Who acts: an operator of the policy (trusted as given "
                                       "in the embedded mode).")]

FsdpOpt = Annotated[bool, typer.Option(
    "--fsdp", help="Under torchrun: shard parameters, gradients and optimizer state over the "
                   "processes (FSDP2) instead of a whole copy on each (DDP), for models that do "
                   "not fit one device.")]

# The expert-training options: name -> (annotation, default). Unset ones (None) keep
# ExpertConfig's defaults, so the defaults live in one place.
_EXPERT_OPTIONS: dict[str, tuple[Any, Any]] = {
    "router_init": (Annotated[RouterInit, typer.Option(
        help="How the router row starts: mean anchor hidden state, mean MiniLM embedding, or "
             "random.")], RouterInit.hidden),
    "steps": (Annotated[int | None, typer.Option(help="Training steps (default: 200).")], None),
    "lr": (Annotated[float | None, typer.Option(help="Peak learning rate (default: 4e-3).")],
           None),
    "public_ratio": (Annotated[float | None, typer.Option(
        help="Share of public text per batch (default: 0.4).")], None),
    "router_docs": (Annotated[int | None, typer.Option(
        help="Documents per domain for the router init (default: 1000).")], None),
    "seed": (Annotated[int, typer.Option(help="Random seed.")], 0),
    "dp_epsilon": (Annotated[float | None, typer.Option(
        help="Train with differential privacy to this epsilon.")], None),
    "dp_delta": (Annotated[float | None, typer.Option(
        help="DP delta (default: 0.1 / private windows).")], None),
    "dp_max_grad_norm": (Annotated[float, typer.Option(help="DP per-sample clipping norm.")],
                         1.0),
    "fsdp": (FsdpOpt, False),
}


def expert_config(router_init: RouterInit | str, steps: int | None, lr: float | None,
                  public_ratio: float | None, router_docs: int | None, seed: int,
                  dp_epsilon: float | None, dp_delta: float | None, dp_max_grad_norm: float,
                  fsdp: bool = False, **extra: Any):
    """An ExpertConfig from the options; invalid values raise pydantic's ValidationError, which
    the CLI turns into one line."""
    from components.expert_training import ExpertConfig

    given = {"steps": steps, "lr": lr, "public_ratio": public_ratio,
             "router_documents": router_docs,
             "dp": None if dp_epsilon is None else {"epsilon": dp_epsilon, "delta": dp_delta,
                                                    "max_grad_norm": dp_max_grad_norm}}
    return ExpertConfig(seed=seed, router_init=RouterInit(router_init).value, fsdp=fsdp, **extra,
                        **{k: v for k, v in given.items() if v is not None})


def expert_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the expert-training options; it receives them as `expert: ExpertConfig`
    (built before the command body runs, so a bad value fails before any work)."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "expert"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                               annotation=annotation)
             for name, (annotation, default) in _EXPERT_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        options = {name: kwargs.pop(name) for name in _EXPERT_OPTIONS}
        return command(*args, expert=expert_config(**options), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*own, *added])  # what Typer reads
    return wrapper


ProxyTokensOpt = Annotated[int, typer.Option(
    help="Tokens of public documents resembling your data to select as your proxy (only their "
         "ids are published; release router tuning needs them; 0 skips).")]


def proxy_config(tokens: int, seed: int):
    """The proxy selection `--proxy-tokens` asks for; None for 0."""
    from components.errors import ConfigError
    from components.proxy_selection import ProxyConfig

    if tokens < 0:
        raise ConfigError(f"--proxy-tokens must be 0 (skip) or more, got {tokens}")
    return ProxyConfig(min_tokens=tokens, seed=seed) if tokens else None
