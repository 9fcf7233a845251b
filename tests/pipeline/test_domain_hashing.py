"""Canonical content hash: the idempotency key of intake (SPEC §3.1)."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from services.pipeline.domain import ErrorCode, PipelineDomainError, content_hash
from services.pipeline.domain.hashing import MAX_DEPTH, canonical_json
from tests.pipeline.domain_builders import document


def test_hash_is_sha256_prefixed_hex() -> None:
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", content_hash(document()))


def test_hash_ignores_key_order_and_whitespace() -> None:
    doc = document()
    reordered = json.loads(json.dumps(dict(reversed(list(doc.items()))), indent=4))
    assert content_hash(reordered) == content_hash(doc)


@pytest.mark.parametrize(
    "spelling", [42000.0, Decimal("42000.000"), Decimal("4.2E+4"), Decimal(42000)]
)
def test_hash_ignores_how_a_number_is_spelt(spelling: object) -> None:
    assert content_hash({"total": spelling}) == content_hash({"total": 42000})


def test_hash_distinguishes_fields_the_pipeline_ignores() -> None:
    """Two invoices differing only in an invoice number are different invoices."""
    assert content_hash(document(invoice_number="A-1")) != content_hash(
        document(invoice_number="A-2")
    )


def test_hash_distinguishes_numbers_that_differ_beyond_28_digits() -> None:
    first = Decimal("1.00000000000000000000000000000001")
    second = Decimal("1.00000000000000000000000000000002")
    assert content_hash({"x": first}) != content_hash({"x": second})


def test_hash_distinguishes_a_number_from_its_string() -> None:
    assert content_hash({"x": 1}) != content_hash({"x": "1"})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), Decimal("-Infinity")])
def test_hash_refuses_non_finite_numbers(bad: object) -> None:
    with pytest.raises(PipelineDomainError) as caught:
        content_hash({"a": [bad]})
    assert (caught.value.error_code, caught.value.field) == (ErrorCode.INVALID_NUMBER, "a[0]")


def test_hash_refuses_nesting_beyond_the_limit() -> None:
    deep: object = 1
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(PipelineDomainError) as caught:
        content_hash(deep)
    assert caught.value.error_code is ErrorCode.DOCUMENT_TOO_DEEP


def test_hash_refuses_values_json_cannot_carry() -> None:
    with pytest.raises(PipelineDomainError) as caught:
        content_hash({"a": {1, 2}})
    assert caught.value.error_code is ErrorCode.INVALID_DOCUMENT


def test_the_canonical_form_of_a_document_is_the_one_stored_hashes_were_computed_over() -> None:
    """Stored invoices are deduplicated by this hash: the canonical text of a document
    must not change from one version to the next (spelling of numbers, escapes, order)."""
    doc = {
        "b": [
            1,
            2.5,
            Decimal("4.20E+3"),
            -0.0,
            0,
            10**30,
            Decimal("-1.000"),
            None,
            True,
            False,
            'ş\u00e7"\\\n',
            {"z": [], "a": {}},
        ],
        "a": "x",
        "ü": 1e-7,
        "c": [[[]]],
    }
    assert canonical_json(doc) == (
        '{"a":"x","b":[1,2.5,4.2E+3,0,0,1E+30,-1,null,true,false,'
        '"\\u015f\\u00e7\\"\\\\\\n",{"a":{},"z":[]}],"c":[[[]]],"\\u00fc":1E-7}'
    )
    assert content_hash(doc) == (
        "sha256:2d8c9d116ad427e994d16f4795f22f19bcade0c81e42c2f8b3db123f8d06b760"
    )
