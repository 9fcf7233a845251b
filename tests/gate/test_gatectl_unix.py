"""gatectl in a pipeline whose reader has already gone (`gatectl preflight ... | head -2`).

The reader's end of the pipe is closed before gatectl writes anything, so every
run meets the closed pipe (a reader that leaves after two lines of a long
output is the same case, only racy to reproduce).
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.gate.service_support import ADMIN_KEY, StartGate, new_release, spec_yaml

GATECTL = str(Path(sys.executable).parent / "gatectl")
FACTS = ("--fact", "tests_passed=true", "--fact", "smoke_passed=true")


@dataclass(frozen=True)
class Closed:
    code: int
    err: str


async def into_closed_pipe(*args: str) -> Closed:
    """Run gatectl with stdout on a pipe nobody reads any more."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = await asyncio.create_subprocess_exec(
            GATECTL,
            *args,
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "GATECTL_KEY": ADMIN_KEY},
        )
    finally:
        os.close(write_end)
    _, err = await process.communicate()
    assert process.returncode is not None
    return Closed(process.returncode, err.decode())


async def _preflight(start_gate: StartGate, tmp_path: Path) -> Closed:
    spec = tmp_path / "release.yaml"
    spec.write_text(spec_yaml(new_release()), encoding="utf-8")
    async with start_gate() as svc:
        return await into_closed_pipe(
            "preflight", "--spec", str(spec), *FACTS, "--gate", svc.running.grpc_target
        )


async def test_preflight_into_a_closed_pipe_prints_nothing_on_stderr(
    start_gate: StartGate, tmp_path: Path
) -> None:
    assert (await _preflight(start_gate, tmp_path)).err == ""


async def test_preflight_into_a_closed_pipe_exits_141_not_a_verdict(
    start_gate: StartGate, tmp_path: Path
) -> None:
    assert (await _preflight(start_gate, tmp_path)).code == 141
