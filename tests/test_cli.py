"""The `fencewatch` command as a user meets it: help that explains itself, plain words for
a missing folder or file, and a wrong flag answered with that subcommand's usage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fencewatch.cli import build_parser


def fencewatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fencewatch.cli", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _help_texts() -> list[str]:
    """Every parser's formatted help, subcommands of subcommands included."""
    texts = []
    parsers = [build_parser()]
    while parsers:
        parser = parsers.pop()
        texts.append(parser.format_help())
        for action in parser._subparsers._group_actions if parser._subparsers else []:
            parsers.extend(action.choices.values())  # type: ignore[union-attr]
    return texts


def test_help_has_no_internal_spec_references() -> None:
    texts = _help_texts()
    assert len(texts) >= 10
    for text in texts:
        assert "spec" not in text.lower(), text


def test_replay_help_says_what_the_folder_holds() -> None:
    result = fencewatch("replay", "--help")
    assert result.returncode == 0
    for name in ("zones.geojson", "roster.json", "pings.jsonl"):
        assert name in result.stdout
    assert "usage: fencewatch replay" in result.stdout


def test_a_missing_folder_is_said_plainly(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = fencewatch("replay", str(missing))
    assert result.returncode == 2
    assert result.stderr == f"fencewatch replay: {missing}: no such folder\n"


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "zones.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    result = fencewatch("replay", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"fencewatch replay: {tmp_path}: missing roster.json, pings")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["replay", "--bogus", "x"], "usage: fencewatch replay "),
        (["token", "create", "--role", "operator", "--bogus"], "usage: fencewatch token create "),
        (["retention", "purge", "--bogus"], "usage: fencewatch retention purge "),
        (["archive", "run", "--bogus"], "usage: fencewatch archive run "),
    ],
)
def test_a_bad_flag_gets_its_subcommands_usage(args: list[str], usage: str) -> None:
    result = fencewatch(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(usage), result.stderr
    assert "unrecognized arguments: --bogus" in result.stderr
