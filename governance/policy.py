"""The consortium's governance policy: who holds which role, how many approvals a module needs,
the gates a module must pass at review, and which licences may go into a release.

One YAML file (`governance/policy.yaml` by default), validated whole: a policy that names an
unknown field, a value out of range or an unknown licence is refused before it governs anything,
naming the field and the reason. Every rule that refuses says which rule, the figure and the
threshold, so the refused party knows what to change.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from governance.contributors import ContributorId

DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")
POLICY_FILE = "policy.yaml"  # the policy a home sets (`flexo policy set`), under FLEXO_HOME

# Module licence (SPDX id, lowercase) -> the release licences a module under it may go into. A
# permissive module fits any release; share-alike and non-commercial terms travel with it.
_ANY = frozenset({"apache-2.0", "mit", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "odc-by-1.0"})
LICENCES: dict[str, frozenset[str]] = {
    "apache-2.0": _ANY, "mit": _ANY, "bsd-3-clause": _ANY, "cc0-1.0": _ANY, "cc-by-4.0": _ANY,
    "odc-by-1.0": _ANY, "psf-2.0": _ANY,
    "cc-by-sa-4.0": frozenset({"cc-by-sa-4.0"}),
    "cc-by-nc-4.0": frozenset({"cc-by-nc-4.0"}),
}
RELEASE_LICENCES = _ANY


class PolicyError(ValueError):
    """The policy file is unusable, or a rule refused; the message names the field or rule."""


KeyDigest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]


def key_digest(key: str) -> str:
    """How the policy holds an API key: its SHA-256, never the key itself."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


class Roles(BaseModel):
    """Who may do what. An empty `reviewers` or `contributors` list admits anyone (the declared
    roster still applies to reviewers); consumers map to the experts they may switch on
    (`"*"`: all); `consumer_keys` maps consumers to the digests of their API keys (a server
    knows a caller by its key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operators: list[ContributorId] = ["operator"]
    reviewers: list[ContributorId] = []
    contributors: list[ContributorId] = []
    consumers: dict[ContributorId, list[str]] = {}
    consumer_keys: dict[ContributorId, list[KeyDigest]] = {}


class ModuleGates(BaseModel):
    """Applied when a reviewer approves, to the figures the contributor's own flow measured and
    published (fractions, not percent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # own-domain perplexity (the contributor's local evaluation) must fall at least this much
    min_own_improvement: float = Field(0.0, ge=0, lt=1)
    # public perplexity of the module alone may rise at most this much
    max_public_change: float = Field(0.05, ge=0)
    # share of audited training documents the module reproduces; None: not judged
    max_extraction_rate: float | None = Field(0.05, ge=0, le=1)
    dp_required: bool = False


# The gates a reviewer may waive, with a recorded note; a licence is never waived.
WAIVABLE = tuple(ModuleGates.model_fields)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    approvals_required: int = Field(2, ge=1, le=10)  # never counting the contributor's own
    roles: Roles = Roles()
    module_gates: ModuleGates = ModuleGates()
    release_licence: str = "apache-2.0"

    @field_validator("release_licence")
    @classmethod
    def _known_release_licence(cls, value: str) -> str:
        value = value.lower()
        if value not in RELEASE_LICENCES:
            raise ValueError(f"unknown release licence '{value}'; use one of "
                             f"{', '.join(sorted(RELEASE_LICENCES))}")
        return value


def load_policy(path: Path | None = None) -> Policy:
    """The policy at `path` (default: the shipped one), or a PolicyError naming what is wrong."""
    path = Path(path or DEFAULT_POLICY)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"policy file {path} does not exist; give an existing file or leave "
                          f"the option out for the default policy") from None
    return parse_policy(text, path)


def parse_policy(text: str, source: Path | str) -> Policy:
    """The policy that `text` (read from `source`) states, or a PolicyError naming the field."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"policy {source} is not valid YAML ({str(e).splitlines()[0]})") from None
    try:
        return Policy.model_validate(raw or {})
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        why = first["msg"].removeprefix("Value error, ")
        raise PolicyError(f"policy {source}: field {field}: {why}") from None


def policy_digest(text: str) -> str:
    """sha256 of a policy file's bytes, as the ledger records a policy change."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ModuleFigures(BaseModel):
    """What a module's publication tells a reviewer: numbers measured on the contributor's
    machine (the manifest), never its text."""

    own_change: float | None  # own-domain perplexity, relative change against the anchor
    public_change: float | None
    extraction_rate: float | None  # None: no audit was run
    dp_epsilon: float | None  # None: trained without differential privacy
    licence: str


def gate_failures(policy: Policy, figures: ModuleFigures, waived: frozenset[str] = frozenset(),
                  ) -> list[str]:
    """Every gate the module fails, as `rule: figure, threshold`; a gate in `waived` (recorded
    by the reviewer, with a reason) is not applied."""
    gates, failures = policy.module_gates, []

    def fail(rule: str, text: str) -> None:
        if rule not in waived:
            failures.append(f"module_gates.{rule}: {text}")

    need = gates.min_own_improvement
    if figures.own_change is None:
        fail("min_own_improvement", "no local evaluation was published; contribute again with "
                                    "held-out data")
    elif -figures.own_change < need:
        fail("min_own_improvement", f"own-domain perplexity {figures.own_change:+.1%}, must fall "
                                    f"at least {need:.1%}")
    if figures.public_change is not None and figures.public_change > gates.max_public_change:
        fail("max_public_change", f"public perplexity {figures.public_change:+.1%}, at most "
                                  f"+{gates.max_public_change:.1%}")
    limit = gates.max_extraction_rate
    if limit is not None:
        if figures.extraction_rate is None:
            fail("max_extraction_rate", f"no extraction audit was published (at most {limit:.1%} "
                                        f"of audited documents may be reproduced)")
        elif figures.extraction_rate > limit:
            fail("max_extraction_rate", f"extraction rate {figures.extraction_rate:.1%}, at most "
                                        f"{limit:.1%}")
    if gates.dp_required and figures.dp_epsilon is None:
        fail("dp_required", "trained without differential privacy; train with --dp-epsilon")
    licence = figures.licence.lower()
    if licence not in LICENCES:
        failures.append(f"licence: module licence '{figures.licence}' is unknown; use one of "
                        f"{', '.join(sorted(LICENCES))}")
    elif policy.release_licence not in LICENCES[licence]:
        failures.append(f"licence: a module under {licence} cannot go into a release under "
                        f"{policy.release_licence}")
    return failures
