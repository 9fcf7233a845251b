"""Run schemathesis against one running service: every operation, a bounded number of examples.

Schemathesis sends its requests with `requests` (blocking), so the tests run
this in a worker thread while the service answers on the test's event loop.
Failures are collected per operation instead of stopping at the first, so
one run reports everything the document and the service disagree on.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, Config, GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation

# Per-operation expectations the document cannot express; each entry says why.
_CONFIG = Path(__file__).with_name("schemathesis.toml")


@dataclass
class FuzzTotals:
    """What one run did: operations, examples sent, and each operation's failure report."""

    operations: int = 0
    examples: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    # (operation, generation mode, status) -> responses: what the examples reached.
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)


def fuzz_service(
    base_url: str,
    *,
    headers: Mapping[str, str],
    max_examples: int,
    modes: Sequence[GenerationMode] = (GenerationMode.POSITIVE,),
    generate_keys: bool = False,
) -> FuzzTotals:
    """Every operation of `base_url`'s /openapi.json with schemathesis' default checks.

    `headers` are sent with every request (the key, or nothing). Unless
    `generate_keys`, schemathesis sends no key values of its own, so a run
    without a key really sends none; with it, it makes up X-API-Key /
    X-Admin-Key values, which no key store knows.
    """
    # from_dict, not from_url: from_url leaves out the operation it loaded the document from.
    with urllib.request.urlopen(f"{base_url}/openapi.json", timeout=10) as response:
        document = json.load(response)
    schema = schemathesis.openapi.from_dict(document, config=Config.from_path(_CONFIG))
    schema.config.generation.update(with_security_parameters=generate_keys)
    totals = FuzzTotals()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            totals.failures[f"document ({result.err()})"] = "an operation schemathesis cannot load"
            continue
        operation = result.ok()
        totals.operations += 1
        if _streams(operation) and headers:
            # A keyed request that is accepted opens an endless stream: there is no response
            # to check. Its refusals are covered without a key and by tests/live.
            continue
        for mode in modes:
            _fuzz_operation(operation, mode, base_url, headers, max_examples, totals)
    return totals


def _streams(operation: APIOperation[Any, Any, Any, Any]) -> bool:
    """Whether the operation answers an event stream (GET /live)."""
    ok = operation.definition.raw.get("responses", {}).get("200", {})
    return "text/event-stream" in ok.get("content", {})


def _fuzz_operation(
    operation: APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    base_url: str,
    headers: Mapping[str, str],
    max_examples: int,
    totals: FuzzTotals,
) -> None:
    # The same examples every run, so a failure reproduces; found failures are reported
    # as found (no shrinking), which keeps a failing run as short as a passing one.
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Case[Any]) -> None:
        totals.examples += 1
        sent: dict[str, Any] = {"base_url": base_url, "headers": dict(headers), "timeout": 10}
        response = case.call(**sent)
        totals.statuses[(operation.label, mode.value, response.status_code)] += 1
        case.validate_response(response, headers=dict(headers), transport_kwargs=sent)

    try:
        check()
    except Unsatisfiable:
        # No input to get wrong (no parameters, no body): no negative example exists.
        assert mode is GenerationMode.NEGATIVE, operation.label
    except (Exception, FailureGroup) as exc:  # every operation's report is collected
        totals.failures[f"{operation.label} ({mode.value})"] = str(exc)
