"""User-facing text explains itself: no CLI help or README points at design documents.

Operators read `--help` and the READMEs without the specification at hand, so
"SPEC §5.5" or "seed 003 §4" there tells them nothing. Code comments may cite
the documents, and then the cited document must be in the repository (`docs/`).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOOLS = ("gatectl", "ptf-pipeline", "ptf-telemetry")
EXTERNAL_REFERENCE = re.compile(r"\bSPEC\s*§|\b[Ss]eeds?\s+\d{3}\b|§\s*\d")
CITATION = re.compile(r"docs/(SPEC\.md|seeds/\w+\.txt)")
SOURCE_SUFFIXES = {".py", ".sql", ".sh", ".json"}


def _help(command: list[str]) -> str:
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _subcommands(help_text: str) -> list[str]:
    """The `{a,b,c}` choices listed under `positional arguments:`, if any."""
    section = help_text.partition("positional arguments:")[2]
    match = re.match(r"\s*\{([^}]+)\}", section)
    return match.group(1).split(",") if match else []


def _every_help(tool: str) -> dict[str, str]:
    """`--help` of the tool and of every subcommand, nested ones included, by command line."""
    found: dict[str, str] = {}
    pending = [[tool]]
    while pending:
        command = pending.pop()
        text = _help(command)
        found[" ".join(command)] = text
        pending.extend([*command, sub] for sub in _subcommands(text))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("tool", TOOLS)
def test_cli_help_names_no_design_document(tool: str) -> None:
    helps = _every_help(tool)
    assert len(helps) > 1, "expected subcommands"
    offending = {
        command: EXTERNAL_REFERENCE.findall(text)
        for command, text in helps.items()
        if EXTERNAL_REFERENCE.search(text)
    }
    assert offending == {}


def test_readmes_name_no_design_document() -> None:
    readmes = [
        path
        for path in REPO.rglob("README*.md")
        if not path.relative_to(REPO).parts[0].startswith((".", "docs", "gen"))
    ]
    assert REPO / "README.md" in readmes
    offending = {
        str(path.relative_to(REPO)): EXTERNAL_REFERENCE.findall(path.read_text(encoding="utf-8"))
        for path in readmes
        if EXTERNAL_REFERENCE.search(path.read_text(encoding="utf-8"))
    }
    assert offending == {}


def test_every_design_document_a_comment_cites_is_in_docs() -> None:
    cited = {
        match.group(0)
        for path in (REPO / "services").rglob("*")
        if path.suffix in SOURCE_SUFFIXES
        for match in CITATION.finditer(path.read_text(encoding="utf-8"))
    }
    assert [name for name in sorted(cited) if not (REPO / name).is_file()] == []
