"""A contributor's own text: a directory of .txt, .md or .jsonl files, checked before any use.

Every check raises `DataError` naming the file and the fix, before anything is read into a model,
so a bad directory never leaves half-written output behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from components.documents import Corpus
from components.errors import DataError

SUFFIXES = (".txt", ".md", ".jsonl")
MAX_LINE_BYTES = 1_000_000  # a longer "line" is a dump or a binary, not a document
MAX_FILE_BYTES = 256_000_000


def _decode(path: Path, raw: bytes) -> str:
    if b"\x00" in raw[:65536]:
        raise DataError(f"{path} looks binary (contains NUL bytes); pass only text files")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} is not valid UTF-8 (byte {err.start}); re-encode it as UTF-8 "
            f"(e.g. iconv -t UTF-8)"
        ) from None


def _check_lines(path: Path, text: str) -> None:
    for number, line in enumerate(text.split("\n"), start=1):
        # Only lines that could exceed the limit pay for an encode.
        if len(line) * 4 > MAX_LINE_BYTES and (size := len(line.encode("utf-8"))) > MAX_LINE_BYTES:
            raise DataError(
                f"{path} line {number} is {size:,} bytes (limit {MAX_LINE_BYTES:,}); "
                f"split it into documents or paragraphs"
            )


def _jsonl_texts(path: Path, text: str) -> list[tuple[str, str]]:
    out = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path} line {number} is not JSON ({err.msg}); "
                            f"write one JSON object per line") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f'{path} line {number} has no string "text" field; '
                            f'write objects like {{"text": "..."}}')
        out.append((record["text"], f"{path.name}:{number}"))
    return out


def data_files(directory: Path) -> list[Path]:
    """The text files under `directory`, refusing anything flexo would have to guess about."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"data directory {directory} does not exist; pass a directory of "
                        f"{', '.join(SUFFIXES)} files")
    files, others = [], []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or any(p.startswith(".") for p in path.relative_to(directory).parts):
            continue
        (files if path.suffix.lower() in SUFFIXES else others).append(path)
    if others:
        raise DataError(f"{others[0]} has an unsupported type; flexo reads only "
                        f"{', '.join(SUFFIXES)} files (move it out of {directory})")
    if not files:
        raise DataError(f"data directory {directory} holds no {', '.join(SUFFIXES)} files; "
                        f"add text files to it")
    return files


def load_directory(directory: Path, name: str | None = None) -> Corpus:
    """One document per .txt/.md file, one per .jsonl line (its `text` field)."""
    directory = Path(directory)
    texts: list[tuple[str, str]] = []
    for path in data_files(directory):
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DataError(f"{path} is larger than {MAX_FILE_BYTES:,} bytes; split it into "
                            f"several files")
        text = _decode(path, path.read_bytes())
        _check_lines(path, text)
        if path.suffix.lower() == ".jsonl":
            texts += _jsonl_texts(path, text)
        else:
            texts.append((text, path.name))
    corpus = Corpus.from_texts(name or directory.name, texts, licence="contributor's own")
    if not corpus.documents:
        raise DataError(f"data directory {directory} holds only empty documents; add text")
    return corpus


def write_directory(corpus: Corpus, out: Path, file_name: str) -> Path:
    """Write `corpus` as one .jsonl file in a new directory that `load_directory` reads back,
    atomically. Documents go in document-hash order, so the same text gives the same bytes."""
    from components.atomic import atomic_output_dir

    lines = [json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in corpus.texts()]
    with atomic_output_dir(out) as tmp:
        (tmp / f"{file_name}.jsonl").write_text("".join(lines), encoding="utf-8")
    return Path(out)
