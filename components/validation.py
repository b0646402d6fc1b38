"""Data checks for a contributor corpus, as a Great Expectations suite (GX 1.x, ephemeral).

The suite sees one row of *statistics* per file or JSONL line — never the text itself: whether a
text field is present, whether it decodes as UTF-8, its length, printable share, a content hash —
so neither GX's result nor flexo's report can carry a sentence of the corpus. Unlike
`user_data.load_directory`, which refuses bad files one at a time, this reads everything leniently
and reports every failing expectation at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from pydantic import BaseModel, Field

from components.documents import normalise
from components.errors import DataError
from components.user_data import SUFFIXES

log = logging.getLogger(__name__)


class ValidationConfig(BaseModel):
    min_documents: int = Field(20, ge=1)
    min_total_chars: int = Field(20_000, ge=0)
    min_chars: int = Field(20, ge=0)  # per document, for `mostly` of them
    max_chars: int = Field(2_000_000, gt=0)
    max_duplicate_rate: float = Field(0.3, ge=0, le=1)
    min_printable_ratio: float = Field(0.95, ge=0, le=1)
    mostly: float = Field(0.95, gt=0, le=1)  # share of documents each per-document bound must hold for


class ExpectationOutcome(BaseModel):
    name: str
    success: bool
    observed: float | int | str | None = None


class ValidationReport(BaseModel):
    """Counts and statistics only: safe to log, attach to MLflow and publish."""

    success: bool
    failed: list[str]
    expectations: list[ExpectationOutcome]
    statistics: dict[str, float]


def _rows(directory: Path) -> list[dict]:
    """One statistics row per document; unreadable content becomes a failing row, not an error."""
    if not Path(directory).is_dir():
        raise DataError(f"data directory {directory} does not exist; pass a directory of "
                        f"{', '.join(SUFFIXES)} files")
    rows = []
    for path in sorted(Path(directory).rglob("*")):
        if not path.is_file() or any(p.startswith(".") for p in path.relative_to(directory).parts):
            continue
        raw = path.read_bytes()
        if path.suffix.lower() not in SUFFIXES:
            rows.append(_stats(None, supported=False))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            rows.append(_stats(raw.decode("utf-8", errors="replace"), utf8=False))
            continue
        if path.suffix.lower() != ".jsonl":
            rows.append(_stats(text))
            continue
        for line in text.split("\n"):  # as load_directory reads it: not at U+2028 and kin
            if line.strip():
                try:
                    value = json.loads(line).get("text")
                except (json.JSONDecodeError, AttributeError):
                    value = None
                rows.append(_stats(value if isinstance(value, str) else None))
    return rows


def _stats(text: str | None, utf8: bool = True, supported: bool = True) -> dict:
    if text is None:
        return {"has_text": False, "supported_type": supported, "utf8": utf8, "chars": 0,
                "printable_ratio": 0.0, "digest": None}
    text = normalise(text)
    printable = sum(c.isprintable() or c in "\n\t" for c in text)
    return {"has_text": True, "supported_type": supported, "utf8": utf8, "chars": len(text),
            "printable_ratio": printable / max(len(text), 1),
            "digest": hashlib.sha256(text.encode("utf-8", errors="replace")).hexdigest()}


def _suite(cfg: ValidationConfig):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name="flexo-contributor-corpus")
    checks = [
        ("enough documents", gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_documents)),
        ("text field present", gxe.ExpectColumnValuesToBeInSet(column="has_text",
                                                               value_set=[True])),
        ("supported file types", gxe.ExpectColumnValuesToBeInSet(column="supported_type",
                                                                 value_set=[True])),
        ("valid UTF-8", gxe.ExpectColumnValuesToBeInSet(column="utf8", value_set=[True])),
        ("enough text", gxe.ExpectColumnSumToBeBetween(column="chars",
                                                       min_value=cfg.min_total_chars)),
        ("document length", gxe.ExpectColumnValuesToBeBetween(
            column="chars", min_value=cfg.min_chars, max_value=cfg.max_chars, mostly=cfg.mostly)),
        ("few duplicates", gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column="digest", min_value=1 - cfg.max_duplicate_rate)),
        ("printable text", gxe.ExpectColumnValuesToBeBetween(
            column="printable_ratio", min_value=cfg.min_printable_ratio, mostly=cfg.mostly)),
    ]
    for name, expectation in checks:
        expectation.meta = {"name": name}
        suite.add_expectation(expectation)
    return suite


def validate_directory(directory: Path, cfg: ValidationConfig | None = None,
                       ) -> tuple[ValidationReport, dict]:
    """Run the suite; returns flexo's report and GX's own result (both free of text)."""
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from components.progress import bars_enabled

    cfg = cfg or ValidationConfig()
    columns = ["has_text", "supported_type", "utf8", "chars", "printable_ratio", "digest"]
    frame = pd.DataFrame(_rows(directory), columns=columns)
    context = gx.get_context(mode="ephemeral")
    # GX's per-metric bars follow flexo's switch (off while a live display owns the terminal).
    context.variables.progress_bars = ProgressBarsConfig(globally=bars_enabled())
    batch = (context.data_sources.add_pandas(name="contributor")
             .add_dataframe_asset(name="documents")
             .add_batch_definition_whole_dataframe("all"))
    suite = context.suites.add(_suite(cfg))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="contributor-corpus", data=batch, suite=suite))
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    outcomes = []
    for r in result.results:
        observed = r.result.get("observed_value", r.result.get("unexpected_percent"))
        outcomes.append(ExpectationOutcome(name=r.expectation_config.meta["name"],
                                           success=bool(r.success),
                                           observed=observed if not isinstance(observed, list)
                                           else None))
    digests = frame["digest"].dropna()
    stats = {"documents": float(len(frame)), "characters": float(frame["chars"].sum()),
             "duplicate_rate": float(1 - digests.nunique() / len(digests)) if len(digests) else 0.0,
             "non_utf8_documents": float((~frame["utf8"]).sum()),
             "mean_printable_ratio": float(frame["printable_ratio"].mean()) if len(frame) else 0.0}
    report = ValidationReport(success=all(o.success for o in outcomes),
                              failed=[o.name for o in outcomes if not o.success],
                              expectations=outcomes, statistics=stats)
    return report, result.to_json_dict()
