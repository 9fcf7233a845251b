"""CPU time of the stack's processes, read from /proc (Linux), for CPU-per-invoice rows.

On a shared two-core machine invoices/s moves with whatever else runs; the CPU a
process spends per invoice barely does, and it says which process a change helped.
PostgreSQL is counted as its postmaster and every backend under it. The whole machine's
busy time (other programs and the kernel's threads too) is read from /proc/stat:
a run in which it is well above the stack's own sum is a run to read with care.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
MACHINE = "whole machine"


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _own_seconds(pid: int) -> float:
    """User + system CPU seconds of one live process (fields utime, stime)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def _descendants(pid: int) -> list[int]:
    """Every live process under `pid`, found by parent pid."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError):
            continue
        parents.setdefault(parent, []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        children = parents.get(frontier.pop(), [])
        found.extend(children)
        frontier.extend(children)
    return found


def _tree_seconds(pid: int) -> float:
    total = _own_seconds(pid)
    for child in _descendants(pid):
        try:
            total += _own_seconds(child)
        except OSError:
            continue
    return total


def machine_seconds() -> float:
    """CPU seconds the whole machine has been busy so far, over all cores (/proc/stat:
    user, nice, system, irq, softirq and steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields)
    return (user + nice + system + irq + softirq + steal) / _TICKS_PER_SECOND


@dataclass(frozen=True)
class CpuMeter:
    """Named processes to read; `trees` are counted with all their descendants."""

    pids: dict[str, int]
    trees: frozenset[str] = frozenset()

    def snapshot(self) -> dict[str, float]:
        """CPU seconds so far of each named process, of this (the load-driving) one, and
        of the whole machine under `MACHINE` (the processes' own figures come from the
        scheduler's runtime, the machine's from per-core ticks: they agree to a few %)."""
        seconds = {
            name: _tree_seconds(pid) if name in self.trees else _own_seconds(pid)
            for name, pid in self.pids.items()
        }
        usage = resource.getrusage(resource.RUSAGE_SELF)
        seconds["bench client"] = usage.ru_utime + usage.ru_stime
        seconds[MACHINE] = machine_seconds()
        return seconds
