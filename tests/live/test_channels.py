"""Live channel names and the per-role allowlist (docs/SPEC.md §8)."""

from __future__ import annotations

import pytest

from services.runtime.keys.principal import Principal, Role
from services.runtime.live.channels import (
    ChannelError,
    channel_family,
    may_subscribe,
    validate_channel,
)

TENANT = Principal(role=Role.TENANT, tenants=frozenset({"acme"}), operator="t", key_id="k1")
ADMIN = Principal(role=Role.ADMIN, tenants=frozenset(), operator="a", key_id="k2")
SERVICE = Principal(role=Role.SERVICE, tenants=frozenset(), operator="s", key_id="k3")


@pytest.mark.parametrize("name", ["jobs.acme", "incidents.acme", "gate.decisions", "health"])
def test_known_channels_are_valid(name: str) -> None:
    assert validate_channel(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "jobs", "jobs.", "jobs.ACME", "jobs.a.b", "gate", "other.acme", "jobs." + "a" * 90, 5],
)
def test_unknown_or_malformed_channels_are_refused(name: object) -> None:
    with pytest.raises(ChannelError):
        validate_channel(name)


def test_metric_family_drops_the_tenant() -> None:
    assert channel_family("jobs.acme") == "jobs"
    assert channel_family("gate.decisions") == "gate.decisions"


def test_a_tenant_key_subscribes_only_to_its_tenants_channels() -> None:
    assert may_subscribe(TENANT, "jobs.acme")
    assert may_subscribe(TENANT, "incidents.acme")
    assert not may_subscribe(TENANT, "jobs.other")
    assert not may_subscribe(TENANT, "gate.decisions")
    assert not may_subscribe(TENANT, "health")


def test_an_admin_subscribes_to_every_channel() -> None:
    assert all(
        may_subscribe(ADMIN, c) for c in ("jobs.x", "incidents.y", "gate.decisions", "health")
    )


def test_a_service_key_subscribes_to_nothing() -> None:
    assert not may_subscribe(SERVICE, "jobs.acme")
    assert not may_subscribe(SERVICE, "health")
