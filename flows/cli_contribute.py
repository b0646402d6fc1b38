"""`flexo contribute`: the contribute flow from the command line, on the contributor's machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from components.errors import ConfigError
from flows import cli_options as opts
from flows.cli_app import app, checked_contributor, friendly_errors, out, quiet_console


@app.command()
@friendly_errors
def contribute(
    contributor: Annotated[str, typer.Option(help="Your contributor id: 2-40 of a-z, 0-9, '-'.")],
    data: Annotated[Path, typer.Option(help="Your text: a directory of .txt/.md/.jsonl files.")],
    anchor: Annotated[Path, typer.Option(help="The anchor checkpoint directory.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="New directory for the module "
                       "(default: $FLEXO_HOME/contributions/<id>/<time>).")] = None,
    pii: Annotated[str, typer.Option(help="PII policy: fail | redact | allow.")] = "redact",
    audit_documents: Annotated[int, typer.Option(
        help="Training documents the extraction audit probes (0 skips the audit).")] = 1000,
    audit_samples: Annotated[int, typer.Option(help="Continuations sampled per document.")] = 10,
    router_init: opts.RouterInitOpt = "embed",
    steps: opts.StepsOpt = None,
    lr: opts.LrOpt = None,
    public_ratio: opts.PublicRatioOpt = None,
    router_docs: opts.RouterDocsOpt = None,
    seed: opts.SeedOpt = 0,
    dp_epsilon: opts.DpEpsilonOpt = None,
    dp_delta: opts.DpDeltaOpt = None,
    dp_max_grad_norm: opts.DpClipOpt = 1.0,
    device: opts.DeviceOpt = None,
) -> None:
    """Validate, train, evaluate, audit and publish your expert module as a pending version."""
    from components.atomic_dir import check_output_dir

    checked_contributor(contributor)
    opts.check_pii_policy(pii)
    if audit_documents < 0:
        raise ConfigError(f"--audit-documents must be 0 (skip) or more, got {audit_documents}")
    expert = opts.expert_config(seed=seed, router_init=router_init, steps=steps, lr=lr,
                                public_ratio=public_ratio, router_docs=router_docs,
                                dp_epsilon=dp_epsilon, dp_delta=dp_delta,
                                dp_max_grad_norm=dp_max_grad_norm)
    if out_dir is not None:
        check_output_dir(out_dir)
    from flows.settings import prepare_prefect

    prepare_prefect()
    from components.extraction_audit import AuditConfig
    from flows.contribute import ContributeConfig, contribute_flow

    audit = AuditConfig(documents=audit_documents, samples=audit_samples, seed=seed) \
        if audit_documents else None
    cfg = ContributeConfig(expert=expert, pii=pii, audit=audit, device=device)
    quiet_console()
    result = contribute_flow(contributor, data, anchor, cfg, out_dir)
    local = result.local
    out.print(f"published {result.registered_model} version {result.version} "
              f"(pending review); module in {result.module_dir}")
    out.print(f"own-domain perplexity {local.domain_perplexity_anchor:.1f} -> "
              f"{local.domain_perplexity:.1f} ({local.domain_change:+.1%}), public "
              f"{local.public_change:+.1%}")
    if result.audit:
        a = result.audit
        out.print(f"extraction audit: {a.extracted}/{a.documents} ({a.rate:.1%}, 95% CI "
                  f"{a.ci_low:.1%}-{a.ci_high:.1%})")
