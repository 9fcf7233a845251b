"""The connections a set of NetworkPolicies allows, computed the way Kubernetes does.

A pod selected by no policy of a direction is open in that direction; once one
selects it, a connection needs a rule that allows it. A connection between two
pods of the namespace needs the source's egress and the destination's ingress;
a connection with an endpoint outside the namespace is judged on our side only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from tests.deploy.manifests import Manifest, labels_match


@dataclass(frozen=True)
class Endpoint:
    """A pod (or an address outside the cluster) that may open or accept connections."""

    name: str
    namespace_labels: dict[str, str] = field(default_factory=dict, hash=False)
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ports: tuple[tuple[int, str], ...] = ()
    ip: str | None = None  # outside the cluster: matched by ipBlock only
    ours: bool = False  # in the policies' namespace (policies apply to it)


Edge = tuple[str, str, int, str]


def _peer_matches(peer: Manifest, endpoint: Endpoint, own_namespace: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        if endpoint.ip is None:
            return False
        address = ipaddress.ip_address(endpoint.ip)
        excepted = any(address in ipaddress.ip_network(c) for c in block.get("except", []))
        return address in ipaddress.ip_network(block["cidr"]) and not excepted
    if endpoint.ip is not None:
        return False
    if "namespaceSelector" in peer:
        if not labels_match(peer["namespaceSelector"], endpoint.namespace_labels):
            return False
    elif endpoint.namespace_labels != own_namespace:
        return False
    return labels_match(peer.get("podSelector", {}), endpoint.labels)


def _port_matches(rule: Manifest, port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    return any(
        p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports
    )


def _allows(
    policies: list[Manifest],
    direction: str,
    subject: Endpoint,
    peer: Endpoint,
    port: int,
    protocol: str,
    own_namespace: dict[str, str],
) -> bool:
    kind = "Ingress" if direction == "ingress" else "Egress"
    peers_key = "from" if direction == "ingress" else "to"
    selecting = [
        p
        for p in policies
        if kind in p["spec"].get("policyTypes", ["Ingress"])
        and labels_match(p["spec"]["podSelector"], subject.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(direction) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(_peer_matches(x, peer, own_namespace) for x in peers)
            if peer_ok and _port_matches(rule, port, protocol):
                return True
    return False


def allowed_edges(
    policies: list[Manifest], endpoints: list[Endpoint], own_namespace: dict[str, str]
) -> set[Edge]:
    """Every (source, destination, port, protocol) the policies let through."""
    edges: set[Edge] = set()
    for source in endpoints:
        for destination in endpoints:
            if source is destination or not (source.ours or destination.ours):
                continue
            for port, protocol in destination.ports:
                egress = not source.ours or _allows(
                    policies, "egress", source, destination, port, protocol, own_namespace
                )
                ingress = not destination.ours or _allows(
                    policies, "ingress", destination, source, port, protocol, own_namespace
                )
                if egress and ingress:
                    edges.add((source.name, destination.name, port, protocol))
    return edges
