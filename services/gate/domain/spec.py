"""The release spec: the contract a release is judged against (docs/SPEC.md §5.1).

A spec is YAML written by people and kept in git, so parsing is strict: every
error names the field at fault, unknown keys are errors, YAML's implicit
typing (`release: 1.10` becoming the float 1.1) is refused, and hostile input
(huge documents, deep nesting, alias bombs, duplicate keys) is rejected before
it costs anything. `spec_hash` is computed over the parsed, normalised spec so
that comments, key order, quoting or `60m` vs `1h` do not change it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any

import yaml

from services.gate.domain.errors import SpecError
from services.gate.domain.facts import KNOWN_FACTS
from services.gate.domain.reasons import EVIDENCE_REASONS, BlockReasonCode
from services.runtime.config import GateThresholds, Thresholds
from services.runtime.config.validation import find_violations, is_finite_number

# Input limits of the document itself (docs/SPEC.md §11), not release thresholds.
_MAX_SPEC_BYTES = 64 * 1024
_MAX_DEPTH = 4
_MAX_NAME_LENGTH = 128
_WINDOW_BOUNDS_SECONDS = (60, 7 * 24 * 3600)
_DEFAULT_WINDOW = "1h"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$")
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_WINDOW_RE = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ALL_TENANTS = "*"

# Gate thresholds a release may tighten or loosen. Operational settings (token
# TTLs, timeouts, caches) are the platform's, not one release's, to choose.
SLO_FIELDS: frozenset[str] = frozenset(
    {
        "ERROR_5XX_RATE_MAX",
        "S1_RATE_MAX",
        "S1_MIN_INCIDENTS",
        "S1_ESCALATE_MINUTES",
        "P95_LATENCY_MULTIPLIER",
        "P95_LATENCY_BASELINE_MS",
        "LATENCY_MIN_SAMPLES",
        "LATENCY_ESCALATE_MINUTES",
        "OCR_SUSPECT_RATE_MAX",
        "S2_RATE_MAX",
        "ACCEPT_ROUNDING_RATE_MIN",
        "ACCEPT_ROUNDING_RATE_MAX",
        "MAX_QUEUE_DEPTH",
        "FEEDBACK_COVERAGE_MIN",
        "MIN_INVOICES",
    }
)
# Fractions: a value above 1 would silently switch the rule off, which is
# what `dry_run` is for.
_RATE_SUFFIXES = ("_RATE_MAX", "_RATE_MIN", "_COVERAGE_MIN")

_REQUIRED_KEYS = ("release", "build", "facts")
_OPTIONAL_KEYS = ("tenant_id", "window", "slo", "non_overridable", "dry_run", "backtest_id")


@dataclass(frozen=True)
class ReleaseSpec:
    """A parsed, validated release spec; build it with `parse_spec`."""

    release: str
    build: str
    # None: signals of every tenant count.
    tenant_id: str | None
    window_seconds: int
    # Facts the caller must supply, sorted.
    facts: tuple[str, ...]
    # Overrides of `Thresholds.Gate` fields for this release only.
    slo: Mapping[str, int | float]
    non_overridable: frozenset[BlockReasonCode]
    # Reasons evaluated and reported but never counted in the verdict.
    dry_run: frozenset[BlockReasonCode]
    backtest_id: str | None

    @property
    def window(self) -> str:
        """The window in its shortest spelling, e.g. `1h` for 3600 s."""
        return format_window(self.window_seconds)

    def canonical(self) -> dict[str, Any]:
        """The normalised content that `spec_hash` covers (defaults included)."""
        return {
            "backtest_id": self.backtest_id,
            "build": self.build,
            "dry_run": sorted(self.dry_run),
            "facts": list(self.facts),
            "non_overridable": sorted(self.non_overridable),
            "release": self.release,
            "slo": dict(sorted(self.slo.items())),
            "tenant_id": self.tenant_id,
            "window_seconds": self.window_seconds,
        }

    @functools.cached_property
    def spec_hash(self) -> str:
        """`sha256:` + 64 hex of SHA-256 over the canonical JSON (sorted keys).

        Computed once per spec: a parsed spec is shared by every preflight of its text.
        """
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()

    def gate_thresholds(self, base: GateThresholds) -> GateThresholds:
        """`base` with this spec's SLO overrides applied.

        Raises `SpecError` when the combination breaks a config invariant
        (e.g. an accept-rounding minimum above the deployed maximum), which
        can only be known once the deployed thresholds are.
        """
        return _thresholds_with(base, tuple(sorted(self.slo.items())))


def format_window(seconds: int) -> str:
    """3600 → `1h`, 5400 → `90m`, 90 → `90s`."""
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class _Rejected(Exception):
    """Raised inside the YAML loader; turned into a `SpecError` by `parse_spec`."""


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, deep nesting and duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # Aliases are the "billion laughs" vector and have no use in a spec.
        if self.check_event(yaml.AliasEvent):
            raise _Rejected("YAML anchors and aliases are not allowed")
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                raise _Rejected(f"nested deeper than {_MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise _Rejected(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_spec(text: str) -> ReleaseSpec:
    """Parse and validate a release spec; `SpecError(field, message)` on the first problem."""
    if len(text.encode("utf-8")) > _MAX_SPEC_BYTES:
        raise SpecError("spec", f"larger than {_MAX_SPEC_BYTES} bytes")
    try:
        data = yaml.load(text, Loader=_SpecLoader)
    except _Rejected as exc:
        raise SpecError("spec", str(exc)) from None
    except yaml.YAMLError as exc:
        raise SpecError("spec", f"not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise SpecError("spec", "top level must be a mapping of fields")
    allowed = set(_REQUIRED_KEYS) | set(_OPTIONAL_KEYS)
    for key in data:
        if not isinstance(key, str) or key not in allowed:
            expected = ", ".join(sorted(allowed))
            raise SpecError(str(key), f"unknown field; expected one of: {expected}")
    for key in _REQUIRED_KEYS:
        if data.get(key) is None:
            raise SpecError(key, "required")

    release = _name(data["release"], "release")
    build = _name(data["build"], "build")
    tenant_id = _tenant(data.get("tenant_id"))
    window_seconds = _window(data.get("window", _DEFAULT_WINDOW))
    facts = _facts(data["facts"])
    slo = _slo(data.get("slo"))
    _check_invariants(GateThresholds(), _merge(GateThresholds(), slo), slo)
    non_overridable = frozenset(_reasons(data.get("non_overridable"), "non_overridable"))
    dry_run = _reasons(data.get("dry_run"), "dry_run")
    for index, code in enumerate(dry_run):
        field = f"dry_run[{index}]"
        if code in EVIDENCE_REASONS:
            raise SpecError(field, f"{code} cannot be dry-run: the gate never ignores missing data")
        if code in non_overridable:
            raise SpecError(field, f"{code} is also non_overridable; a reason is one or the other")
    backtest_id = data.get("backtest_id")
    return ReleaseSpec(
        release=release,
        build=build,
        tenant_id=tenant_id,
        window_seconds=window_seconds,
        facts=facts,
        slo=slo,
        non_overridable=non_overridable,
        dry_run=frozenset(dry_run),
        backtest_id=None if backtest_id is None else _name(backtest_id, "backtest_id"),
    )


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return f"{exc.problem} (line {exc.problem_mark.line + 1})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise SpecError(field, f"must be a string (quote it in YAML), got {type(value).__name__}")
    return value


def _name(value: object, field: str) -> str:
    text = _string(value, field)
    if not 0 < len(text) <= _MAX_NAME_LENGTH or not _NAME_RE.match(text):
        raise SpecError(
            field,
            f"must be 1–{_MAX_NAME_LENGTH} characters of letters, digits and . _ : + - "
            f"starting with a letter or digit, got {text[:_MAX_NAME_LENGTH]!r}",
        )
    return text


def _tenant(value: object) -> str | None:
    if value is None or value == _ALL_TENANTS:
        return None
    text = _string(value, "tenant_id")
    if not _TENANT_RE.match(text):
        raise SpecError(
            "tenant_id", f"must match {_TENANT_RE.pattern} or be '*' for all tenants, got {text!r}"
        )
    return text


def _window(value: object) -> int:
    text = _string(value, "window")
    match = _WINDOW_RE.match(text)
    if not match:
        raise SpecError("window", f"must look like 30m, 1h or 2d, got {text!r}")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    low, high = _WINDOW_BOUNDS_SECONDS
    if not low <= seconds <= high:
        raise SpecError(
            "window", f"must be between {format_window(low)} and {format_window(high)}, got {text}"
        )
    return seconds


def _as_list(value: object, field: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(field, f"must be a list, got {type(value).__name__}")
    return value


def _facts(value: object) -> tuple[str, ...]:
    names: list[str] = []
    for index, item in enumerate(_as_list(value, "facts")):
        field = f"facts[{index}]"
        name = _string(item, field)
        if name not in KNOWN_FACTS:
            raise SpecError(field, f"unknown fact {name!r}; known facts: {', '.join(KNOWN_FACTS)}")
        if name in names:
            raise SpecError(field, f"{name} listed twice")
        names.append(name)
    return tuple(sorted(names))


def _reasons(value: object, field: str) -> tuple[BlockReasonCode, ...]:
    """Reason names in document order, so errors can point at the list index."""
    codes: list[BlockReasonCode] = []
    for index, item in enumerate(_as_list(value, field)):
        item_field = f"{field}[{index}]"
        name = _string(item, item_field)
        try:
            code = BlockReasonCode(name)
        except ValueError:
            raise SpecError(item_field, f"unknown reason {name!r}") from None
        if code in codes:
            raise SpecError(item_field, f"{name} listed twice")
        codes.append(code)
    return tuple(codes)


def _slo(value: object) -> Mapping[str, int | float]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        raise SpecError(
            "slo", f"must be a mapping of Gate threshold: value, got {type(value).__name__}"
        )
    kinds = {f.name: type(getattr(GateThresholds(), f.name)) for f in fields(GateThresholds)}
    out: dict[str, int | float] = {}
    for key, raw in value.items():
        field = f"slo.{key}"
        if key not in SLO_FIELDS:
            reason = "is not a release SLO" if key in kinds else "is not a Gate threshold"
            raise SpecError(field, f"{reason}; allowed: {', '.join(sorted(SLO_FIELDS))}")
        if not is_finite_number(raw):
            raise SpecError(field, f"must be a finite number, got {raw!r}")
        number: int | float
        if kinds[key] is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise SpecError(field, f"must be a whole number, got {raw!r}")
            number = int(raw)
        else:
            number = float(raw)
        if key.endswith(_RATE_SUFFIXES) and number > 1:
            raise SpecError(field, f"is a fraction between 0 and 1, got {number!r}")
        out[key] = number
    return MappingProxyType(dict(sorted(out.items())))


@functools.lru_cache(maxsize=256)
def _thresholds_with(
    base: GateThresholds, slo: tuple[tuple[str, int | float], ...]
) -> GateThresholds:
    """Merged and checked once per (deployed thresholds, overrides): every preflight of a
    release asks again, and the invariant check costs more than the rest of an evaluation."""
    overrides = dict(slo)
    merged = _merge(base, overrides)
    _check_invariants(base, merged, overrides)
    return merged


def _merge(base: GateThresholds, slo: Mapping[str, int | float]) -> GateThresholds:
    changes: dict[str, Any] = dict(slo)
    return replace(base, **changes)


def _check_invariants(
    base: GateThresholds, merged: GateThresholds, slo: Mapping[str, int | float]
) -> None:
    """Apply the config module's invariants (I7 positivity, I9 bands) to the SLO overrides.

    Only violations the overrides introduce count; the field reported is the
    first overridden key the violation mentions.
    """
    before = {str(v) for v in find_violations(replace(Thresholds(), Gate=base))}
    for violation in find_violations(replace(Thresholds(), Gate=merged)):
        if str(violation) in before:
            continue
        mentioned = [key for key in sorted(slo) if f"Gate.{key} " in violation.message]
        field = f"slo.{mentioned[0]}" if mentioned else "slo"
        raise SpecError(field, violation.message)
