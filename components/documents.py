"""Documents, corpora, deterministic splits and content fingerprints.

A corpus is a list of normalised, exact-deduplicated documents. Splits and fingerprints depend only
on document *content*, never on file order, so the same text always lands in the same split and
yields the same fingerprint on every machine.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
# Per-mille boundaries of the document-hash buckets: 90% train, 5% validation, 5% test.
_SPLIT_EDGES = {"train": (0, 900), "validation": (900, 950), "test": (950, 1000)}


def normalise(text: str) -> str:
    """NFC, Unix newlines, no trailing spaces, no leading/trailing blank lines."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def document_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_bucket(digest: str, salt: str = "", buckets: int = 1000) -> int:
    """A stable bucket in [0, buckets) from a document hash; `salt` gives independent draws."""
    if salt:
        digest = hashlib.sha256(f"{salt}:{digest}".encode()).hexdigest()
    return int(digest[:12], 16) % buckets


@dataclass(frozen=True)
class Document:
    text: str
    source: str  # where it came from (file or package path), for messages only
    digest: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", document_hash(self.text))

    @property
    def split(self) -> Split:
        bucket = hash_bucket(self.digest)
        return next(s for s, (lo, hi) in _SPLIT_EDGES.items() if lo <= bucket < hi)


class CorpusFingerprint(BaseModel):
    """What may leave a contributor's machine about a corpus: a digest and counts, never text."""

    model_config = ConfigDict(frozen=True)

    digest: str  # sha256 over the sorted document hashes
    documents: int
    characters: int
    bytes: int


@dataclass
class Corpus:
    name: str
    documents: list[Document]
    licence: str = "unknown"
    description: str = ""

    @classmethod
    def from_texts(cls, name: str, texts: Iterable[tuple[str, str]], **meta: str) -> Corpus:
        """Build from (text, source) pairs: normalise, drop empties, exact-dedupe (first wins)."""
        normalised = ((normalise(raw), source) for raw, source in texts)
        return cls.from_documents(name, (Document(t, s) for t, s in normalised if t), **meta)

    @classmethod
    def from_documents(cls, name: str, documents: Iterable[Document], **meta: str) -> Corpus:
        """Build from documents already normalised: exact-dedupe (first wins)."""
        seen: set[str] = set()
        docs: list[Document] = []
        for doc in documents:
            if doc.digest not in seen:
                seen.add(doc.digest)
                docs.append(doc)
        return cls(name=name, documents=docs, **meta)

    def split(self, split: Split) -> Corpus:
        docs = [d for d in self.documents if d.split == split]
        return Corpus(f"{self.name}:{split}", docs, self.licence, self.description)

    def training_texts(self) -> list[str]:
        """What an expert trains on: the train split, or everything when a corpus is too small
        to have one. The extraction audit probes the same texts."""
        return self.split("train").texts() or self.texts()

    def texts(self) -> list[str]:
        """Texts in a canonical (hash) order, so anything built from them is order-independent."""
        return [d.text for d in sorted(self.documents, key=lambda d: d.digest)]

    @property
    def characters(self) -> int:
        return sum(len(d.text) for d in self.documents)

    @property
    def size_bytes(self) -> int:
        return sum(len(d.text.encode("utf-8")) for d in self.documents)

    def fingerprint(self) -> CorpusFingerprint:
        h = hashlib.sha256()
        for digest in sorted(d.digest for d in self.documents):
            h.update(bytes.fromhex(digest))
        return CorpusFingerprint(
            digest=h.hexdigest(),
            documents=len(self.documents),
            characters=self.characters,
            bytes=self.size_bytes,
        )
