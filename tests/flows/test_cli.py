"""The `flexo` command line, driven as a user drives it."""

import json
import os
import subprocess
import sys

import pytest

DOMAINS = ["public", "code", "legal", "medical", "literature"]


def test_data_list_shows_every_corpus_with_size_and_licence(cli):
    result = cli("data", "list")
    assert result.exit_code == 0, result.output
    for word in (*DOMAINS, "CC-BY-4.0", "PSF-2.0", "MB"):
        assert word in result.stdout


def test_evaluate_json_reports_every_domain(cli, tiny_anchor):
    result = cli("evaluate", "--model", tiny_anchor, "--json", "--max-tokens", 4096)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert list(rows) == DOMAINS
    assert all(1 < r["perplexity"] < 5000 and r["tokens"] > 3000 for r in rows.values())


def test_evaluate_on_a_user_directory(cli, tiny_anchor, tmp_path):
    (tmp_path / "notes.jsonl").write_text("\n".join(
        json.dumps({"text": f"And God said, let there be light number {i}."}) for i in range(60)))
    result = cli("evaluate", "--model", tiny_anchor, "--data", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)) == [tmp_path.name]


def _bad_dirs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / "ok.txt").write_text("fine text")
    (binary / "weights.txt").write_bytes(bytes(range(256)) * 64)
    latin1 = tmp_path / "latin1"
    latin1.mkdir()
    (latin1 / "doc.txt").write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
    long_line = tmp_path / "long_line"
    long_line.mkdir()
    (long_line / "dump.txt").write_text("a" * 50_000_000)
    image = tmp_path / "image"
    image.mkdir()
    (image / "scan.png").write_bytes(b"\x89PNG\r\n")
    return {"empty": (empty, "holds no"), "binary": (binary, "looks binary"),
            "latin1": (latin1, "not valid UTF-8"), "long_line": (long_line, "line 1 is 50,000,000"),
            "image": (image, "unsupported type")}


@pytest.mark.parametrize("command", ["anchor-train", "evaluate"])
def test_bad_data_gives_one_line_error_and_writes_nothing(cli, tiny_anchor, tmp_path, command):
    for kind, (directory, message) in _bad_dirs(tmp_path).items():
        out = tmp_path / f"out-{kind}"
        if command == "anchor-train":
            result = cli("anchor", "train", "--preset", "tiny", "--data", directory, "--out", out)
        else:
            result = cli("evaluate", "--model", tiny_anchor, "--data", directory)
        assert result.exit_code != 0, kind
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (kind, result.stderr)
        assert message in lines[0], (kind, lines[0])
        assert "Traceback" not in result.output
        assert not out.exists()
    assert not list(tmp_path.glob(".out-*"))  # no temporary directories left over


def test_unknown_preset_and_existing_output_are_refused(cli, tiny_anchor, tmp_path):
    result = cli("anchor", "train", "--preset", "huge", "--out", tmp_path / "a")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()  # Typer's Enum check, in flexo's one-line style
    assert line.startswith("error:") and "'huge' is not one of 'tiny', 'small', 'base'" in line
    assert not (tmp_path / "a").exists()

    before = sorted(p.name for p in tiny_anchor.iterdir())
    stamp = (tiny_anchor / "model.safetensors").stat().st_mtime_ns
    result = cli("anchor", "train", "--preset", "tiny", "--out", tiny_anchor)
    assert result.exit_code != 0
    assert "already exists and is not empty" in result.stderr
    assert sorted(p.name for p in tiny_anchor.iterdir()) == before
    assert (tiny_anchor / "model.safetensors").stat().st_mtime_ns == stamp


def test_evaluate_refuses_a_directory_that_is_not_a_model(cli, tmp_path):
    result = cli("evaluate", "--model", tmp_path)
    assert result.exit_code != 0 and "no config.json" in result.stderr


def test_console_script_exit_code_and_stderr(tmp_path):
    """The installed entry point, as a shell sees it."""
    env = dict(os.environ, FLEXO_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-m", "flows", "anchor", "train", "--preset", "nope",
                           "--out", str(tmp_path / "x")], capture_output=True, text=True, env=env, check=False,
                          timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: Invalid value for '--preset': 'nope' is not one of "
                                   "'tiny', 'small', 'base'. (see `flexo anchor train --help`)")


def test_cli_choices_are_the_ones_the_components_know():
    from typing import get_args

    from components.anchor import PRESETS
    from components.router_rows import RouterInit as Methods
    from flows.cli.options import Preset, RouterInit

    assert [p.value for p in Preset] == list(PRESETS)
    assert [m.value for m in RouterInit] == list(get_args(Methods))
