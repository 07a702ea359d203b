"""What a pipeline's own stages may reach beyond what rtflow derives.

Its pods start from default-deny (:mod:`rtflow.generators.network`): the flows rtflow can see
in its objects (Triton, Kafka, the EventBus, the API server, DNS) are allowed; a stage that
calls a database, a payment API or a model vendor must say so, by address block and port::

    @rtflow.pipeline(..., egress=[rtflow.Egress("10.20.0.0/16", ports=[5432]),
                                  rtflow.Egress("0.0.0.0/0", ports=[443])])
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from rtflow.errors import DefinitionError

PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class Egress:
    """Addresses in ``cidr`` on ``ports`` (one NetworkPolicy egress rule for the stages)."""

    cidr: str
    ports: Sequence[int] = (443,)
    protocol: str = "TCP"


def check_egress(items: object) -> tuple[Egress, ...]:
    if not isinstance(items, (list, tuple)):
        raise DefinitionError(
            f"egress must be a list of rtflow.Egress, got {type(items).__name__}",
            fix="write egress=[rtflow.Egress('10.0.0.0/8', ports=[5432])]",
            field="egress",
        )
    found = []
    for index, item in enumerate(items):
        where = f"egress[{index}]"
        if not isinstance(item, Egress):
            raise DefinitionError(
                f"{where} is a {type(item).__name__}, not rtflow.Egress",
                fix="write rtflow.Egress('<cidr>', ports=[...])",
                field=where,
            )
        try:
            network = ipaddress.ip_network(item.cidr, strict=True)
        except (TypeError, ValueError):
            raise DefinitionError(
                f"{where}: {item.cidr!r} is not an address block",
                fix="give a CIDR such as '10.20.0.0/16' or '203.0.113.7/32'",
                field=f"{where}.cidr",
            ) from None
        ports = tuple(item.ports)
        if not ports or any(
            isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536 for p in ports
        ):
            raise DefinitionError(
                f"{where}: ports {list(ports)!r} are not ports",
                fix="give ports from 1 to 65535, e.g. ports=[443]",
                field=f"{where}.ports",
            )
        if item.protocol not in PROTOCOLS:
            raise DefinitionError(
                f"{where}: protocol {item.protocol!r} is not one of {', '.join(PROTOCOLS)}",
                fix="use protocol='TCP'",
                field=f"{where}.protocol",
            )
        found.append(Egress(str(network), tuple(sorted(set(ports))), item.protocol))
    return tuple(found)
