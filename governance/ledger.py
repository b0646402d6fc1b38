"""The governance ledger: every governance event, append-only, hash-chained, and signed.

Data owners trust a withdrawal or a credit only if no one, the operator included, can rewrite what
happened without it showing. Each entry carries the previous entry's hash over canonical JSON, so
an edited, deleted, inserted or reordered entry breaks the chain from there on. Each entry is
written together with a checkpoint: the RFC 6962 Merkle root of the log up to and including it,
signed with the operator's Ed25519 key, so a chain rewritten end to end (hashes recomputed) no
longer matches its checkpoints. Flows also log checkpoints to MLflow as an outside witness: only a
witness catches the newest entries deleted together with their checkpoints.

One JSON line per event (`{"entry": ..., "checkpoint": ...}`); an append rewrites the file to a
temporary one and renames it over the old (under a lock), so a process killed mid-append leaves the
old ledger or the new one, never a torn line. Entries hold ids and numbers, never contributor text.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

LEDGER_FILE = "ledger.jsonl"
KEY_FILE = "ledger-ed25519.pem"
GENESIS = "0" * 64  # the `prev` of entry 0

Event = Literal["publish", "review", "acceptance", "release", "promotion", "withdrawal-request",
                "purge", "verification", "policy-change", "refusal", "alias-revert"]
Detail = str | int | float | bool | None


class LedgerBroken(ValueError):
    """The ledger no longer matches what was written; the message names the first bad entry."""


def canonical(obj: object) -> bytes:
    """The bytes every hash and signature is over: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


class LedgerEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    time: str  # ISO 8601, UTC
    event: Event
    actor: str  # who acted (`--as`, a reviewer, `system`)
    subject: str  # what it is about: a contributor id, `flexo-release v3`, a policy file
    details: dict[str, Detail]
    prev: str  # the previous entry's hash; GENESIS for entry 0
    hash: str  # sha256 over the canonical JSON of every other field

    def computed_hash(self) -> str:
        return hashlib.sha256(canonical(self.model_dump(exclude={"hash"}))).hexdigest()


class Checkpoint(BaseModel):
    """The Merkle root of the first `size` entries, signed: what a witness keeps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int
    root: str
    time: str
    public_key: str  # raw Ed25519 public key, hex: which operator key signed
    signature: str  # over canonical({size, root, time}), hex

    def message(self) -> bytes:
        return canonical({"size": self.size, "root": self.root, "time": self.time})


class Verification(BaseModel):
    entries: int
    root: str  # of the whole log
    public_key: str


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleTree:
    """RFC 6962's Merkle tree hash of a growing list, in O(log n) per leaf: the perfect subtrees
    of the binary decomposition of n, folded right to left, are exactly MTH(D[n])."""

    def __init__(self) -> None:
        self.subtrees: list[tuple[int, bytes]] = []  # (size, root), sizes strictly decreasing

    def add(self, data: bytes) -> None:
        size, digest = 1, _leaf(data)
        while self.subtrees and self.subtrees[-1][0] == size:
            left = self.subtrees.pop()[1]
            size, digest = 2 * size, _node(left, digest)
        self.subtrees.append((size, digest))

    def root(self) -> str:
        if not self.subtrees:
            return hashlib.sha256(b"").hexdigest()
        digest = self.subtrees[-1][1]
        for _, left in reversed(self.subtrees[:-1]):
            digest = _node(left, digest)
        return digest.hex()


def operator_key(path: Path) -> Ed25519PrivateKey:
    """The operator's signing key, created on first use (PKCS8 PEM, readable by its owner only)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        with contextlib.suppress(FileExistsError):  # another process created it first
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise LedgerBroken(f"{path} is not an Ed25519 key; move it away and a new one is created")
    return key


def _public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Ledger:
    """The ledger in `directory`, signed with the key at `key_file` (default beside it)."""

    def __init__(self, directory: Path, key_file: Path | None = None):
        self.directory = Path(directory)
        self.path = self.directory / LEDGER_FILE
        self.key_file = key_file or self.directory / KEY_FILE

    def _lines(self) -> list[str]:
        return self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []

    def records(self) -> list[tuple[LedgerEntry, Checkpoint]]:
        """Every (entry, checkpoint) as written; an unreadable line is named, not skipped."""
        out = []
        for number, line in enumerate(self._lines(), start=1):
            try:
                raw = json.loads(line)
                out.append((LedgerEntry.model_validate(raw["entry"]),
                            Checkpoint.model_validate(raw["checkpoint"])))
            except (ValueError, KeyError, TypeError, ValidationError) as e:
                reason = str(e).splitlines()[0]
                raise LedgerBroken(f"ledger line {number} is not an entry ({reason}): the file was "
                                   f"edited outside flexo") from None
        return out

    def entries(self) -> list[LedgerEntry]:
        return [entry for entry, _ in self.records()]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "ledger.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, event: Event, actor: str, subject: str,
               details: dict[str, Detail] | None = None) -> tuple[LedgerEntry, Checkpoint]:
        """Add one entry and its signed checkpoint, atomically. The log is verified first: no
        entry is ever chained onto a ledger that was tampered with."""
        key = operator_key(self.key_file)
        with self._locked():
            records = self.records()  # read once: verified, then extended
            self.verify(key.public_key(), records)
            lines = [canonical({"entry": e.model_dump(), "checkpoint": c.model_dump()}).decode()
                     for e, c in records]
            entries = [e for e, _ in records]
            body = {"seq": len(entries), "time": _now(), "event": event, "actor": actor,
                    "subject": subject, "details": dict(details or {}),
                    "prev": entries[-1].hash if entries else GENESIS}
            entry = LedgerEntry(**body, hash=hashlib.sha256(canonical(body)).hexdigest())
            tree = MerkleTree()
            for e in [*entries, entry]:
                tree.add(canonical(e.model_dump()))
            unsigned = {"size": len(entries) + 1, "root": tree.root(), "time": entry.time}
            checkpoint = Checkpoint(**unsigned, public_key=_public_hex(key.public_key()),
                                    signature=key.sign(canonical(unsigned)).hex())
            line = canonical({"entry": entry.model_dump(), "checkpoint": checkpoint.model_dump()})
            self._replace([*lines, line.decode()])
        return entry, checkpoint

    def _replace(self, lines: list[str]) -> None:
        for stale in self.directory.glob(f".{LEDGER_FILE}.*.tmp"):  # appends killed mid-write
            stale.unlink(missing_ok=True)
        tmp = self.path.with_name(f".{LEDGER_FILE}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(f"{line}\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a crash
        finally:
            os.close(fd)

    def verify(self, public_key: Ed25519PublicKey | None = None,
               records: list[tuple[LedgerEntry, Checkpoint]] | None = None) -> Verification:
        """Check the chain, every checkpoint's root and signature; raise naming the first bad
        entry. Without `public_key`, the operator key's (which must exist once anything is
        written); without `records`, the file's."""
        records = self.records() if records is None else records
        if public_key is None:
            if not self.key_file.exists():
                if records:
                    raise LedgerBroken(f"no operator key at {self.key_file}: the ledger's "
                                       f"checkpoints cannot be checked; restore the key file")
                return Verification(entries=0, root=MerkleTree().root(), public_key="")
            public_key = operator_key(self.key_file).public_key()
        expected_key = _public_hex(public_key)
        tree, prev = MerkleTree(), GENESIS
        for position, (entry, checkpoint) in enumerate(records):
            where = f"entry {position} ({entry.event} by {entry.actor}, {entry.time})"
            if entry.seq != position:
                raise LedgerBroken(f"{where} carries seq {entry.seq}: an entry was deleted, "
                                   f"inserted or moved at or before position {position}")
            if entry.prev != prev:
                raise LedgerBroken(f"{where} does not chain onto entry {position - 1}: an entry "
                                   f"before it was changed, deleted, inserted or moved")
            if entry.computed_hash() != entry.hash:
                raise LedgerBroken(f"{where} was edited: its content no longer matches its hash")
            tree.add(canonical(entry.model_dump()))
            if checkpoint.size != position + 1 or checkpoint.root != tree.root():
                raise LedgerBroken(f"{where}: its checkpoint no longer matches the log (signed "
                                   f"root {checkpoint.root[:16]}, log root {tree.root()[:16]}): "
                                   f"the log up to it was rewritten")
            if checkpoint.public_key != expected_key:
                raise LedgerBroken(f"{where}: its checkpoint was signed by another key "
                                   f"({checkpoint.public_key[:16]}), not the operator's")
            try:
                public_key.verify(bytes.fromhex(checkpoint.signature), checkpoint.message())
            except (InvalidSignature, ValueError):
                raise LedgerBroken(f"{where}: its checkpoint's signature does not verify") from None
            prev = entry.hash
        return Verification(entries=len(records), root=tree.root(), public_key=expected_key)
