"""`make run`'s banner: the newcomer's next steps after the stack is up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.runtime.stack import RUNBOOK, SERVICES, ChildService, _print_banner

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def banner(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The banner as `make run` prints it from the repository root, with the default ports."""
    monkeypatch.chdir(REPO)
    placeholder = subprocess.Popen([sys.executable, "-c", "pass"])
    placeholder.wait()
    children = [ChildService(name, 0, 0, placeholder) for name in SERVICES]
    _print_banner(children, {})
    return capsys.readouterr().out


def test_banner_names_the_post_deploy_command_with_the_dev_keys(banner: str) -> None:
    (line,) = [line for line in banner.splitlines() if " post-deploy " in line]
    gatectl, *args = line.split()
    assert args == ["post-deploy", "--api-key", "dev-tenant-key", "--admin-key", "dev-admin-key"]
    assert (REPO / gatectl).is_file()


def test_banner_names_make_observe(banner: str) -> None:
    assert "  make observe\n" in banner


def test_banner_names_the_runbook_by_a_path_that_exists(banner: str) -> None:
    shown = str(RUNBOOK.relative_to(REPO))
    assert shown in banner
    assert (REPO / shown).is_file()
