"""`flexo merge`: the anchor and expert modules into one FlexOlmo checkpoint, outside the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from components.errors import CheckpointError, ConfigError
from flows.cli.app import app, command, out
from flows.cli.options import OutOpt


def module_refs(directories: list[Path]) -> list:
    """ModuleRefs from module directories, through their manifests (governance's record)."""
    from pydantic import ValidationError

    from components.expert_module import ModuleRef
    from governance.manifest import MANIFEST_FILE, ExpertManifest

    refs = []
    for directory in directories:
        if not (directory / MANIFEST_FILE).is_file():
            raise CheckpointError(f"{directory} has no {MANIFEST_FILE}; pass a module directory "
                                  f"written by `flexo expert train`")
        try:
            manifest = ExpertManifest.read(directory)
        except (ValidationError, ValueError) as e:
            raise CheckpointError(f"{directory / MANIFEST_FILE} is not a valid manifest "
                                  f"({str(e).splitlines()[0]}); re-publish the module") from None
        refs.append(ModuleRef(name=manifest.contributor, directory=directory,
                              weights_sha256=manifest.weights_sha256))
    return refs


@command(app)
def merge(
    anchor: Annotated[Path, typer.Option(help="Anchor checkpoint directory.")],
    expert: Annotated[list[Path], typer.Option(help="Module directory (repeat, in order).")],
    out_dir: OutOpt,
    top_k: Annotated[int, typer.Option(help="Experts active per token.")] = 2,
    router_tuning: Annotated[bool, typer.Option(help="Tune router rows and biases on the "
                                                "public proxy text each module's manifest "
                                                "names.")] = False,
    rt_steps: Annotated[int, typer.Option(help="Router-tuning steps.")] = 50,
) -> None:
    """Merge the anchor and expert modules into one FlexOlmo checkpoint (HF format)."""
    from components.atomic import check_output_dir

    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")
    check_output_dir(out_dir)
    refs = module_refs(expert)
    from components.merge import merge as merge_modules
    from components.router_tuning import RouterTuningConfig, proxy_router_tuner
    from flows.modules import published_proxies

    tune = proxy_router_tuner(anchor, published_proxies(anchor, {r.name: r.directory
                                                                 for r in refs}),
                              RouterTuningConfig(steps=rt_steps, lr=1e-3),
                              ) if router_tuning and rt_steps else None
    record = merge_modules(anchor, refs, out_dir, top_k=top_k, tune=tune)
    out.print(f"merged {len(refs)} experts ({', '.join(r.name for r in refs)}) into {out_dir}, "
              f"top-{record.top_k}, plan {record.plan_digest[:12]}")
