"""Start several racer processes at once and add up what each reports.

A racer (`python -m MODULE ARGS...`) prints "ready" once connected, waits for
"go" on stdin, races, then prints a JSON object counting its outcomes. Holding
every racer at the line until all are ready makes the race real across processes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


async def race_processes(module: str, *args: str, processes: int = 4) -> Counter[str]:
    """Run `processes` copies of the racer module; return their summed outcome counts."""
    racers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
        )
        for _ in range(processes)
    ]
    for racer in racers:
        assert racer.stdout is not None
        assert (await racer.stdout.readline()).strip() == b"ready"
    for racer in racers:
        assert racer.stdin is not None
        racer.stdin.write(b"go\n")
        await racer.stdin.drain()
    totals: Counter[str] = Counter()
    for racer in racers:
        out, _ = await racer.communicate()
        assert racer.returncode == 0
        totals.update(json.loads(out))
    return totals
