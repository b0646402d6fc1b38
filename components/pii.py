"""PII screening: find, count and redact personal data in contributor text.

Kinds: e-mail addresses, phone numbers, credit-card numbers (Luhn-checked), IBANs (mod-97
checked), US social security numbers and IP addresses. Reports carry counts by kind, never values.
Kinds are matched in a fixed order and each match is replaced before the next kind is looked
for, so a credit-card number is not counted again as a phone number.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel

PiiPolicy = Literal["fail", "redact", "allow"]


def _luhn(candidate: str) -> bool:
    """Card numbers: 13-19 digits, a major-network first digit (3-6), valid Luhn checksum."""
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19 or not 3 <= digits[0] <= 6:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban(candidate: str) -> bool:
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


# (kind, pattern, extra check); order matters (see module docstring).
_RULES: list[tuple[str, re.Pattern[str], Callable[[str], bool] | None]] = [
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
     None),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), _iban),
    ("credit_card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _luhn),
    ("us_ssn", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"), None),
    # Any run of hex digits, dots and colons; only what `ipaddress` accepts counts.
    ("ip_address", re.compile(r"(?<![\w:.])[0-9A-Fa-f:.]*[0-9A-Fa-f](?![\w:]|\.\w)"), _ip),
    # Two or three digit groups with separators; not a slice of a longer digit run.
    ("phone", re.compile(r"(?<![\w+-])(?<!\d[ .])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])"
                         r"\d{3,4}[ .-]\d{3,4}(?![\w-]|[ .-]\d)"), None),
]
KINDS = tuple(kind for kind, _, _ in _RULES)


def scrub(text: str) -> tuple[str, Counter[str]]:
    """Text with every PII match replaced by `[KIND]`, and the count of matches by kind."""
    counts: Counter[str] = Counter()
    for kind, pattern, check in _RULES:
        def replace(m: re.Match[str], kind: str = kind, check=check) -> str:
            if check is not None and not check(m.group(0)):
                return m.group(0)
            counts[kind] += 1
            return f"[{kind.upper()}]"

        text = pattern.sub(replace, text)
    return text, counts


class PiiReport(BaseModel):
    policy: PiiPolicy
    documents: int
    documents_with_pii: int
    counts: dict[str, int]  # by kind, every kind listed; never the values

    @property
    def found(self) -> int:
        return sum(self.counts.values())


def screen(texts: list[str], policy: PiiPolicy) -> tuple[list[str], PiiReport]:
    """Texts to train on (redacted when the policy says so) and the counts report."""
    total: Counter[str] = Counter()
    out, flagged = [], 0
    for text in texts:
        clean, counts = scrub(text)
        flagged += bool(counts)
        total.update(counts)
        out.append(clean if policy == "redact" else text)
    report = PiiReport(policy=policy, documents=len(texts), documents_with_pii=flagged,
                       counts={k: total.get(k, 0) for k in KINDS})
    return out, report
