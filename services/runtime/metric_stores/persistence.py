"""What the preflight and gate stores share: a lock, store metadata and JSON persistence.

Persistence contract (docs/SPEC.md §4.2):
- `save_to_dir` writes `<dir>/<FILE_NAME>` atomically (see `atomic.py`). The
  generation is bumped in the state being written; when the write fails the
  previous file stays intact, the bump is undone and `metric_write_failures`
  is incremented (when only the final directory fsync fails, the new file is
  already in place, so the generation stays bumped but the failure is still
  counted). It never raises: metrics must not break the caller.
- `load_from_dir` is fail-open: a missing file gives a fresh store (logged), a
  corrupt one gives a fresh store with `load_failures` incremented (logged, the
  bad file kept aside as `<FILE_NAME>.corrupt` for forensics). A legacy file
  without `store_start_timestamp` is back-filled from the file's mtime; unknown
  extra fields and unknown label keys are ignored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Self

from services.runtime.metric_stores.atomic import (
    REAL_FILE_OPS,
    DirectorySyncError,
    FileOps,
    atomic_write_bytes,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


class StoreFormatError(ValueError):
    """A persisted store document is not a valid store (wrong types, negative counts...)."""


class LoadStatus(StrEnum):
    """How the last `load_from_dir` went."""

    FRESH = "fresh"
    LOADED = "loaded"
    LEGACY = "legacy"
    MISSING = "missing"
    CORRUPT = "corrupt"


def zero_counts(labels: Iterable[str]) -> dict[str, int]:
    """A counter map with every label present at zero."""
    return dict.fromkeys(labels, 0)


def require_count(data: Mapping[str, Any], key: str) -> int:
    """A non-negative integer counter from a persisted document (absent → 0)."""
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StoreFormatError(f"{key} must be a non-negative integer, got {value!r}")
    return value


def restore_counts(data: Mapping[str, Any], key: str, labels: Iterable[str]) -> dict[str, int]:
    """A full counter map from a persisted document: unknown labels ignored, missing ones zero."""
    raw = data.get(key, {})
    if not isinstance(raw, Mapping):
        raise StoreFormatError(f"{key} must be an object")
    counts = zero_counts(labels)
    for label in counts:
        if label in raw:
            counts[label] = require_count(raw, label)
    return counts


class PersistentStore:
    """Base of `MetricStore` and `GateMetricStore`: metadata, locking and JSON persistence.

    Subclasses implement `_counters_to_dict` and `_counters_from_dict` (and may
    add `_extra_to_dict`); they are called with the store lock held (or on an
    unshared new instance).
    """

    FILE_NAME: ClassVar[str]

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()
        self._store_generation = 0
        self._store_start_timestamp = float(clock())
        self._metric_write_failures = 0
        self._load_failures = 0
        self.load_status = LoadStatus.FRESH

    # --- metadata readers -------------------------------------------------

    def store_generation(self) -> int:
        """Number of successful saves over the store's lifetime (monotonic)."""
        with self._lock:
            return self._store_generation

    def store_start_timestamp(self) -> float:
        """When the store was first created (Unix seconds); kept across save/load."""
        with self._lock:
            return self._store_start_timestamp

    def metric_write_failures(self) -> int:
        with self._lock:
            return self._metric_write_failures

    def load_failures(self) -> int:
        """How many times a corrupt file was replaced by a fresh store."""
        with self._lock:
            return self._load_failures

    def record_metric_write_failure(self) -> None:
        with self._lock:
            self._metric_write_failures += 1

    # --- serialization ------------------------------------------------------

    def _counters_to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _counters_from_dict(self, data: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _extra_to_dict(self) -> dict[str, Any]:
        """Persisted state beyond the counters (e.g. recent runs); none by default."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable snapshot of the whole store."""
        with self._lock:
            return {**self.counter_snapshot(), **self._extra_to_dict()}

    def counter_snapshot(self) -> dict[str, Any]:
        """Metadata and counters taken under one lock (what exporters read, cheaply)."""
        with self._lock:
            return {
                "schema_version": SCHEMA_VERSION,
                "store_generation": self._store_generation,
                "store_start_timestamp": self._store_start_timestamp,
                "metric_write_failures": self._metric_write_failures,
                "load_failures": self._load_failures,
                **self._counters_to_dict(),
            }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, backfill_timestamp: float | None = None) -> Self:
        """Rebuild a store; raise `StoreFormatError` when `data` is not a valid store document.

        Without `store_start_timestamp` (legacy format) the store keeps
        `backfill_timestamp`, or the current time when none is given.
        """
        if not isinstance(data, Mapping):
            raise StoreFormatError("a store document is a JSON object")
        store = cls()
        store._store_generation = require_count(data, "store_generation")
        store._metric_write_failures = require_count(data, "metric_write_failures")
        store._load_failures = require_count(data, "load_failures")
        if "store_start_timestamp" in data:
            started = data["store_start_timestamp"]
            if isinstance(started, bool) or not isinstance(started, int | float):
                raise StoreFormatError("store_start_timestamp must be a number")
            if not math.isfinite(started) or started < 0:
                raise StoreFormatError("store_start_timestamp must be finite and non-negative")
            store._store_start_timestamp = float(started)
        elif backfill_timestamp is not None:
            store._store_start_timestamp = backfill_timestamp
        store._counters_from_dict(data)
        return store

    # --- persistence --------------------------------------------------------

    def save_to_dir(self, directory: str | Path, *, ops: FileOps = REAL_FILE_OPS) -> bool:
        """Write the store atomically to `directory/FILE_NAME`; True on success, never raises."""
        path = Path(directory)
        with self._save_lock:
            with self._lock:
                self._store_generation += 1
                snapshot = self.to_dict()
            try:
                path.mkdir(parents=True, exist_ok=True)
                data = json.dumps(snapshot, sort_keys=True, indent=1).encode("utf-8")
                atomic_write_bytes(path / self.FILE_NAME, data, ops)
            except Exception as exc:  # fail-open: a metrics write never breaks the caller
                with self._lock:
                    if not isinstance(exc, DirectorySyncError):
                        self._store_generation -= 1
                    self._metric_write_failures += 1
                log.warning(
                    "metric store save to %s failed: %s",
                    path / self.FILE_NAME,
                    exc,
                    extra={"store": self.FILE_NAME},
                )
                return False
            return True

    @classmethod
    def load_from_dir(
        cls, directory: str | Path, *, clock: Callable[[], float] = time.time
    ) -> Self:
        """Load `directory/FILE_NAME`; fail-open to a fresh store (see module docstring).

        `clock` gives the start time of a fresh store (missing or corrupt file).
        """
        path = Path(directory) / cls.FILE_NAME
        try:
            raw = path.read_bytes()
            mtime = os.stat(path).st_mtime
        except FileNotFoundError:
            log.info("no metric store at %s; starting a fresh one", path)
            store = cls(clock=clock)
            store.load_status = LoadStatus.MISSING
            return store
        except OSError as exc:
            return cls._fresh_after_corruption(path, f"unreadable: {exc}", clock, keep_aside=False)
        try:
            data = json.loads(raw)
            store = cls.from_dict(data, backfill_timestamp=mtime)
        except (ValueError, TypeError, RecursionError) as exc:
            return cls._fresh_after_corruption(path, str(exc), clock, keep_aside=True)
        legacy = "store_start_timestamp" not in data
        store.load_status = LoadStatus.LEGACY if legacy else LoadStatus.LOADED
        if legacy:
            log.info("metric store %s has the legacy format; start time back-filled", path)
        return store

    @classmethod
    def _fresh_after_corruption(
        cls, path: Path, problem: str, clock: Callable[[], float], *, keep_aside: bool
    ) -> Self:
        store = cls(clock=clock)
        store._load_failures = 1
        store.load_status = LoadStatus.CORRUPT
        if keep_aside:
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name(path.name + ".corrupt"))
        log.warning(
            "metric store %s is corrupt (%s); starting a fresh one",
            path,
            problem,
            extra={"store": cls.FILE_NAME},
        )
        return store
