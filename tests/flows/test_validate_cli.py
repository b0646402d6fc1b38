"""`flexo validate`: a clean corpus passes; each kind of bad corpus fails naming its expectation;
the reports hold statistics, never text."""

import json

import pytest

from components.builtin_corpora import load_domain


@pytest.fixture(scope="module")
def literature_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("lit")
    docs = load_domain("literature").documents[:80]
    for i, doc in enumerate(docs):
        (directory / f"scene{i:03d}.md").write_text(doc.text)
    return directory, [d.text for d in docs]


def _bad(tmp_path, kind):
    d = tmp_path / kind
    d.mkdir()
    if kind == "non_utf8":
        for i in range(30):
            (d / f"{i}.txt").write_bytes(f"caf\u00e9 number {i} ".encode("latin-1") * 50)
    elif kind == "duplicates":
        for i in range(30):
            (d / f"{i}.txt").write_text("the same long paragraph of text " * 40 + str(i % 3))
    elif kind == "too_short":
        for i in range(400):
            (d / f"{i}.txt").write_text(f"hi {i}")
    elif kind == "binary":
        import random

        rng = random.Random(0)
        for i in range(30):
            (d / f"{i}.txt").write_text("".join(chr(rng.randrange(0, 0x250)) for _ in range(2000)))
    return d


def test_clean_builtin_text_passes_and_reports_hold_no_text(cli, literature_dir, tmp_path):
    directory, texts = literature_dir
    result = cli("validate", "--data", directory, "--report", tmp_path / "r")
    assert result.exit_code == 0, result.output
    written = "".join(p.read_text() for p in (tmp_path / "r").iterdir())
    summary = json.loads((tmp_path / "r" / "validation.json").read_text())
    assert summary["validation"]["success"] and summary["validation"]["statistics"]["documents"] == 80
    for text in texts:
        for line in text.splitlines():
            if len(line) > 40:
                assert line not in written


@pytest.mark.parametrize(("kind", "expectation"), [
    ("empty", "enough documents"), ("non_utf8", "valid UTF-8"),
    ("duplicates", "few duplicates"), ("too_short", "document length"),
    ("binary", "printable text")])
def test_bad_corpora_fail_naming_the_expectation(cli, tmp_path, kind, expectation):
    result = cli("validate", "--data", _bad(tmp_path, kind), "--report", tmp_path / "r")
    assert result.exit_code == 3, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: data checks failed:") and expectation in last, last
    summary = json.loads((tmp_path / "r" / "validation.json").read_text())
    assert expectation in summary["validation"]["failed"]


def test_exported_jsonl_with_unicode_line_separators_passes(cli, tmp_path):
    """Legal texts hold U+2028; a .jsonl line is split at '\\n' only, as `load_directory` reads it."""
    from components.user_data import load_directory

    out = tmp_path / "legal"
    assert cli("data", "export", "--domain", "legal", "--split", "train", "--out", out).exit_code == 0
    assert "\u2028" in (out / "legal-train.jsonl").read_text(encoding="utf-8")
    result = cli("validate", "--data", out, "--report", tmp_path / "r")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r" / "validation.json").read_text())
    assert summary["validation"]["statistics"]["documents"] == len(load_directory(out).documents)
