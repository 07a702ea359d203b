"""Does the bundle's set of NetworkPolicies allow every flow its objects need?

Kubernetes' rules, for the peers rtflow writes: a pod selected by no policy of a direction is
open in that direction; a pod selected by some is open only to what one of their rules lists
(rules add up across policies). A flow needs its source's egress and its destination's ingress.
Peers are matched by label subsets and namespace names, as the policies rtflow writes select
them; an ``ipBlock`` peer is taken to match an address outside the cluster only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rtflow.generators.network import NAMESPACE_LABEL, Flow, Peer, absolute, flows, relative

Document = dict[str, Any]


def _selects(policy: Document, pods: Peer, direction: str) -> bool:
    spec = policy["spec"]
    kinds = spec.get("policyTypes") or ["Ingress"]
    if direction not in kinds or pods.labels is None:
        return False
    wanted = (spec.get("podSelector") or {}).get("matchLabels") or {}
    return set(wanted.items()) <= set(pods.labels)


def _peer_matches(entry: Document, peer: Peer, here: str | None) -> bool:
    """Whether a policy's peer entry covers ``peer``, for a policy in namespace ``here`` (a
    peer without a namespace is in ``here``: a namespaceSelector naming ``here`` covers it)."""
    if "ipBlock" in entry:
        return peer.anywhere
    namespaces = entry.get("namespaceSelector")
    pods = entry.get("podSelector")
    if namespaces is not None:
        name = (namespaces.get("matchLabels") or {}).get(NAMESPACE_LABEL)
        if peer.labels is None and peer.namespace is None:
            return False  # an address outside the cluster
        if name is not None and name != (peer.namespace or here):
            return False
        if name is None and namespaces.get("matchLabels"):
            return False  # selects namespaces by labels rtflow cannot see
    elif peer.namespace not in (None, here) or peer.labels is None:
        return False  # a podSelector alone means this namespace's pods
    if pods is not None:
        wanted = pods.get("matchLabels") or {}
        return peer.labels is not None and set(wanted.items()) <= set(peer.labels)
    return True


def _rule_allows(rule: Document, side: str, peer: Peer, flow: Flow, here: str | None) -> bool:
    peers = rule.get(side)
    if peers and not any(_peer_matches(entry, peer, here) for entry in peers):
        return False
    ports = rule.get("ports")
    if not ports:
        return True
    return any(
        (p.get("port") is None or p["port"] == flow.port or isinstance(p["port"], str))
        and p.get("protocol", "TCP") == flow.protocol
        for p in ports
    )


class _Policies:
    """The bundle's policies by namespace, and which select given pods (memoised: a folder of
    thousands of objects has thousands of flows over the same few pod selectors)."""

    def __init__(self, policies: Sequence[Document]) -> None:
        self.by_namespace: dict[str | None, list[Document]] = {}
        for policy in policies:
            self.by_namespace.setdefault(policy["metadata"].get("namespace"), []).append(policy)
        self._chosen: dict[tuple[str | None, Peer, str], list[Document]] = {}

    def selecting(self, namespace: str | None, pods: Peer, direction: str) -> list[Document]:
        key = (namespace, pods, direction)
        if key not in self._chosen:
            candidates = self.by_namespace.get(namespace, [])
            self._chosen[key] = [p for p in candidates if _selects(p, pods, direction)]
        return self._chosen[key]


def _open(chosen: Sequence[Document], direction: str, peer: Peer, flow: Flow) -> bool:
    if not chosen:
        return True
    key, side = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    return any(
        _rule_allows(rule, side, peer, flow, p["metadata"].get("namespace"))
        for p in chosen
        for rule in p["spec"].get(key) or []
    )


def blocked(documents: Sequence[Document], prometheus_namespace: str = "monitoring") -> list[str]:
    """The flows the objects need that the policies among them do not allow, one line each."""
    found = [d for d in documents if d["kind"] == "NetworkPolicy"]
    if not found:
        return []
    policies = _Policies(found)
    problems = []
    for flow in flows(documents, prometheus_namespace):
        source = policies.selecting(flow.namespace, flow.source, "Egress")
        there = flow.destination.namespace or flow.namespace
        destination = policies.selecting(there, flow.destination, "Ingress")
        # The source as a policy in the destination's namespace names it (by its namespace
        # when that is another: a Triton server of its own namespace).
        origin = relative(absolute(flow.source, flow.namespace), there)
        if not _open(source, "Egress", flow.destination, flow):
            problems.append(f"{flow.why}: egress to {_show(flow.destination)}:{flow.port}")
        elif not _open(destination, "Ingress", origin, flow):
            problems.append(
                f"{flow.why}: ingress from {_show(flow.source)} to {_show(flow.destination)}"
                f":{flow.port}"
            )
    return sorted(set(problems))


def _show(peer: Peer) -> str:
    if peer.anywhere:
        return "any address"
    parts = []
    if peer.labels is not None:
        parts.append(",".join(f"{k}={v}" for k, v in peer.labels))
    if peer.namespace is not None:
        parts.append(f"namespace {peer.namespace}")
    return " in ".join(parts) if parts else "?"
