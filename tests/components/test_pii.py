"""PII screening finds every planted kind, counts it right, and never reports a value."""

import pytest

from components.pii import KINDS, screen, scrub

PLANTED = {
    "email": ["jane.doe@example.org", "ops+alerts@mail.hospital-7.co.uk"],
    "phone": ["+1 (555) 123-4567", "030 1234 5678"],
    "credit_card": ["4111 1111 1111 1111", "5500-0000-0000-0004"],
    "iban": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432"],
    "us_ssn": ["123-45-6789"],
    "ip_address": ["192.168.1.20", "2001:db8::1"],
}
DECOYS = ["card 4111-1111-1111-1112", "version 3.11.7", "2020-01-15", "000-12-3456", "999.1.1.1",
          "DE00 0000 0000 0000 0000 00", "12:30"]


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
