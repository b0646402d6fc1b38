import json

import pytest

from components.documents import SPLITS, Corpus, normalise
from components.errors import DataError
from components.user_data import load_directory


def test_normalise_unifies_newlines_trailing_space_and_unicode_form():
    assert normalise("e\u0301\r\nline  \r\n\n") == "\u00e9\nline"


def test_exact_duplicates_are_dropped_after_normalisation():
    c = Corpus.from_texts("x", [("a b", "1"), ("a b  \r\n", "2"), ("c", "3"), ("   ", "4")])
    assert [d.text for d in c.documents] == ["a b", "c"]


def _write_corpus(directory, docs):
    directory.mkdir()
    for i, text in enumerate(docs):
        (directory / f"doc{i:03d}.txt").write_text(text)


def test_fingerprint_ignores_file_order_but_not_content(tmp_path):
    docs = [f"document number {i} about something" for i in range(40)]
    _write_corpus(tmp_path / "a", docs)
    _write_corpus(tmp_path / "b", list(reversed(docs)))  # same text, other file names/order
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "all.jsonl").write_text(
        "\n".join(json.dumps({"text": t}) for t in docs[::-1]))
    changed = docs.copy()
    changed[17] += "!"
    _write_corpus(tmp_path / "d", changed)

    fa, fb, fc, fd = (load_directory(tmp_path / n).fingerprint() for n in "abcd")
    assert fa == fb == fc
    assert fd.digest != fa.digest and fd.documents == fa.documents
    assert "document number" not in fa.model_dump_json()  # digest and counts only


def test_splits_are_disjoint_cover_everything_and_follow_content(tmp_path):
    docs = [f"text {i} " * 3 for i in range(400)]
    corpus = Corpus.from_texts("x", [(t, str(i)) for i, t in enumerate(docs)])
    shuffled = Corpus.from_texts("x", [(t, str(i)) for i, t in enumerate(reversed(docs))])
    parts = {s: {d.digest for d in corpus.split(s).documents} for s in SPLITS}
    assert sum(map(len, parts.values())) == len(corpus.documents)
    assert not (parts["train"] & parts["validation"] or parts["train"] & parts["test"]
                or parts["validation"] & parts["test"])
    assert all(parts[s] == {d.digest for d in shuffled.split(s).documents} for s in SPLITS)
    assert 0.8 < len(parts["train"]) / len(docs) < 0.97


def test_jsonl_without_text_field_is_refused(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"body": "no text field"}\n')
    with pytest.raises(DataError, match='"text" field'):
        load_directory(tmp_path)
