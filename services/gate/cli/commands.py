"""gatectl commands that talk to the gate over gRPC: preflight, check, override, audit, watch."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc

from services.gate.audit import GENESIS_HASH, row_hash
from services.gate.cli import render
from services.gate.cli.args import KEY_ENV
from services.gate.cli.exits import (
    BLOCK,
    HOLD,
    NO_PERMISSION,
    OK,
    USAGE,
    CliExit,
    rpc_failure,
    warn,
)
from services.gate.cli.metrics_dir import record_run
from services.gate.domain.errors import SpecError
from services.gate.domain.spec import parse_spec
from services.gate.mapping import audit_record, reason_code
from services.runtime.keys import API_KEY_METADATA
from services.runtime.keys.channels import keyed_channel
from services.runtime.live.bus import BACKPRESSURE_DROP
from services.runtime.live.envelope import EnvelopeError, parse_envelope
from services.runtime.tokens.errors import token_hash

if TYPE_CHECKING:
    from ptf.gate.v1.gate_pb2_grpc import GateServiceAsyncStub as GateStub

T = TypeVar("T")
TOKEN_ENV = "GATECTL_OVERRIDE_TOKEN"


@asynccontextmanager
async def gate(args: argparse.Namespace) -> AsyncIterator[GateStub]:
    """An async stub on a channel to `--gate` presenting `--key`, closed afterwards."""
    if not args.key:
        raise CliExit(NO_PERMISSION, f"an API key is required (--key or {KEY_ENV})")
    async with keyed_channel(args.gate, ((API_KEY_METADATA, args.key),)) as channel:
        stub: GateStub = gate_pb2_grpc.GateServiceStub(channel)
        yield stub


async def rpc(call: Awaitable[T]) -> T:
    """Await a gate RPC; a failure becomes a `CliExit` with the mapped exit code."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        raise rpc_failure(exc) from None


def read_spec(path: str) -> str:
    """The spec file's text; unreadable → exit 64."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliExit(USAGE, f"cannot read spec {path}: {exc}") from None


def parse_fact_args(pairs: list[str] | None) -> dict[str, str]:
    """`--fact name=value` pairs as a mapping; malformed → exit 64."""
    facts: dict[str, str] = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CliExit(USAGE, f"--fact expects name=value, got {pair!r}")
        facts[name.strip()] = value.strip()
    return facts


def preflight_request(args: argparse.Namespace) -> gate_pb2.PreflightRequest:
    """The PreflightRequest described by the command-line arguments."""
    token = args.override_token or os.environ.get(TOKEN_ENV, "")
    return gate_pb2.PreflightRequest(
        spec_yaml=read_spec(args.spec),
        facts=parse_fact_args(args.fact),
        override_token=token,
        request_id=args.request_id or "",
    )


def _emit(document: dict[str, Any], text: str, as_json: bool) -> None:
    print(render.dumps(document) if as_json else text)


def _record_metrics(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.metrics_dir:
        record_run(Path(args.metrics_dir), result)


async def preflight(args: argparse.Namespace) -> int:
    """`gatectl preflight`: exit 0 OK, 1 HOLD, 2 BLOCK."""
    request = preflight_request(args)
    async with gate(args) as stub:
        result = await rpc(stub.Preflight(request, timeout=args.timeout))
    document = render.preflight_dict(result)
    _emit(document, render.preflight_text(document), args.json)
    _record_metrics(args, document)
    return int(result.exit_code)


async def check(args: argparse.Namespace) -> int:
    """`gatectl check`: exit 0 ALLOW, else the verdict's code (at least 1)."""
    request = gate_pb2.CheckRequest(preflight=preflight_request(args))
    async with gate(args) as stub:
        response = await rpc(stub.Check(request, timeout=args.timeout))
    document = render.check_dict(response)
    text = render.preflight_text(document["result"], decision=document["decision"])
    if not response.audit_written:
        text += "\nwarning: the decision could not be written to the audit trail"
    _emit(document, text, args.json)
    _record_metrics(args, document["result"])
    if response.decision == gate_pb2.DECISION_ALLOW:
        return OK
    return max(int(response.result.exit_code), HOLD)


def _reason_numbers(names: list[str]) -> list[int]:
    numbers = []
    for name in names:
        number = reason_code(name.strip().upper().removeprefix("BLOCK_REASON_CODE_"))
        if number == 0:
            raise CliExit(USAGE, f"unknown reason {name!r}")
        numbers.append(number)
    return numbers


async def override_request(args: argparse.Namespace) -> int:
    """`gatectl override request`: the only time the raw token is printed."""
    try:
        spec = parse_spec(read_spec(args.spec))
    except SpecError as exc:
        raise CliExit(USAGE, f"invalid spec: {exc}") from None
    request = gate_pb2.RequestOverrideRequest(
        release=spec.release,
        spec_hash=spec.spec_hash,
        reasons=_reason_numbers(args.reason),  # type: ignore[arg-type]
        justification=args.justification,
    )
    async with gate(args) as stub:
        response = await rpc(stub.RequestOverride(request, timeout=args.timeout))
    reasons = sorted({r.strip().upper().removeprefix("BLOCK_REASON_CODE_") for r in args.reason})
    document = {
        "token": response.token.token,
        "token_hash": response.token_hash,
        "expires_at": render.iso(response.token.expires_at),
        "release": spec.release,
        "spec_hash": spec.spec_hash,
        "reasons": reasons,
    }
    text = "\n".join(
        [
            f"override token (shown once, keep it secret): {response.token.token}",
            f"token hash: {response.token_hash}",
            f"expires at: {document['expires_at']}",
            f"release {spec.release}  spec {spec.spec_hash}",
            f"covers: {', '.join(reasons)}",
            "use: gatectl preflight|check --override-token <token> "
            f"(or {TOKEN_ENV}); show: gatectl override show --token-hash <hash>",
        ]
    )
    _emit(document, text, args.json)
    return OK


async def override_show(args: argparse.Namespace) -> int:
    """`gatectl override show`: state and history by hash; never the token."""
    hashed = args.token_hash or (token_hash(args.token) if args.token else "")
    if not hashed:
        raise CliExit(USAGE, "give --token-hash (or --token, hashed locally)")
    async with gate(args) as stub:
        info = await rpc(
            stub.DescribeOverride(
                gate_pb2.DescribeOverrideRequest(token_hash=hashed),
                timeout=args.timeout,
            )
        )
    entries = [render.audit_entry_dict(e) for e in info.audit_entries]
    reasons = [
        gate_pb2.BlockReasonCode.Name(r).removeprefix("BLOCK_REASON_CODE_") for r in info.reasons
    ]
    document = {
        "token_hash": info.token_hash,
        "state": gate_pb2.OverrideState.Name(info.state).removeprefix("OVERRIDE_STATE_"),
        "release": info.release,
        "spec_hash": info.spec_hash,
        "reasons": reasons,
        "operator": info.operator,
        "justification": info.justification,
        "issued_at": render.iso(info.issued_at),
        "expires_at": render.iso(info.expires_at),
        "used_at": render.iso(info.used_at),
        "audit_entries": entries,
    }
    text = "\n".join(
        [
            f"override {document['token_hash']}: {document['state']}",
            f"release {document['release']}  spec {document['spec_hash']}",
            f"covers: {', '.join(reasons) or '-'}",
            f"requested by {document['operator'] or '-'}: {document['justification'] or '-'}",
            f"issued {document['issued_at']}  expires {document['expires_at']}  "
            f"used {document['used_at'] or '-'}",
            render.table(render.AUDIT_HEADERS, render.audit_rows(entries)),
        ]
    )
    _emit(document, text, args.json)
    return OK


async def audit_tail(args: argparse.Namespace) -> int:
    """`gatectl audit tail`: the newest audit rows."""
    request = gate_pb2.ListAuditRequest(limit=args.limit, release=args.release or "")
    async with gate(args) as stub:
        page = await rpc(stub.ListAudit(request, timeout=args.timeout))
    entries = [render.audit_entry_dict(e) for e in page.entries]
    text = render.table(render.AUDIT_HEADERS, render.audit_rows(entries))
    _emit({"entries": entries, "next_cursor": page.next_cursor}, text, args.json)
    return OK


def chain_breaks(entries: list[gate_pb2.AuditEntry]) -> list[tuple[int, str]]:
    """Recompute every row hash (oldest first) exactly as the gate did when appending."""
    breaks: list[tuple[int, str]] = []
    expected_prev = GENESIS_HASH
    for entry in entries:
        if entry.prev_hash != expected_prev:
            breaks.append((entry.id, "prev_hash does not match the previous row"))
        try:
            recomputed = row_hash(entry.prev_hash, audit_record(entry))
        except ValueError as exc:
            breaks.append((entry.id, f"row cannot be read: {exc}"))
        else:
            if recomputed != entry.row_hash:
                breaks.append((entry.id, "row content does not match its hash"))
        expected_prev = entry.row_hash
    return breaks


async def audit_verify(args: argparse.Namespace) -> int:
    """`gatectl audit verify`: exit 0 intact, 2 when any row fails its hash."""
    entries: list[gate_pb2.AuditEntry] = []
    cursor = ""
    async with gate(args) as stub:
        while True:
            page = await rpc(
                stub.ListAudit(
                    gate_pb2.ListAuditRequest(limit=args.page_size, cursor=cursor),
                    timeout=args.timeout,
                )
            )
            entries.extend(page.entries)
            cursor = page.next_cursor
            if not cursor:
                break
    entries.reverse()
    breaks = chain_breaks(entries)
    document = {
        "rows_checked": len(entries),
        "intact": not breaks,
        "breaks": [{"id": row_id, "reason": why} for row_id, why in breaks],
    }
    lines = [f"checked {len(entries)} audit rows"]
    if breaks:
        lines.append(f"TAMPERING DETECTED: {len(breaks)} problem(s)")
        lines.extend(f"  row {row_id}: {why}" for row_id, why in breaks)
    else:
        lines.append("hash chain intact")
    _emit(document, "\n".join(lines), args.json)
    return BLOCK if breaks else OK


async def watch(args: argparse.Namespace) -> int:
    """`gatectl watch`: print each live event's envelope until the stream ends or --count
    decisions were printed.

    Every event is checked with the runtime's envelope parser before it is shown;
    drop warnings (`live.backpressure_drop`: this watcher fell behind) are shown
    too but not counted. An event that is not a valid envelope is reported on
    stderr and skipped.
    """
    seen = 0
    async with gate(args) as stub:
        call = stub.WatchDecisions(gate_pb2.WatchDecisionsRequest(release=args.release or ""))
        try:
            await rpc(call.initial_metadata())
            print(
                f"watching gate decisions at {args.gate} "
                f"({datetime.now(UTC).isoformat(timespec='seconds')})",
                file=sys.stderr,
                flush=True,
            )
            while args.count is None or seen < args.count:
                event = await rpc(call.read())
                if event is grpc.aio.EOF:
                    warn("the gate ended the stream")
                    break
                assert isinstance(event, gate_pb2.DecisionEvent)
                try:
                    envelope = parse_envelope(event.envelope)
                except EnvelopeError as exc:
                    warn(f"skipped event #{event.seq}: not a valid live envelope ({exc})")
                    continue
                if envelope.event != BACKPRESSURE_DROP:
                    seen += 1
                line = envelope.to_json() if args.json else render.envelope_line(envelope)
                print(line, flush=True)
        finally:
            call.cancel()
    return OK
