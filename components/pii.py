"""PII screening: find, count and redact personal data in contributor text.

Kinds: e-mail addresses, IBANs, credit-card numbers, US social security numbers, IP addresses and
phone numbers. Reports carry counts by kind, never values. Kinds are matched in a fixed order and
each match is replaced before the next kind is looked for, so a card number is not counted again
as a phone number.

Checks come from maintained libraries rather than hand-written rules: `stdnum` (python-stdnum) for
the Luhn checksum of cards and for IBANs (per-country length and format, mod-97), `ipaddress` for
IP addresses, and `phonenumbers` (Google's libphonenumber metadata) for phone numbers, which tells
a real number plan from dates, versions and other digit runs. A number written with `+` and a
country code needs only a plausible length for that country; one without must be a valid number of
one of `PHONE_REGIONS`, and not a hyphenated ISBN (`stdnum.isbn`). The matcher is slow, so it only
reads the words around runs of 7+ digits close together.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from typing import Literal

import phonenumbers
from phonenumbers import Leniency
from pydantic import BaseModel
from stdnum import iban, isbn, luhn

from components.documents import Corpus

PiiPolicy = Literal["fail", "redact", "allow"]

# Regions whose national-format numbers (no `+country code`) count as phone numbers.
PHONE_REGIONS = ("US", "GB", "DE")
# (region, leniency) passes: `None` finds only `+country` numbers; the rest need a valid number.
_PHONE_PASSES: tuple[tuple[str | None, int], ...] = (
    (None, Leniency.POSSIBLE), *((r, Leniency.VALID) for r in PHONE_REGIONS))
# Cheap prefilter: the matcher only runs on text with 7+ digits joined by at most short separators.
_DIGIT_RUN = re.compile(r"\d(?:\W{0,3}\d){6,}")
_PHONE_CONTEXT = 32  # characters either side of a digit run that the matcher also reads


def _card(candidate: str) -> bool:
    """Card numbers: 13-19 digits, a major-network first digit (3-6), valid Luhn checksum."""
    digits = "".join(c for c in candidate if c.isdigit())
    return 13 <= len(digits) <= 19 and digits[0] in "3456" and luhn.is_valid(digits)


def _isbn(candidate: str) -> bool:
    """A valid ISBN hyphenated as ISBNs are (0-306-40615-2 is also a valid German number)."""
    return isbn.is_valid(candidate) and isbn.format(candidate) == candidate


def _ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _phone_windows(text: str) -> list[tuple[int, int]]:
    """Spans of `text` the phone matcher reads: each run of 7+ digits with `_PHONE_CONTEXT`
    characters either side, widened to whole words and merged where they overlap. The matcher
    walks every candidate in what it is given, so a long document now costs in proportion to its
    digit runs, not its length (screening the built-in code corpus takes half the time), and a
    short number pages away from any digit run is no longer read as a phone number."""
    windows: list[tuple[int, int]] = []
    for run in _DIGIT_RUN.finditer(text):
        start = _word_edge(text, max(0, run.start() - _PHONE_CONTEXT), -1)
        end = _word_edge(text, min(len(text), run.end() + _PHONE_CONTEXT), 1)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows


def _word_edge(text: str, i: int, step: int) -> int:
    """`i` moved back (`step` -1) or on (+1) to the nearest whitespace, at most
    `_PHONE_CONTEXT` characters (a word longer than that holds no phone number's edge)."""
    for _ in range(_PHONE_CONTEXT):
        if not 0 < i < len(text) or text[i if step > 0 else i - 1].isspace():
            break
        i += step
    return i


def _phone_spans(text: str, window: tuple[int, int], region: str | None,
                 leniency: int) -> list[tuple[int, int]]:
    """Phone numbers inside `window` of `text`, as spans of `text` (hyphenated ISBNs left out)."""
    offset, end = window
    return [(offset + m.start, offset + m.end)
            for m in phonenumbers.PhoneNumberMatcher(text[offset:end], region, leniency)
            if not _isbn(m.raw_string)]


# (kind, pattern, extra check); order matters (see module docstring). Phones use the matcher.
_RULES: list[tuple[str, re.Pattern[str], Callable[[str], bool] | None]] = [
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
     None),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), iban.is_valid),
    ("credit_card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card),
    ("us_ssn", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"), None),
    # Any run of hex digits, dots and colons; only what `ipaddress` accepts counts.
    ("ip_address", re.compile(r"(?<![\w:.])[0-9A-Fa-f:.]*[0-9A-Fa-f](?![\w:]|\.\w)"), _ip),
]
KINDS = (*(kind for kind, _, _ in _RULES), "phone")


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
    windows = _phone_windows(text)  # found again only after a pass has changed the text
    for region, leniency in _PHONE_PASSES:
        spans = [span for window in windows for span in
                 _phone_spans(text, window, region, leniency)]
        for start, end in reversed(spans):
            text = f"{text[:start]}[PHONE]{text[end:]}"
        if spans:
            counts["phone"] += len(spans)
            windows = _phone_windows(text)
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


def screen_corpus(corpus: Corpus, policy: PiiPolicy) -> tuple[Corpus, PiiReport]:
    """`screen` over a corpus: what training or evaluation sees (the redacted corpus when the
    policy says so: its splits follow the redacted text) and the counts report."""
    texts, report = screen([d.text for d in corpus.documents], policy)
    if policy == "redact":
        corpus = Corpus.from_texts(corpus.name, ((t, d.source) for t, d in
                                                 zip(texts, corpus.documents, strict=True)),
                                   licence=corpus.licence, description=corpus.description)
    return corpus, report
