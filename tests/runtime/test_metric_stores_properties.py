"""Hypothesis properties of the metric stores (seed 000 §2.2, seed 001 properties 4, 6, 7).

Each property runs at least 200 examples. An example is a list of operations
whose repr is readable (`Decide(allowed=False, reasons=('S1_RATE_HIGH',))`,
`Save()`, `Reload()`), so a shrunk failure shows the exact sequence; assertion
messages repeat it.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from services.runtime.metric_stores import (
    BREACH_KINDS,
    OVERRIDE_RESULTS,
    REASON_LABELS,
    VERDICT_LABELS,
    GateMetricExporter,
    GateMetricStore,
    LoadStatus,
    MetricExporter,
    MetricStore,
    PreflightMetric,
)
from services.runtime.metric_stores.atomic import STEPS, FileOps
from services.runtime.metric_stores.persistence import PersistentStore

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fixed_clock() -> float:
    """A fixed clock for store creation, so equal op lists give equal stores."""
    return 1_700_000_000.5


# --- operations -------------------------------------------------------------


@dataclass(frozen=True)
class Decide:
    allowed: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Breach:
    kind: str


@dataclass(frozen=True)
class AuditFailure:
    pass


@dataclass(frozen=True)
class Add:
    metric: PreflightMetric

    def __repr__(self) -> str:
        m = self.metric
        return f"Add({m.verdict}, reasons={m.reasons}, override={m.override_result})"


@dataclass(frozen=True)
class Save:
    pass


@dataclass(frozen=True)
class Reload:
    pass


Op = Decide | Breach | AuditFailure | Add | Save | Reload

any_reason = st.one_of(st.sampled_from(REASON_LABELS), st.text(max_size=12))
gate_ops = st.lists(
    st.one_of(
        st.builds(Decide, st.booleans(), st.lists(any_reason, max_size=4).map(tuple)),
        st.builds(Breach, st.one_of(st.sampled_from(BREACH_KINDS), st.text(max_size=8))),
        st.just(AuditFailure()),
        st.just(Save()),
        st.just(Reload()),
    ),
    max_size=25,
)


@st.composite
def preflight_metrics(draw: st.DrawFn) -> PreflightMetric:
    result = draw(st.sampled_from(OVERRIDE_RESULTS))
    return PreflightMetric(
        timestamp=T0 + timedelta(seconds=draw(st.integers(0, 10**7))),
        verdict=draw(st.sampled_from(VERDICT_LABELS)),
        exit_code=draw(st.integers(0, 2)),
        reasons=tuple(draw(st.lists(any_reason, max_size=4))),
        override_applied=result == "applied",
        contract_breach=result == "breach" or draw(st.booleans()),
        override_result=result,
        duration_ms=draw(st.floats(0, 1e6, allow_nan=False)),
        spec_hash=draw(st.text(max_size=20)),
    )


preflight_ops = st.lists(
    st.one_of(
        st.builds(Add, preflight_metrics()),
        st.just(Save()),
        st.just(Reload()),
    ),
    max_size=25,
)

# --- helpers ----------------------------------------------------------------


def canonical(value: Any) -> Any:
    """JSON-normal form: sorted keys, integral floats as ints, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@contextmanager
def store_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ptf-store-") as folder:
        yield Path(folder)


def apply(store: PersistentStore, op: Op, directory: Path) -> PersistentStore:
    """Run one op; returns the store to continue with (a new one after Reload)."""
    if isinstance(op, Decide):
        assert isinstance(store, GateMetricStore)
        store.record_decision(op.allowed, op.reasons)
    elif isinstance(op, Breach):
        assert isinstance(store, GateMetricStore)
        store.record_breach(op.kind)
    elif isinstance(op, AuditFailure):
        assert isinstance(store, GateMetricStore)
        store.record_audit_write_failure()
    elif isinstance(op, Add):
        assert isinstance(store, MetricStore)
        store.add(op.metric)
    elif isinstance(op, Save):
        assert store.save_to_dir(directory)
    elif isinstance(op, Reload):
        return type(store).load_from_dir(directory, clock=fixed_clock)
    return store


def run(cls: type[PersistentStore], ops: list[Op], directory: Path) -> PersistentStore:
    store: PersistentStore = cls(clock=fixed_clock)
    for op in ops:
        store = apply(store, op, directory)
    return store


def counters(store: PersistentStore) -> dict[str, Any]:
    """The store document without metadata that a reload legitimately changes."""
    doc = canonical(store.to_dict())
    for key in ("store_start_timestamp", "schema_version"):
        doc.pop(key, None)
    return doc


STORES: list[tuple[type[PersistentStore], st.SearchStrategy[list[Op]]]] = [
    (GateMetricStore, gate_ops),  # type: ignore[list-item]
    (MetricStore, preflight_ops),  # type: ignore[list-item]
]
store_and_ops = st.sampled_from(STORES).flatmap(lambda pair: st.tuples(st.just(pair[0]), pair[1]))

# --- round trip ---------------------------------------------------------------


@PROPERTY
@given(case=store_and_ops)
def test_random_ops_round_trip_through_save_and_load(
    case: tuple[type[PersistentStore], list[Op]],
) -> None:
    cls, ops = case
    with store_dir() as directory:
        store = run(cls, ops, directory)
        assert store.save_to_dir(directory), f"ops: {ops!r}"
        loaded = cls.load_from_dir(directory)
    assert canonical(loaded.to_dict()) == canonical(store.to_dict()), f"ops: {ops!r}"


@PROPERTY
@given(ops=gate_ops)
def test_gate_counters_equal_a_model_replaying_the_ops(ops: list[Op]) -> None:
    model: dict[str, int] = {}
    saved: dict[str, int] = {}
    with store_dir() as directory:
        store = run(GateMetricStore, ops, directory)
        for op in ops:
            if isinstance(op, Decide):
                decision = "ALLOW" if op.allowed else "DENY"
                model[decision] = model.get(decision, 0) + 1
                for reason in set(op.reasons) & set(REASON_LABELS):
                    model[reason] = model.get(reason, 0) + 1
            elif isinstance(op, Breach) and op.kind in BREACH_KINDS:
                model[op.kind] = model.get(op.kind, 0) + 1
            elif isinstance(op, Save):
                saved = dict(model)
            elif isinstance(op, Reload):
                model = dict(saved)
    assert isinstance(store, GateMetricStore)
    observed = {
        **store.decision_counts(),
        **store.reason_counts(),
        **store.breach_counts(),
    }
    assert {k: v for k, v in observed.items() if v} == model, f"ops: {ops!r}"


# --- injected save failures ---------------------------------------------------


def failing_ops(step: str) -> FileOps:
    """Real file operations except `step`, which fails (after partly doing its work)."""

    def fail(*_: Any) -> Any:
        raise OSError(errno.EIO, f"injected failure at {step}")

    def half_write(fd: int, data: bytes) -> int:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "injected: disk full mid-write")

    def close_then_fail(fd: int) -> None:
        os.close(fd)
        fail()

    replacements = {"write": half_write, "close": close_then_fail}
    return FileOps(**{step: replacements.get(step, fail)})


@PROPERTY
@given(case=store_and_ops, step=st.sampled_from(STEPS))
def test_injected_save_failure_leaves_previous_file_or_none(
    case: tuple[type[PersistentStore], list[Op]], step: str
) -> None:
    """Fault: one filesystem step of save_to_dir fails (at every step in turn). Loading
    must give the last successfully saved state, or a missing file when there was none,
    never part of the new state; only a failure of the final directory fsync (after the
    rename) may leave the complete new state. No temp file is left behind."""
    cls, ops = case
    trace = f"ops: {ops!r}, failing step: {step}"
    with store_dir() as directory:
        store = run(cls, [op for op in ops if not isinstance(op, Reload)], directory)
        path = directory / cls.FILE_NAME
        previous = path.read_bytes() if path.exists() else None
        generation, failures = store.store_generation(), store.metric_write_failures()

        assert store.save_to_dir(directory, ops=failing_ops(step)) is False, trace
        assert store.metric_write_failures() == failures + 1, trace
        assert [p.name for p in directory.iterdir()] == ([cls.FILE_NAME] if path.exists() else [])
        loaded = cls.load_from_dir(directory)
        if step == "fsync_dir":
            assert store.store_generation() == generation + 1, trace
            assert loaded.store_generation() == generation + 1, trace
        elif previous is None:
            assert loaded.load_status is LoadStatus.MISSING, trace
            assert store.store_generation() == generation, trace
        else:
            assert path.read_bytes() == previous, trace
            assert store.store_generation() == generation, trace
        assert loaded.load_status in {LoadStatus.LOADED, LoadStatus.MISSING}, trace

        assert store.save_to_dir(directory), trace
        reloaded = cls.load_from_dir(directory)
    assert canonical(reloaded.to_dict()) == canonical(store.to_dict()), trace


# --- corruption and legacy ----------------------------------------------------

_BAD_ANY_STORE: list[Any] = [
    [],
    3,
    "store",
    None,
    {"reason_counts": {"S1_RATE_HIGH": -1}},
    {"reason_counts": []},
    {"store_generation": "3"},
    {"store_generation": True},
    {"store_start_timestamp": "yesterday"},
]
BAD_DOCUMENTS: dict[type[PersistentStore], list[Any]] = {
    GateMetricStore: [
        *_BAD_ANY_STORE,
        {"decision_counts": []},
        {"breach_counts": {"NO_OVERRIDE": "1"}},
        {"audit_write_failures": -2},
    ],
    MetricStore: [
        *_BAD_ANY_STORE,
        {"verdict_counts": {"release_ok": 1.5}},
        {"metrics": [{"verdict": "release_ok"}]},
        {"metrics": {}},
    ],
}


def _not_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return True
    return False


@st.composite
def corrupted(draw: st.DrawFn, cls: type[PersistentStore], valid: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "shape", "bytes"]))
    if kind == "truncate":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if kind == "shape":
        return json.dumps(draw(st.sampled_from(BAD_DOCUMENTS[cls]))).encode()
    return draw(st.binary(min_size=1, max_size=200).filter(_not_json))


@PROPERTY
@given(case=store_and_ops, data=st.data())
def test_corrupted_file_loads_as_fresh_defaults(
    case: tuple[type[PersistentStore], list[Op]], data: st.DataObject
) -> None:
    """Fault: the store file is truncated, has the wrong shape or is binary junk. Loading
    must not raise and must give a fresh store (all counters zero) with load_failures=1."""
    cls, ops = case
    with store_dir() as directory:
        store = run(cls, ops, directory)
        store.save_to_dir(directory)
        path = directory / cls.FILE_NAME
        bad = data.draw(corrupted(cls, path.read_bytes()), label="file content")
        path.write_bytes(bad)
        loaded = cls.load_from_dir(directory)
    fresh = counters(cls())
    fresh["load_failures"] = 1
    assert loaded.load_status is LoadStatus.CORRUPT, f"ops: {ops!r}, file: {bad!r}"
    assert counters(loaded) == fresh, f"ops: {ops!r}, file: {bad!r}"


LEGACY_DROPPED = (
    "store_start_timestamp",
    "schema_version",
    "load_failures",
    "metric_write_failures",
)


@PROPERTY
@given(case=store_and_ops)
def test_legacy_format_round_trips(case: tuple[type[PersistentStore], list[Op]]) -> None:
    cls, ops = case
    with store_dir() as directory:
        store = run(cls, [op for op in ops if not isinstance(op, Reload)], directory)
        legacy = store.to_dict()
        for key in LEGACY_DROPPED:
            legacy.pop(key)
        path = directory / cls.FILE_NAME
        path.write_text(json.dumps(legacy))
        loaded = cls.load_from_dir(directory)
        assert loaded.load_status is LoadStatus.LEGACY, f"ops: {ops!r}"
        assert loaded.store_start_timestamp() == path.stat().st_mtime
        assert loaded.save_to_dir(directory)
        reloaded = cls.load_from_dir(directory)
    expected = {k: v for k, v in counters(store).items() if k not in LEGACY_DROPPED}
    assert {k: v for k, v in counters(loaded).items() if k not in LEGACY_DROPPED} == {
        **expected,
        "store_generation": expected["store_generation"] + 1,
    }, f"ops: {ops!r}"
    assert canonical(reloaded.to_dict()) == canonical(loaded.to_dict()), f"ops: {ops!r}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children)
    ),
    max_leaves=6,
)


@PROPERTY
@given(
    case=store_and_ops,
    extra=st.dictionaries(st.text(min_size=1, max_size=10).map(lambda k: f"x_{k}"), json_values),
)
def test_extra_fields_in_file_are_ignored(
    case: tuple[type[PersistentStore], list[Op]], extra: dict[str, Any]
) -> None:
    cls, ops = case
    with store_dir() as directory:
        store = run(cls, [op for op in ops if not isinstance(op, Reload)], directory)
        document = {**store.to_dict(), **extra}
        (directory / cls.FILE_NAME).write_text(json.dumps(document))
        loaded = cls.load_from_dir(directory)
    assert loaded.load_status is LoadStatus.LOADED, f"ops: {ops!r}, extra: {extra!r}"
    assert canonical(loaded.to_dict()) == canonical(store.to_dict()), f"ops: {ops!r}"


# --- labels and exposition ----------------------------------------------------


def _export(store: PersistentStore) -> str:
    if isinstance(store, GateMetricStore):
        return GateMetricExporter.export_prometheus(store)
    assert isinstance(store, MetricStore)
    return MetricExporter.export_prometheus(store)


@PROPERTY
@given(ops=gate_ops)
def test_label_cardinality_stays_within_fixed_sets(ops: list[Op]) -> None:
    with store_dir() as directory:
        store = run(GateMetricStore, ops, directory)
    assert isinstance(store, GateMetricStore)
    assert list(store.decision_counts()) == ["ALLOW", "DENY"], f"ops: {ops!r}"
    assert list(store.reason_counts()) == list(REASON_LABELS), f"ops: {ops!r}"
    assert list(store.breach_counts()) == list(BREACH_KINDS), f"ops: {ops!r}"
    allowed = {
        "decision": {"ALLOW", "DENY"},
        "reason": set(REASON_LABELS),
        "kind": set(BREACH_KINDS),
    }
    for family in text_string_to_metric_families(_export(store)):
        for sample in family.samples:
            for label, value in sample.labels.items():
                assert value in allowed[label], f"ops: {ops!r}: {label}={value!r}"


@PROPERTY
@given(case=store_and_ops)
def test_prometheus_export_is_deterministic_and_valid(
    case: tuple[type[PersistentStore], list[Op]],
) -> None:
    cls, ops = case
    with store_dir() as first_dir, store_dir() as second_dir:
        first, second = run(cls, ops, first_dir), run(cls, ops, second_dir)
    text = _export(first)
    assert text == _export(second) == _export(first), f"ops: {ops!r}"
    families = list(text_string_to_metric_families(text))
    assert len(families) == text.count("# HELP ") == text.count("# TYPE "), f"ops: {ops!r}"
    document = first.to_dict()
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    if isinstance(first, GateMetricStore):
        for decision, count in document["decision_counts"].items():
            key = ("release_gate_decision_total", (("decision", decision),))
            assert values[key] == count, f"ops: {ops!r}"
    else:
        for verdict, count in document["verdict_counts"].items():
            key = ("release_preflight_verdict_total", (("verdict", verdict),))
            assert values[key] == count, f"ops: {ops!r}"
