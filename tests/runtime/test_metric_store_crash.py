"""A process killed with SIGKILL in the middle of `save_to_dir` never leaves an unreadable store."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

from services.runtime.metric_stores import LoadStatus, MetricStore

REPO = Path(__file__).resolve().parents[2]

# Loads the store, then forever: add one run, save, print the generation. Every saved
# state therefore has exactly `store_generation` runs counted.
_SAVER = """
import sys
from datetime import UTC, datetime
from services.runtime.metric_stores import LoadStatus, MetricStore, PreflightMetric

directory = sys.argv[1]
store = MetricStore.load_from_dir(directory)
if store.load_status not in (LoadStatus.LOADED, LoadStatus.MISSING):
    print("bad-load", store.load_status, flush=True)
    sys.exit(3)
print(store.store_generation(), flush=True)
metric = PreflightMetric(
    timestamp=datetime.now(UTC), verdict="release_hold", exit_code=1,
    reasons=("S1_RATE_HIGH", "QUEUE_DEPTH_HIGH"), override_applied=False,
    contract_breach=False, override_result="none", duration_ms=3.5, spec_hash="sha256:" + "ab" * 32,
)
while True:
    store.add(metric)
    if not store.save_to_dir(directory):
        print("save-failed", flush=True)
        sys.exit(4)
    print(store.store_generation(), flush=True)
"""


def _run_and_kill(directory: Path, saves_before_kill: int) -> int:
    """Start the saver, let it report `saves_before_kill` saves, SIGKILL it; last reported gen."""
    with subprocess.Popen(
        [sys.executable, "-c", _SAVER, str(directory)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as process:
        assert process.stdout is not None
        last = int(process.stdout.readline())
        for _ in range(saves_before_kill):
            last = int(process.stdout.readline())
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
    return last


def test_sigkill_during_repeated_saves_never_leaves_an_unreadable_store(tmp_path: Path) -> None:
    """Fault: the writing process is killed with SIGKILL at random moments while it saves in
    a loop (six times, each run resuming from the file the previous one left). Every load
    must find a complete store: status loaded, at least the last reported generation, and
    exactly one counted run per generation (no half-written state)."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for round_ in range(6):
        reported = _run_and_kill(tmp_path, rng.randint(1, 40))
        store = MetricStore.load_from_dir(tmp_path)
        context = f"seed={seed} round={round_} reported={reported}"
        assert store.load_status is LoadStatus.LOADED, context
        assert store.store_generation() >= reported, context
        assert sum(store.verdict_counts().values()) == store.store_generation(), context
        assert store.reason_counts()["S1_RATE_HIGH"] == store.store_generation(), context
