"""What starts a pipeline: Kafka topics, webhooks, schedules; filters and delivery on the way.

A trigger names its event source, maps payload fields to the pipeline's inputs, filters which
events start a run, and says how delivery behaves when starting a run fails. Like stage options,
nothing is checked here: the IR builder checks every trigger against the pipeline it starts.

Payload paths are gjson paths into the event as Argo Events delivers it: ``body.amount`` for a
JSON Kafka message or webhook body, ``header.X-Request-Id`` for a webhook header, ``eventTime``
for a schedule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rtflow.options import NO_DEFAULT


@dataclass(frozen=True)
class SecretKey:
    """A key of a Kubernetes Secret: the only way a credential reaches a trigger."""

    secret: str
    key: str


@dataclass(frozen=True)
class Tls:
    ca_cert: SecretKey | None = None
    client_cert: SecretKey | None = None
    client_key: SecretKey | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class Sasl:
    """SASL for Kafka. ``mechanism``: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."""

    user: SecretKey | str
    password: SecretKey | str
    mechanism: str = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Field:
    """A payload field mapped to a pipeline input, with the value to use when it is absent."""

    path: str | None
    default: Any = NO_DEFAULT


def constant(value: Any) -> Field:
    """Pass the same value for an input on every event this trigger starts a run for."""
    return Field(None, value)


def field(path: str, default: Any = NO_DEFAULT) -> Field:
    """Map a payload path to an input; ``default`` is used when the event lacks the field."""
    return Field(path, default)


# Filters: ``rtflow.payload("body.action") == "purchase"``


class FilterExpr:
    def __and__(self, other: FilterExpr) -> FilterExpr:
        return FilterAll((self, other))

    def __or__(self, other: FilterExpr) -> FilterExpr:
        return FilterAny((self, other))

    def __invert__(self) -> FilterExpr:
        return FilterNot(self)

    def __bool__(self) -> bool:
        raise TypeError("combine payload filters with &, | and ~, not and/or/not")


@dataclass(frozen=True, eq=False)
class PayloadField:
    """A payload path to compare in a filter."""

    path: str

    def _cmp(self, op: str, value: object) -> FilterExpr:
        return FilterCompare(self.path, op, value)

    def __eq__(self, value: object) -> FilterExpr:  # type: ignore[override]
        return self._cmp("==", value)

    def __ne__(self, value: object) -> FilterExpr:  # type: ignore[override]
        return self._cmp("!=", value)

    def __gt__(self, value: object) -> FilterExpr:
        return self._cmp(">", value)

    def __ge__(self, value: object) -> FilterExpr:
        return self._cmp(">=", value)

    def __lt__(self, value: object) -> FilterExpr:
        return self._cmp("<", value)

    def __le__(self, value: object) -> FilterExpr:
        return self._cmp("<=", value)

    __hash__ = object.__hash__

    def isin(self, values: Sequence[object]) -> FilterExpr:
        return FilterCompare(self.path, "in", tuple(values))


def payload(path: str) -> PayloadField:
    return PayloadField(path)


@dataclass(frozen=True, eq=False)
class FilterCompare(FilterExpr):
    path: str
    op: str
    value: object


@dataclass(frozen=True, eq=False)
class FilterAll(FilterExpr):
    parts: tuple[FilterExpr, ...]


@dataclass(frozen=True, eq=False)
class FilterAny(FilterExpr):
    parts: tuple[FilterExpr, ...]


@dataclass(frozen=True, eq=False)
class FilterNot(FilterExpr):
    part: FilterExpr


# Delivery


@dataclass(frozen=True)
class DeadLetter:
    """Where an event goes when starting its run failed for good: a Kafka topic, payload and all."""

    topic: str
    brokers: Sequence[str] = ()
    tls: Tls | None = None
    sasl: Sasl | None = None


@dataclass(frozen=True)
class Delivery:
    """at_least_once: a failed trigger is retried, and the event is acknowledged only after."""

    at_least_once: bool = True
    retries: int = 3
    backoff: str = "1s"
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.1
    rate_limit: int | None = None
    rate_limit_unit: str = "Second"
    dead_letter: DeadLetter | None = None


@dataclass(frozen=True, eq=False)
class Trigger:
    """A declared trigger; build one with rtflow.kafka, rtflow.webhook or rtflow.calendar."""

    kind: str
    name: str | None
    source: Mapping[str, Any]
    inputs: Mapping[str, str | Field]
    filter: FilterExpr | None
    delivery: Delivery
    payload_schema: Mapping[str, Any] | None


def kafka(
    topic: str,
    *,
    brokers: Sequence[str] | str,
    consumer_group: str | None = None,
    start: str = "newest",
    json_body: bool = True,
    tls: Tls | None = None,
    sasl: Sasl | None = None,
    limit_events_per_second: int | None = None,
    version: str | None = None,
    read_committed: bool = False,
    inputs: Mapping[str, str | Field] | None = None,
    filter: FilterExpr | None = None,
    delivery: Delivery | None = None,
    payload_schema: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Trigger:
    """Start a run per message on ``topic``. ``start``: "newest" or "oldest" for a new group.
    ``read_committed``: skip records of aborted Kafka transactions (a topic a stream worker
    writes exactly-once, such as a drift topic): the EventSource's Sarama consumer gets
    ``isolationLevel: 1`` in its ``config``, the local run ``isolation.level=read_committed``."""
    return Trigger(
        kind="kafka",
        name=name,
        source={
            "topic": topic,
            "brokers": [brokers] if isinstance(brokers, str) else list(brokers),
            "consumer_group": consumer_group,
            "start": start,
            "json_body": json_body,
            "tls": tls,
            "sasl": sasl,
            "limit_events_per_second": limit_events_per_second,
            "version": version,
            "read_committed": read_committed,
        },
        inputs=dict(inputs or {}),
        filter=filter,
        delivery=delivery or Delivery(),
        payload_schema=payload_schema,
    )


@dataclass(frozen=True)
class WebhookTls:
    """The webhook's own certificate and key (Secrets), so it serves HTTPS."""

    cert: SecretKey
    key: SecretKey


def webhook(
    endpoint: str,
    *,
    port: int = 12000,
    method: str = "POST",
    auth_secret: SecretKey | None = NO_DEFAULT,
    tls: WebhookTls | None = None,
    max_payload_size: int | None = None,
    inputs: Mapping[str, str | Field] | None = None,
    filter: FilterExpr | None = None,
    delivery: Delivery | None = None,
    payload_schema: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Trigger:
    """Start a run per HTTP request to ``endpoint``.

    ``auth_secret`` is the Secret key holding the bearer token callers must send; it is
    required: an endpoint anyone in (or outside) the cluster may call is a choice to make in
    writing, with ``auth_secret=None``. ``tls`` serves HTTPS with a certificate from Secrets.
    """
    return Trigger(
        kind="webhook",
        name=name,
        source={
            "endpoint": endpoint,
            "port": port,
            "method": method,
            "auth_secret": auth_secret,
            "tls": tls,
            "max_payload_size": max_payload_size,
        },
        inputs=dict(inputs or {}),
        filter=filter,
        delivery=delivery or Delivery(),
        payload_schema=payload_schema,
    )


def calendar(
    schedule: str | None = None,
    *,
    interval: str | None = None,
    timezone: str = "UTC",
    inputs: Mapping[str, str | Field] | None = None,
    delivery: Delivery | None = None,
    name: str | None = None,
) -> Trigger:
    """Start a run on a cron ``schedule`` (5 fields or @hourly/@daily/...) or every ``interval``."""
    return Trigger(
        kind="calendar",
        name=name,
        source={"schedule": schedule, "interval": interval, "timezone": timezone},
        inputs=dict(inputs or {}),
        filter=None,
        delivery=delivery or Delivery(),
        payload_schema=None,
    )


@dataclass(frozen=True)
class EventBus:
    """The NATS JetStream EventBus rtflow emits when a pipeline asks for one."""

    name: str = "default"
    replicas: int = 3
    # A pinned JetStream release from Argo Events 1.9's controller config ("latest" would
    # change under a running bus when the controller is upgraded).
    version: str = "2.10.29"
    storage: str = "10Gi"
    storage_class: str | None = None
