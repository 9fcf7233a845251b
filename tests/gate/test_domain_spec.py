"""Release spec parsing: errors name the field, hostile YAML is refused, spec_hash is canonical."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.gate.domain.errors import FactError, SpecError
from services.gate.domain.facts import parse_facts
from services.gate.domain.reasons import BlockReasonCode
from services.gate.domain.spec import SLO_FIELDS, parse_spec
from services.runtime.config import GateThresholds

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "release-spec.example.yaml"

MINIMAL = 'release: "r1"\nbuild: "b1"\nfacts: [tests_passed]\n'


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    return info.value


def test_example_spec_in_deploy_parses() -> None:
    spec = parse_spec(EXAMPLE.read_text(encoding="utf-8"))
    assert spec.release == "2026.01.17-rc1"
    assert spec.facts == ("smoke_passed", "tests_passed")
    assert BlockReasonCode.NOT_READY in spec.non_overridable
    assert spec.backtest_id is not None
    spec.gate_thresholds(GateThresholds())


def test_minimal_spec_gets_defaults() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.tenant_id is None
    assert spec.window == "1h"
    assert spec.slo == {}
    assert spec.non_overridable == frozenset()
    assert spec.dry_run == frozenset()
    assert spec.backtest_id is None


@pytest.mark.parametrize("field", ["release", "build", "facts"])
def test_missing_required_field_is_named(field: str) -> None:
    lines = [line for line in MINIMAL.splitlines() if not line.startswith(field)]
    assert _error("\n".join(lines)).field == field


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        (MINIMAL + "relase_notes: x\n", "relase_notes", "unknown field"),
        (MINIMAL + "window: 30s\n", "window", "between 1m and 7d"),
        (MINIMAL + "window: 8d\n", "window", "between 1m and 7d"),
        (MINIMAL + "window: an hour\n", "window", "30m, 1h or 2d"),
        (MINIMAL + "tenant_id: Pilot!\n", "tenant_id", "must match"),
        (MINIMAL.replace('"r1"', "1.10"), "release", "must be a string"),
        (MINIMAL.replace('"b1"', '"bad build"'), "build", "letters, digits"),
        (
            MINIMAL.replace("[tests_passed]", "[tests_passed, lint_passed]"),
            "facts[1]",
            "unknown fact",
        ),
        (MINIMAL.replace("[tests_passed]", "[tests_passed, tests_passed]"), "facts[1]", "twice"),
        (MINIMAL.replace("[tests_passed]", "tests_passed"), "facts", "must be a list"),
        (MINIMAL + "slo: {S1_RATE_MAXX: 0.2}\n", "slo.S1_RATE_MAXX", "not a Gate threshold"),
        (
            MINIMAL + "slo: {OVERRIDE_TOKEN_TTL_SECONDS: 60}\n",
            "slo.OVERRIDE_TOKEN_TTL_SECONDS",
            "not a release SLO",
        ),
        (MINIMAL + "slo: {S1_RATE_MAX: 1.5}\n", "slo.S1_RATE_MAX", "between 0 and 1"),
        (MINIMAL + "slo: {S1_RATE_MAX: -0.1}\n", "slo.S1_RATE_MAX", "must be > 0"),
        (MINIMAL + "slo: {S1_RATE_MAX: .nan}\n", "slo.S1_RATE_MAX", "finite number"),
        (MINIMAL + "slo: {S1_RATE_MAX: '0.2'}\n", "slo.S1_RATE_MAX", "finite number"),
        (MINIMAL + "slo: {S1_MIN_INCIDENTS: 2.5}\n", "slo.S1_MIN_INCIDENTS", "whole number"),
        (
            MINIMAL + "slo: {ACCEPT_ROUNDING_RATE_MIN: 0.3}\n",
            "slo.ACCEPT_ROUNDING_RATE_MIN",
            "must be <",
        ),
        (MINIMAL + "slo: [S1_RATE_MAX]\n", "slo", "must be a mapping"),
        (
            MINIMAL + "non_overridable: [NOT_READY, NOT_REDY]\n",
            "non_overridable[1]",
            "unknown reason",
        ),
        (MINIMAL + "dry_run: [SIGNAL_UNAVAILABLE]\n", "dry_run[0]", "never ignores missing"),
        (MINIMAL + "dry_run: [INSUFFICIENT_DATA]\n", "dry_run[0]", "never ignores missing"),
        (
            MINIMAL + "non_overridable: [S1_RATE_HIGH]\ndry_run: [S1_RATE_HIGH]\n",
            "dry_run[0]",
            "also non_overridable",
        ),
        (MINIMAL + "backtest_id: 12\n", "backtest_id", "must be a string"),
    ],
)
def test_spec_errors_name_the_field(text: str, field: str, fragment: str) -> None:
    error = _error(text)
    assert error.field == field
    assert fragment in error.message
    assert str(error).startswith(f"{field}: ")
    assert error.error_code == "SPEC_INVALID"


def test_yaml_aliases_are_refused() -> None:
    text = MINIMAL + "anchors: &a [NOT_READY]\nnon_overridable: *a\n"
    error = _error(text)
    assert error.field == "spec"
    assert "aliases" in error.message


def test_deep_nesting_is_refused() -> None:
    error = _error(MINIMAL + "slo: {a: {b: {c: {d: 1}}}}\n")
    assert "nested deeper" in error.message


def test_oversized_spec_is_refused() -> None:
    error = _error(MINIMAL + "# " + "x" * (64 * 1024) + "\n")
    assert error.field == "spec"
    assert "larger than" in error.message


def test_duplicate_keys_are_refused() -> None:
    error = _error(MINIMAL + 'release: "r2"\n')
    assert "duplicate key 'release'" in error.message


def test_invalid_yaml_reports_the_line() -> None:
    error = _error(MINIMAL + "window: [1h\n")
    assert error.field == "spec"
    assert "line" in error.message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", ""])
def test_top_level_must_be_a_mapping(text: str) -> None:
    assert _error(text).field == "spec"


def test_python_tags_are_refused() -> None:
    error = _error(MINIMAL + "backtest_id: !!python/object/apply:os.getpid []\n")
    assert error.field == "spec"


def test_slo_fields_are_gate_thresholds() -> None:
    assert set(GateThresholds.__dataclass_fields__) >= SLO_FIELDS


def test_slo_values_take_the_threshold_type() -> None:
    spec = parse_spec(MINIMAL + "slo: {S1_MIN_INCIDENTS: 30.0, S1_RATE_MAX: 1}\n")
    assert spec.slo == {"S1_MIN_INCIDENTS": 30, "S1_RATE_MAX": 1.0}
    assert isinstance(spec.slo["S1_MIN_INCIDENTS"], int)
    assert isinstance(spec.slo["S1_RATE_MAX"], float)


# spec_hash ------------------------------------------------------------------------

FORMATTED_A = """\
# the pilot release
release: "2026.01.17-rc1"
build: git:abc1234
tenant_id: pilot
window: 1h
facts: [tests_passed, smoke_passed]
slo: {S1_RATE_MAX: 0.25, MIN_INVOICES: 30}
non_overridable: [NOT_READY, QUEUE_STUCK]
"""

FORMATTED_B = """\
non_overridable:
  - QUEUE_STUCK
  - NOT_READY
slo:
  MIN_INVOICES: 30.0
  S1_RATE_MAX: 0.250
window: "60m"
facts:
  - smoke_passed
  - tests_passed
tenant_id: 'pilot'
build: "git:abc1234"
release: 2026.01.17-rc1
dry_run: []
"""


def test_spec_hash_is_stable_across_formatting() -> None:
    assert parse_spec(FORMATTED_A).spec_hash == parse_spec(FORMATTED_B).spec_hash


def test_spec_hash_is_sha256_hex() -> None:
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", parse_spec(MINIMAL).spec_hash)


def test_spec_hash_changes_when_content_changes() -> None:
    changed = FORMATTED_A.replace("0.25", "0.26")
    assert parse_spec(changed).spec_hash != parse_spec(FORMATTED_A).spec_hash


def test_all_tenants_spelled_star_or_omitted_hash_the_same() -> None:
    assert parse_spec(MINIMAL + "tenant_id: '*'\n").spec_hash == parse_spec(MINIMAL).spec_hash


REASON_NAMES = [c.value for c in BlockReasonCode if c.value.endswith("_HIGH")]


@settings(max_examples=200, deadline=None)
@given(
    order=st.permutations(["release", "build", "facts", "window", "non_overridable"]),
    reasons=st.lists(st.sampled_from(REASON_NAMES), min_size=1, max_size=4, unique=True),
    flow=st.booleans(),
    data=st.data(),
)
def test_spec_hash_ignores_key_and_list_order_property(
    order: list[str], reasons: list[str], flow: bool, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(reasons))

    def render(keys: list[str], items: list[str]) -> str:
        values = {
            "release": '"r1"',
            "build": "b1",
            "facts": "[smoke_passed, tests_passed]",
            "window": "120m",
            "non_overridable": (
                "[" + ", ".join(items) + "]"
                if flow
                else "\n" + "".join(f"  - {i}\n" for i in items)
            ),
        }
        return "".join(f"{k}: {values[k]}\n".replace("\n\n", "\n") for k in keys)

    baseline = parse_spec(render(sorted(order), sorted(reasons)))
    assert parse_spec(render(order, shuffled)).spec_hash == baseline.spec_hash


# facts -------------------------------------------------------------------------------


def test_facts_parse_true_and_false_in_any_case() -> None:
    facts = parse_facts({"tests_passed": "TRUE", "smoke_passed": "false"}, ["tests_passed"])
    assert facts == {"tests_passed": True, "smoke_passed": False}


@pytest.mark.parametrize(
    ("raw", "required", "field", "fragment"),
    [
        ({"test_passed": "true"}, [], "facts.test_passed", "unknown fact"),
        ({"tests_passed": "yes"}, [], "facts.tests_passed", "true or false"),
        ({}, ["smoke_passed"], "facts.smoke_passed", "not supplied"),
    ],
)
def test_fact_errors_name_the_fact(
    raw: dict[str, str], required: list[str], field: str, fragment: str
) -> None:
    with pytest.raises(FactError) as info:
        parse_facts(raw, required)
    assert info.value.field == field
    assert fragment in info.value.message
