"""The bench's CPU meter: a process's own CPU, a tree's descendants, and the client itself."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bench.cpu import MACHINE, CpuMeter

# Spins until it has used 0.3 s of CPU, says so, then idles until its stdin closes.
_SPIN = (
    "import sys, time\n"
    "while time.process_time() < 0.3: pass\n"
    "print('spun', flush=True)\n"
    "sys.stdin.read()\n"
)
# Starts a spinning child (which exits with this process), waits for its spin, idles.
_PARENT = (
    "import subprocess, sys\n"
    f"child = subprocess.Popen([sys.executable, '-c', {_SPIN!r}],"
    " stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
    "child.stdout.readline()\n"
    "child.stdout.close()\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


@contextmanager
def _running(code: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()
        yield process
    finally:
        process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


def test_a_process_is_charged_the_cpu_it_spent() -> None:
    with _running(_SPIN) as spinner:
        seconds = CpuMeter({"spinner": spinner.pid}).snapshot()["spinner"]
    assert seconds >= 0.25


def test_a_tree_counts_its_descendants_and_a_plain_process_does_not() -> None:
    with _running(_PARENT) as parent:
        pids = {"tree": parent.pid, "alone": parent.pid}
        seconds = CpuMeter(pids, trees=frozenset({"tree"})).snapshot()
    assert seconds["tree"] >= 0.25
    assert seconds["alone"] < 0.25


def test_the_snapshot_includes_the_load_driving_process() -> None:
    assert CpuMeter({}).snapshot()["bench client"] > 0


def test_the_whole_machine_counts_a_process_the_meter_does_not_name() -> None:
    meter = CpuMeter({})
    before = meter.snapshot()[MACHINE]
    with _running(_SPIN):
        after = meter.snapshot()[MACHINE]
    assert after - before >= 0.25
