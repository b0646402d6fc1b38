"""What a release is on record (DESIGN §3 `release.json`), the gate that decides whether it may
reach production, and the model card that credits every contributor. No torch: figures come in
as numbers from the evaluation."""

from __future__ import annotations

from pydantic import BaseModel, Field

from governance.contributors import ContributorId
from governance.markdown import markdown_table

PUBLIC_DOMAIN = "public"


class ReleasedExpert(BaseModel):
    contributor: ContributorId
    registered_model: str
    version: int
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    data_fingerprint: str
    licence: str = ""  # the module's, as published
    reviewed_by: str
    reviewer_kind: str
    contribute_run_id: str


class DomainFigures(BaseModel):
    """Held-out perplexity of the anchor and the release on one domain, and where tokens went."""

    anchor: float = Field(gt=0)
    release: float = Field(gt=0)
    tokens: int = Field(ge=0)
    routing: dict[str, float] = {}  # expert -> share of router mass on this domain's tokens

    @property
    def change(self) -> float:
        return self.release / self.anchor - 1


class GateCheck(BaseModel):
    name: str
    passed: bool
    detail: str


class GateDecision(BaseModel):
    passed: bool
    checks: list[GateCheck]

    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]


def judge_release(figures: dict[str, DomainFigures], experts: list[ReleasedExpert],
                  max_public_increase: float) -> GateDecision:
    """The operator's gate: the release costs public text at most `max_public_increase` (the
    routing failure DESIGN §6 warns of) and holds at least one module. Whether it helps each
    contributor's domain only the contributor can measure: that is its acceptance
    (`governance.acceptance`), which `production` waits for."""
    checks = []
    public = figures.get(PUBLIC_DOMAIN)
    if public is None:
        checks.append(GateCheck(name="public", passed=False, detail="no public held-out figures"))
    else:
        checks.append(GateCheck(name="public", passed=public.change <= max_public_increase,
                                detail=f"perplexity {public.anchor:.2f} -> {public.release:.2f} "
                                       f"({public.change:+.1%}), limit {max_public_increase:+.0%}"))
    if not experts:
        checks.append(GateCheck(name="experts", passed=False, detail="no approved module"))
    return GateDecision(passed=all(c.passed for c in checks), checks=checks)


class ReleaseRecord(BaseModel):
    """`release.json`: which modules, from which anchor, measured how, decided how."""

    format_version: int = 1
    anchor_version: int
    anchor_fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    experts: list[ReleasedExpert]
    excluded: dict[str, str] = {}  # contributor -> why their module is not in this release
    top_k: int
    plan_digest: str
    checkpoint_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # fingerprint of the merged weights
    router_tuning: dict[str, float] | None = None
    figures: dict[str, DomainFigures]
    gate: GateDecision
    ledger_head: str | None = None  # the audit ledger arrives with the Governance issue
    code_version: str
    created_at: str  # when the release was built, by the operator's clock


def figures_table(figures: dict[str, DomainFigures], routing: bool = False) -> str:
    """Held-out perplexity per domain, anchor against release (the model card's table); with
    `routing`, each domain's router shares too (the release evaluation's `evaluation.md`)."""
    headers, align = ["domain", "anchor", "release", "change"], ["left", "right", "right", "right"]
    rows = [[domain, f"{f.anchor:.2f}", f"{f.release:.2f}", f"{f.change:+.1%}"]
            for domain, f in figures.items()]
    if routing:
        headers.append("routing")
        align.append("left")
        for row, f in zip(rows, figures.values(), strict=True):
            row.append(", ".join(f"{expert} {share:.0%}" for expert, share in f.routing.items()))
    return markdown_table(headers, rows, align)


def model_card(record: ReleaseRecord) -> str:
    """The release's README.md: what it is, who contributed, how it measured."""
    contributors = [[e.contributor, f"{e.registered_model} v{e.version}", e.licence or "?",
                     f"`{e.data_fingerprint[:16]}`", f"`{e.weights_sha256[:16]}`",
                     f"{e.reviewed_by} ({e.reviewer_kind})"] for e in record.experts]
    contributors += [[f"~~{who}~~", f"not included: {why}", "", "", "", ""]
                     for who, why in record.excluded.items()]
    verdict = "passed" if record.gate.passed else "FAILED: " + "; ".join(record.gate.failures())
    return "\n".join([
        "---", "library_name: transformers", "tags: [flexolmo, mixture-of-experts, flexo]",
        "---", "", "# flexo release", "",
        ("A FlexOlmo mixture of experts: the public anchor's FFN is expert 0 (`public`); each "
         "contributor's module is one more expert, trained on closed data that never left "
         "the contributor. Any expert can be switched off at inference "
         "(`flexo generate --exclude ID`)."), "",
        (f"- anchor: `flexo-anchor` version {record.anchor_version} "
         f"(fingerprint `{record.anchor_fingerprint[:16]}`)"),
        f"- experts active per token: {record.top_k}; merge plan `{record.plan_digest[:16]}`",
        "", "## Contributors", "",
        markdown_table(["contributor", "module version", "licence", "data fingerprint",
                        "weights sha256", "reviewed by"], contributors),
        "", "## Held-out perplexity", "",
        figures_table(record.figures),
        "", f"Release gate: {verdict}.", ""])
