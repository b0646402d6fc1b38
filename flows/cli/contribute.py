"""`flexo contribute`: the contribute flow from the command line, on the contributor's machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from components.errors import ConfigError
from flows.cli.app import FLOW_LIBRARIES, app, checked_contributor, command, out
from flows.cli.console import StoryDisplay, current_log
from flows.cli.options import (
    ContributorOpt,
    DeviceOpt,
    PiiOpt,
    PiiPolicy,
    ProxyTokensOpt,
    expert_options,
    proxy_config,
)
from flows.cli.render import log_hint
from governance.policy import LICENCES


@command(app, log=FLOW_LIBRARIES)
@expert_options
def contribute(
    contributor: ContributorOpt,
    data: Annotated[Path, typer.Option(help="Your text: a directory of .txt/.md/.jsonl files.")],

    expert,  # ExpertConfig, from the shared expert-training options
    anchor: Annotated[Path | None, typer.Option(help="The anchor checkpoint directory (default: "
                                                "the newest registered flexo-anchor).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="New directory for the module "
                       "(default: $FLEXO_HOME/contributions/<id>/<time>).")] = None,
    pii: PiiOpt = PiiPolicy.redact,
    audit_documents: Annotated[int, typer.Option(
        help="Training documents the extraction audit probes (0 skips the audit).")] = 1000,
    audit_samples: Annotated[int, typer.Option(help="Continuations sampled per document.")] = 10,
    proxy_tokens: ProxyTokensOpt = 50_000,
    licence: Annotated[str, typer.Option(
        help="Your module's licence, an SPDX id (e.g. apache-2.0, cc-by-4.0); reviewers refuse "
             "one the policy does not know.")] = "proprietary",
    device: DeviceOpt = None,
) -> None:
    """Validate, train, evaluate, audit and publish your expert module as a pending version.

    Under `torchrun --nproc_per_node N` rank 0 runs the flow and all N processes train
    (flows/ranks.py)."""
    from components import distributed
    from components.atomic import check_output_dir
    from components.devices import pick_device
    from components.extraction_audit import AuditConfig
    from flows.contribute import ContributeConfig, contribute_flow
    from flows.ranks import follow, leading

    checked_contributor(contributor)
    if audit_documents < 0:
        raise ConfigError(f"--audit-documents must be 0 (skip) or more, got {audit_documents}")
    if out_dir is not None:
        check_output_dir(out_dir)
    audit = AuditConfig(documents=audit_documents, samples=audit_samples, seed=expert.seed) \
        if audit_documents else None
    proxies = proxy_config(proxy_tokens, expert.seed)
    cfg = ContributeConfig(expert=expert, pii=pii.value, audit=audit, proxies=proxies,
                           device=device, licence=licence.lower())
    distributed.start(pick_device(device))
    if not distributed.is_main():
        follow(contributor, data, cfg.pii, device)
        return
    with leading(), StoryDisplay(out):
        result = contribute_flow(contributor, data, anchor, cfg, out_dir)
    local = result.local
    out.print(f"published {result.registered_model} version {result.version} "
              f"(pending review); module in {result.module_dir}")
    out.print(f"own-domain perplexity {local.domain_perplexity_anchor:.1f} -> "
              f"{local.domain_perplexity:.1f} ({local.domain_change:+.1%}), public "
              f"{local.public_change:+.1%}")
    if result.proxies:
        p = result.proxies
        out.print(f"proxy: {len(p.ids)} public documents ({p.tokens:,} tokens) resemble your data "
                  f"(held-out AUC {p.auc:.3f}); only their ids are published")
    if result.audit:
        a = result.audit
        out.print(f"extraction audit: {a.extracted}/{a.documents} ({a.rate:.1%}, 95% CI "
                  f"{a.ci_low:.1%}-{a.ci_high:.1%})")
    if cfg.licence not in LICENCES:
        out.print(f"note: licence '{cfg.licence}' is not in the policy's licence table, so "
                  f"reviewers will refuse this version; contribute with --licence SPDX-ID")
    log_hint(current_log())
