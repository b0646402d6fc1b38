"""PII screening finds every planted kind, counts it right, and never reports a value."""

import pytest
from pii_samples import DECOYS, MORE_PHONES, PLANTED

from components.pii import KINDS, screen, scrub


def _document() -> str:
    values = [v for vs in PLANTED.values() for v in vs]
    return "Patient note. " + " and ".join(values) + ". Not PII: " + ", ".join(DECOYS) + "."


def test_every_planted_kind_is_found_and_counted():
    _, counts = scrub(_document())
    assert dict(counts) == {k: len(v) for k, v in PLANTED.items()}


@pytest.mark.parametrize("policy", ["redact", "allow", "fail"])
def test_redact_removes_values_and_reports_only_counts(policy):
    texts, report = screen([_document(), "clean text"], policy)
    assert report.documents == 2 and report.documents_with_pii == 1
    assert set(report.counts) == set(KINDS) and report.found == 11
    dumped = report.model_dump_json()
    for value in (v for vs in PLANTED.values() for v in vs):
        assert value not in dumped
        assert (value in texts[0]) == (policy != "redact")
    assert texts[1] == "clean text"


def test_decoys_alone_are_not_pii():
    _, counts = scrub("Not PII: " + ", ".join(DECOYS) + ".")
    assert counts == {}
    _, report = screen(DECOYS, "redact")
    assert report.documents_with_pii == 0 and report.found == 0


@pytest.mark.parametrize("number", MORE_PHONES)
def test_phone_formats_are_counted_once(number):
    text, counts = scrub(f"Call {number} after 12:30 on 2020-01-15.")
    assert dict(counts) == {"phone": 1}
    assert text == "Call [PHONE] after 12:30 on 2020-01-15."


def test_phones_are_found_anywhere_in_a_long_document_and_short_numbers_far_from_them_are_not():
    # The matcher reads only the words around runs of 7+ digits: a phone at either end of a long
    # text is still found; a 5-digit issue number pages away is not read as a German number.
    prose = "Fixed in issue 16967 of the tracker. " + "Nothing personal here. " * 400
    numbers = MORE_PHONES[:2]
    text, counts = scrub(f"{numbers[0]} is the desk. {prose}Out of hours: {numbers[1]}")
    assert dict(counts) == {"phone": 2}
    assert text == f"[PHONE] is the desk. {prose}Out of hours: [PHONE]"



@pytest.mark.parametrize("policy", ["redact", "allow"])
def test_a_screened_corpus_is_what_training_sees(policy):
    """`screen_corpus` (contribute's step): redacted text under `redact`, split by that text's
    hash, each document's source kept; the corpus untouched under `allow`."""
    from components.documents import Corpus
    from components.pii import screen_corpus

    raw = Corpus.from_texts("notes", [(f"Visit {i}: mail patient{i}@example.org.", f"f{i}")
                                      for i in range(40)], licence="own")
    seen, report = screen_corpus(raw, policy)
    assert report.counts["email"] == 40 and seen.licence == "own"
    assert [d.source for d in seen.documents] == [d.source for d in raw.documents]
    if policy == "allow":
        assert seen.fingerprint() == raw.fingerprint()
    else:
        assert all("[EMAIL]" in d.text and "@" not in d.text for d in seen.documents)
        assert seen.fingerprint() == Corpus.from_texts(
            "x", [(d.text.split(" mail ")[0] + " mail [EMAIL].", "") for d in raw.documents]
        ).fingerprint() != raw.fingerprint()
