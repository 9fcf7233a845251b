"""Live channel names and who may subscribe to them (docs/SPEC.md §8).

`jobs.<tenant>` and `incidents.<tenant>` belong to a tenant; `gate.decisions`
and `health` are operators' channels. A tenant key subscribes only to its own
tenants' channels, an admin to every channel, and anything else is refused
before a stream opens.
"""

from __future__ import annotations

from services.runtime.keys.principal import TENANT_ID_PATTERN, Principal, Role

GATE_DECISIONS = "gate.decisions"
HEALTH = "health"
JOBS_FAMILY = "jobs"
TENANT_FAMILIES = (JOBS_FAMILY, "incidents")
FIXED_CHANNELS = (GATE_DECISIONS, HEALTH)
MAX_CHANNEL_LENGTH = 80


class ChannelError(ValueError):
    """A channel name that is malformed or names no live channel."""


def validate_channel(name: object) -> str:
    """`name` if it is a known channel; `ChannelError` saying why otherwise."""
    if not isinstance(name, str) or not name:
        raise ChannelError("channel must be a non-empty string")
    if len(name) > MAX_CHANNEL_LENGTH:
        raise ChannelError(f"channel must be at most {MAX_CHANNEL_LENGTH} characters")
    if name in FIXED_CHANNELS:
        return name
    family, _, tenant = name.partition(".")
    if family in TENANT_FAMILIES and TENANT_ID_PATTERN.fullmatch(tenant):
        return name
    raise ChannelError(
        "unknown channel: expected jobs.<tenant>, incidents.<tenant>, gate.decisions or health"
    )


def channel_family(name: str) -> str:
    """The metric label of a channel: `jobs`, `incidents`, `gate.decisions` or `health`."""
    return name if name in FIXED_CHANNELS else name.partition(".")[0]


def channel_tenant(name: str) -> str | None:
    """The tenant a tenant channel belongs to; None for operators' channels."""
    return None if name in FIXED_CHANNELS else name.partition(".")[2]


def jobs_channel(tenant_id: str) -> str:
    return validate_channel(f"{JOBS_FAMILY}.{tenant_id}")


def incidents_channel(tenant_id: str) -> str:
    return validate_channel(f"incidents.{tenant_id}")


def may_subscribe(principal: Principal, channel: str) -> bool:
    """Whether `principal` may open a stream on the (already validated) `channel`."""
    if principal.role is Role.ADMIN:
        return True
    if principal.role is not Role.TENANT:
        return False
    tenant = channel_tenant(channel)
    return tenant is not None and tenant in principal.tenants
