"""The governance ledger: `flexo ledger verify` finds every kind of tampering and names the first
bad entry; the Merkle root is RFC 6962's; a process killed mid-append leaves no torn entry."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from governance.ledger import GENESIS, KEY_FILE, Ledger, LedgerBroken, canonical


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FLEXO_HOME", str(tmp_path))
    return tmp_path


def _home_ledger(home: Path) -> Ledger:
    return Ledger(home / "ledger", key_file=home / "keys" / KEY_FILE)


def _fill(home: Path, n: int = 6) -> Ledger:
    ledger = _home_ledger(home)
    for i in range(n):
        ledger.append("review", f"reviewer-{i % 2}", "hospital", {"version": i + 1,
                                                                   "decision": "approved"})
    return ledger


def _rfc6962_root(leaves: list[bytes]) -> str:
    """RFC 6962 §2.1 as written: the recursive split at the largest power of two below n."""
    def mth(d: list[bytes]) -> bytes:
        if len(d) == 1:
            return hashlib.sha256(b"\x00" + d[0]).digest()
        k = 1 << ((len(d) - 1).bit_length() - 1)
        return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()
    return mth(leaves).hex()


def test_entries_chain_and_every_checkpoint_signs_the_rfc6962_root_of_its_prefix(home, cli):
    ledger = _fill(home, 7)
    records = ledger.records()
    assert [e.seq for e, _ in records] == list(range(7))
    assert records[0][0].prev == GENESIS
    assert all(records[i][0].prev == records[i - 1][0].hash for i in range(1, 7))
    leaves = [canonical(e.model_dump()) for e, _ in records]
    for i, (_, checkpoint) in enumerate(records):  # sizes 1..7: every shape of tree
        assert checkpoint.size == i + 1
        assert checkpoint.root == _rfc6962_root(leaves[:i + 1])
    result = cli("ledger", "verify")
    assert result.exit_code == 0, result.output
    assert "7 entries" in result.stdout and records[-1][1].root[:16] in result.stdout
    shown = json.loads(cli("ledger", "show", "--json").stdout)
    assert [e["details"]["version"] for e in shown] == list(range(1, 8))


def _lines(ledger: Ledger) -> list[str]:
    return ledger.path.read_text().splitlines()


def _write(ledger: Ledger, lines: list[str]) -> None:
    ledger.path.write_text("".join(f"{line}\n" for line in lines))


def _edit(lines: list[str]) -> list[str]:
    raw = json.loads(lines[3])
    raw["entry"]["details"]["decision"] = "rejected"
    return [*lines[:3], json.dumps(raw), *lines[4:]]


def _rewrite_chain(lines: list[str]) -> list[str]:
    """Entry 3 edited and every hash from there recomputed: only the checkpoints tell."""
    out, prev = [], None
    for i, line in enumerate(_edit(lines)):
        raw = json.loads(line)
        if i >= 3:
            raw["entry"]["prev"] = prev
            body = {k: v for k, v in raw["entry"].items() if k != "hash"}
            raw["entry"]["hash"] = hashlib.sha256(canonical(body)).hexdigest()
        prev = raw["entry"]["hash"]
        out.append(json.dumps(raw))
    return out


TAMPERING = {
    "edited": (_edit, "entry 3 (review by reviewer-1", "was edited"),
    "deleted": (lambda ls: [*ls[:2], *ls[3:]], "entry 2 (review by reviewer-1", "carries seq 3"),
    "inserted": (lambda ls: [*ls[:4], ls[1], *ls[4:]], "entry 4 (review by reviewer-1",
                 "carries seq 1"),
    "reordered": (lambda ls: [*ls[:2], ls[3], ls[2], *ls[4:]], "entry 2 (review by reviewer-1",
                  "carries seq 3"),
    "rewritten chain": (_rewrite_chain, "entry 3 (review by reviewer-1",
                        "its checkpoint no longer matches the log"),
    "not json": (lambda ls: [*ls[:1], ls[1][:40], *ls[2:]], "ledger line 2 is not an entry", ""),
}


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_verify_names_the_first_bad_entry_of_each_kind_of_tampering(home, cli, kind):
    ledger = _fill(home)
    tamper, where, why = TAMPERING[kind]
    _write(ledger, tamper(_lines(ledger)))
    result = cli("ledger", "verify")
    assert result.exit_code == 7, result.output
    assert where in result.stderr and why in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    refused = cli("ledger", "show")  # a tampered ledger is not shown as true either
    assert refused.exit_code == 7 and refused.stdout == ""


def test_checkpoints_signed_by_another_key_fail(home, cli):
    _fill(home)
    forged = Ledger(home / "forged", key_file=home / "forged.pem")  # the same events, re-signed
    for entry in _home_ledger(home).entries():
        forged.append(entry.event, entry.actor, entry.subject, entry.details)
    _write(_home_ledger(home), _lines(forged))
    result = cli("ledger", "verify")
    assert result.exit_code == 7 and "entry 0" in result.stderr and "another key" in result.stderr


def test_nothing_is_chained_onto_a_tampered_ledger(home):
    ledger = _fill(home)
    tampered = _edit(_lines(ledger))
    _write(ledger, tampered)
    with pytest.raises(LedgerBroken, match="entry 3"):
        ledger.append("refusal", "mallory", "hospital", {"rule": "self-approval"})
    assert _lines(ledger) == tampered


APPENDER = """
import sys
from pathlib import Path
from governance.ledger import Ledger
ledger = Ledger(Path(sys.argv[1]), key_file=Path(sys.argv[2]))
for i in range(100_000):
    ledger.append("publish", "hospital", "hospital", {"version": i, "note": "x" * 4000})
    print(i, flush=True)
"""


def test_a_process_killed_mid_append_leaves_no_torn_entry_and_loses_no_acknowledged_one(home):
    ledger = _home_ledger(home)
    acknowledged = 0
    for kill_after in (5, 17, 30):  # three kills, each while the next append is under way
        proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(ledger.directory),
                                 str(ledger.key_file)], stdout=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parents[2])
        for _ in range(kill_after):
            assert proc.stdout.readline(), "the appender died on its own"
            acknowledged += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        verified = ledger.verify()  # every line whole, chained and signed
        assert acknowledged <= verified.entries <= acknowledged + 1
        acknowledged = verified.entries
    assert ledger.path.read_text().endswith("\n")
