"""The telemetry-owned preflight and gate stores: RecordPreflight, GATE_DECISION events,
`/metrics` names as scraped (preflight only: `release_gate_*` is the gate's), and totals
that survive a restart."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from ptf.telemetry.v1 import telemetry_pb2

from services.runtime.errors import ERROR_CODE_METADATA, ERROR_FIELD_METADATA
from services.telemetry.service import DEFINITION
from tests.conftest import StartService
from tests.support.services import ServiceHandle
from tests.telemetry.factories import Slot, event, gate_decision, record, stub, timestamp

PREFLIGHT_NAMES = {
    "release_preflight_verdict_total": "verdict",
    "release_preflight_reason_total": "reason",
    "release_preflight_override_total": "result",
    "release_preflight_metric_write_failures_total": None,
}


def _preflight(**changes: object) -> telemetry_pb2.RecordPreflightRequest:
    request = telemetry_pb2.RecordPreflightRequest(
        verdict=telemetry_pb2.VERDICT_RELEASE_BLOCK,
        exit_code=2,
        reasons=["QUEUE_STUCK", "S1_RATE_HIGH"],
        override_result="none",
        duration_ms=12.5,
        spec_hash="sha256:abc",
    )
    for name, value in changes.items():
        if name == "timestamp":
            request.timestamp.CopyFrom(value)  # type: ignore[arg-type]
        elif name == "reasons":
            del request.reasons[:]
            request.reasons.extend(value)  # type: ignore[call-overload]
        else:
            setattr(request, name, value)
    return request


async def _scrape(svc: ServiceHandle) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with svc.http.get("/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _record_decisions(svc: ServiceHandle, slot: Slot) -> list[telemetry_pb2.Event]:
    events = [
        event("GATE_DECISION", "", gate_decision(True), slot.at(1)),
        event(
            "GATE_DECISION",
            "",
            gate_decision(False, ["S1_RATE_HIGH", "NOT_A_REASON"], contract_breach=True),
            slot.at(2),
        ),
        event("GATE_DECISION", "", gate_decision(False, audit_write_failed=True), slot.at(3)),
    ]
    response = await record(svc.service_channel, events)
    assert response.accepted == 3
    return events


async def test_record_preflight_persists_the_run_in_the_metrics_dir(
    telemetry: ServiceHandle,
) -> None:
    when = datetime(2026, 1, 17, 16, 0, tzinfo=UTC)
    response = await stub(telemetry.service_channel).RecordPreflight(
        _preflight(timestamp=timestamp(when))
    )
    assert response.store_generation == 1
    saved = json.loads((Path(telemetry.config.metrics_dir) / "preflight_metrics.json").read_text())
    assert saved["verdict_counts"]["release_block"] == 1
    assert saved["reason_counts"]["QUEUE_STUCK"] == 1
    assert saved["metrics"][0]["timestamp"] == "2026-01-17T16:00:00+00:00"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"verdict": telemetry_pb2.VERDICT_UNSPECIFIED}, "INVALID_VERDICT"),
        ({"verdict": 42}, "INVALID_VERDICT"),
        ({"override_result": "maybe"}, "INVALID_OVERRIDE_RESULT"),
        ({"override_result": "applied"}, "INCONSISTENT_PREFLIGHT"),
        ({"duration_ms": math.nan}, "INVALID_DURATION"),
        ({"duration_ms": -1.0}, "INVALID_DURATION"),
        ({"exit_code": 300}, "INVALID_EXIT_CODE"),
        ({"reasons": ["s1 rate high"]}, "INVALID_REASON"),
        ({"reasons": ["QUEUE_STUCK"] * 33}, "TOO_MANY_REASONS"),
        ({"spec_hash": "x" * 129}, "INVALID_SPEC_HASH"),
    ],
)
async def test_malformed_preflight_is_invalid_argument_and_nothing_is_saved(
    telemetry: ServiceHandle, changes: dict[str, object], code: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(telemetry.service_channel).RecordPreflight(_preflight(**changes))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(caught.value.trailing_metadata() or ())[ERROR_CODE_METADATA] == code
    assert not (Path(telemetry.config.metrics_dir) / "preflight_metrics.json").exists()


async def test_a_batch_of_preflight_runs_is_persisted_together(
    telemetry: ServiceHandle,
) -> None:
    runs = [_preflight(), _preflight(verdict=telemetry_pb2.VERDICT_RELEASE_OK, exit_code=0)] * 3
    await stub(telemetry.service_channel).RecordPreflights(
        telemetry_pb2.RecordPreflightsRequest(runs=runs)
    )
    saved = json.loads((Path(telemetry.config.metrics_dir) / "preflight_metrics.json").read_text())
    assert saved["verdict_counts"]["release_block"] == 3
    assert saved["verdict_counts"]["release_ok"] == 3
    assert len(saved["metrics"]) == 6


async def test_a_batch_with_one_malformed_run_is_refused_whole_naming_it(
    telemetry: ServiceHandle,
) -> None:
    runs = [_preflight(), _preflight(duration_ms=math.inf)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(telemetry.service_channel).RecordPreflights(
            telemetry_pb2.RecordPreflightsRequest(runs=runs)
        )
    trailers = dict(caught.value.trailing_metadata() or ())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (trailers[ERROR_CODE_METADATA], trailers[ERROR_FIELD_METADATA]) == (
        "INVALID_DURATION",
        "runs[1].duration_ms",
    )
    assert not (Path(telemetry.config.metrics_dir) / "preflight_metrics.json").exists()


async def test_an_oversized_batch_of_preflight_runs_is_refused(telemetry: ServiceHandle) -> None:
    runs = [_preflight()] * 1001
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(telemetry.service_channel).RecordPreflights(
            telemetry_pb2.RecordPreflightsRequest(runs=runs)
        )
    assert dict(caught.value.trailing_metadata() or ())[ERROR_CODE_METADATA] == "BATCH_TOO_LARGE"


async def test_gate_decision_events_are_counted_once_in_the_gate_store(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    events = await _record_decisions(telemetry, slot)
    again = await record(telemetry.service_channel, events)
    assert again.duplicates == 3
    saved = json.loads((Path(telemetry.config.metrics_dir) / "gate_metrics.json").read_text())
    assert saved["decision_counts"] == {"ALLOW": 1, "DENY": 2}
    assert saved["reason_counts"]["S1_RATE_HIGH"] == 1
    assert "NOT_A_REASON" not in saved["reason_counts"]
    assert saved["breach_counts"] == {"NO_OVERRIDE": 1, "NON_OVERRIDABLE": 0}
    assert saved["audit_write_failures"] == 1


async def test_metrics_scrape_uses_the_seed_names_with_every_label(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    await _record_decisions(telemetry, slot)
    await stub(telemetry.service_channel).RecordPreflight(_preflight())
    scraped = await _scrape(telemetry)
    names = {name for name, _ in scraped}
    assert set(PREFLIGHT_NAMES) <= names
    assert not any(name.endswith("_total_total") for name in names)
    assert scraped[("release_preflight_verdict_total", (("verdict", "release_block"),))] == 1
    assert scraped[("release_preflight_override_total", (("result", "none"),))] == 1
    reasons = {labels for name, labels in scraped if name == "release_preflight_reason_total"}
    assert len(reasons) == 17


async def test_gate_decisions_are_not_exported_by_telemetry(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    await _record_decisions(telemetry, slot)
    scraped = await _scrape(telemetry)
    assert {name for name, _ in scraped if name.startswith("release_gate_")} == set()


async def test_totals_survive_a_restart_on_the_same_metrics_dir(
    start_service: StartService, tmp_path: Path, slot: Slot
) -> None:
    env = {"PTF_METRICS_DIR": str(tmp_path / "metrics")}
    async with start_service(DEFINITION, **env) as first:
        await _record_decisions(first, slot)
        await stub(first.service_channel).RecordPreflight(_preflight())
        before = await _scrape(first)
    async with start_service(DEFINITION, **env) as second:
        after = await _scrape(second)
    for name in PREFLIGHT_NAMES:
        series = {key: value for key, value in before.items() if key[0] == name}
        assert series, name
        assert {key: after[key] for key in series} == series, name
    assert after[("release_preflight_verdict_total", (("verdict", "release_block"),))] == 1


async def test_unwritable_metrics_dir_counts_a_write_failure_and_the_rpc_succeeds(
    start_service: StartService, tmp_path: Path
) -> None:
    """Fault: the metrics dir cannot be created (a file is in the way). RecordPreflight must
    still succeed (fail-open), the generation stays 0 and the failure is counted on /metrics."""
    blocker = tmp_path / "metrics"
    blocker.write_text("not a directory")
    async with start_service(DEFINITION, PTF_METRICS_DIR=str(blocker)) as svc:
        response = await stub(svc.service_channel).RecordPreflight(_preflight())
        scraped = await _scrape(svc)
    assert response.store_generation == 0
    assert scraped[("release_preflight_metric_write_failures_total", ())] == 1
    assert scraped[("release_preflight_verdict_total", (("verdict", "release_block"),))] == 1


async def test_corrupt_store_file_at_start_gives_a_fresh_counted_store(
    start_service: StartService, tmp_path: Path
) -> None:
    """Fault: preflight_metrics.json is garbage when the service starts. It must start anyway
    with a fresh preflight store and report release_preflight_store_load_failures_total 1."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "preflight_metrics.json").write_bytes(b"\x00\x01 not json")
    async with start_service(DEFINITION, PTF_METRICS_DIR=str(directory)) as svc:
        scraped = await _scrape(svc)
    assert scraped[("release_preflight_store_load_failures_total", ())] == 1
    assert scraped[("release_preflight_verdict_total", (("verdict", "release_block"),))] == 0
