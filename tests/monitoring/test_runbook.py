"""Every command the runbook shows for this repo's tools exists as written.

A runbook whose commands have drifted from the CLIs fails the operator in the
middle of an incident, so each `gatectl` / `ptf-pipeline` / `ptf-telemetry`
command it shows must answer `--help` (the installed entry point, as a
subprocess) and know every `--flag` the runbook passes it, and every `make`
target it names must exist (`make -n`). Dashboard panels it sends the operator
to ("...", in a paragraph about a panel or dashboard) must exist by that title.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.monitoring.promql import REPO, panels

RUNBOOK = REPO / "monitoring" / "runbooks" / "ptf-admin-runbook.md"
BIN = Path(sys.executable).parent
TOOLS = ("gatectl", "ptf-pipeline", "ptf-telemetry")

_FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_INLINE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)?)`")
# A tool at a command position (line start, after a pipe/list operator or env assignments)
# with arguments; a bare `ptf-pipeline` is the Deployment's name, not a command.
_COMMAND = re.compile(
    r"(?:^|[|;&(])[ \t]*(?:[A-Z_]+=\S*[ \t]+)*"
    r"(gatectl|ptf-pipeline|ptf-telemetry|make)[ \t]+([^\n|;#)]+)",
    re.MULTILINE,
)
_WORD = re.compile(r"[a-z][a-z0-9-]*")
_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


_QUOTED = re.compile(r'"([^"]+)"')
_PANEL_CONTEXT = re.compile(r"panel|dashboard|Pipeline and System Health", re.IGNORECASE)


def _panel_names(markdown: str) -> set[str]:
    """Quoted names in the prose paragraphs (code removed) that talk about panels."""
    prose = _INLINE.sub("", _FENCED.sub("", markdown))
    return {
        name
        for paragraph in re.split(r"\n\s*\n", prose)
        if _PANEL_CONTEXT.search(paragraph)
        for name in _QUOTED.findall(paragraph)
    }


@dataclass(frozen=True)
class Command:
    """One tool invocation the runbook shows: the subcommand path and the flags passed."""

    tool: str
    words: tuple[str, ...]
    flags: frozenset[str]

    @property
    def name(self) -> str:
        return " ".join((self.tool, *self.words))


def _code_text(markdown: str) -> list[str]:
    """Fenced blocks (continuation lines joined) and inline code spans."""
    blocks = [re.sub(r"\\\n\s*", " ", block) for block in _FENCED.findall(markdown)]
    prose = _FENCED.sub("", markdown)
    return blocks + [span.replace("\n", " ") for span in _INLINE.findall(prose)]


def _commands(markdown: str) -> list[Command]:
    found: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    for text in _code_text(markdown):
        for tool, rest in _COMMAND.findall(text):
            words: list[str] = []
            for token in rest.split():
                if not _WORD.fullmatch(token):
                    break
                words.append(token)
            found.setdefault((tool, tuple(words)), set()).update(_FLAG.findall(rest))
    return [Command(tool, words, frozenset(flags)) for (tool, words), flags in found.items()]


COMMANDS = _commands(RUNBOOK.read_text())
TOOL_COMMANDS = [c for c in COMMANDS if c.tool != "make"]
MAKE_TARGETS = sorted({word for c in COMMANDS if c.tool == "make" for word in c.words})


@cache
def _help_runs() -> dict[str, subprocess.CompletedProcess[str]]:
    """`<tool> <words> --help` of every command, started side by side and shared by the tests."""
    started = {
        c.name: subprocess.Popen(
            [str(BIN / c.tool), *c.words, "--help"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in TOOL_COMMANDS
    }
    runs = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=60)
        runs[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return runs


def test_runbook_shows_commands_of_every_tool() -> None:
    assert {c.tool for c in COMMANDS} >= {*TOOLS, "make"}


def test_command_reader_stops_at_flags_pipes_and_comments() -> None:
    text = "```bash\ngatectl audit tail --limit 20 | jq .\nmake test   # all\n```\n"
    assert [(c.name, set(c.flags)) for c in _commands(text)] == [
        ("gatectl audit tail", {"--limit"}),
        ("make test", set()),
    ]


@pytest.mark.parametrize("command", TOOL_COMMANDS, ids=lambda c: c.name)
def test_command_answers_help(command: Command) -> None:
    run = _help_runs()[command.name]
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("command", TOOL_COMMANDS, ids=lambda c: c.name)
def test_command_knows_every_flag_the_runbook_passes(command: Command) -> None:
    help_text = _help_runs()[command.name].stdout
    unknown = sorted(f for f in command.flags - {"--help"} if f not in help_text)
    assert unknown == []


@pytest.mark.parametrize("target", MAKE_TARGETS)
def test_make_target_exists(target: str) -> None:
    run = subprocess.run(
        ["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr


def test_runbook_names_dashboard_panels() -> None:
    assert _panel_names(RUNBOOK.read_text())


@pytest.mark.parametrize("panel", sorted(_panel_names(RUNBOOK.read_text())))
def test_panel_the_runbook_names_exists(panel: str) -> None:
    assert panel in {p.title for p in panels()}
