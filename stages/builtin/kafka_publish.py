"""Publish a payload to a Kafka topic: idempotent producer, key from a payload field, W3C trace
context in the headers, delivery confirmed before the stage returns, flush at process exit.

One producer per process and broker list, created on first use: a long-lived worker (or a
stream-plane Deployment) keeps its connections across events.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import rtflow
from rtflow.stages.builtin import image
from rtflow.stages.runtime import BadInput

if TYPE_CHECKING:
    from confluent_kafka import Producer

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_producers: dict[str, Producer] = {}
_lock = threading.Lock()


class Published(NamedTuple):
    partition: int
    offset: int
    traceparent: str


def child_traceparent(parent: str) -> str:
    """A W3C traceparent for this hop: the caller's trace id (or a new one), a new span id."""
    match = _TRACEPARENT.match(parent.strip().lower()) if parent else None
    trace_id = match[1] if match and match[1] != "0" * 32 else secrets.token_hex(16)
    flags = match[3] if match else "01"
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


# Connection security from the environment, so credentials reach the stage only as Secret-backed
# env vars (rtflow.Secret) and never as stage inputs (which Argo shows in the UI).
SECURITY_ENV = {
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanisms",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_PEM": "ssl.ca.pem",
}


def security_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings for TLS and SASL, from the KAFKA_* variables that are set."""
    env = os.environ if environ is None else environ
    return {setting: env[name] for name, setting in SECURITY_ENV.items() if env.get(name)}


def _producer(brokers: str) -> Producer:
    with _lock:
        if brokers not in _producers:
            from rtflow.stages.kafka_io import producer

            _producers[brokers] = producer(brokers, **security_from_env())
        return _producers[brokers]


@atexit.register
def flush_all() -> None:
    """Deliver what is still queued before the process ends."""
    for p in list(_producers.values()):
        p.flush(30)


@rtflow.stage(
    name="kafka-publish",
    image=image("kafka-publish"),
    retry=rtflow.Retry(limit=5, policy="Always", backoff=rtflow.Backoff("1s", 2, "2m")),
    timeout="3m",
)
def kafka_publish(
    topic: str,
    payload: dict[str, Any],
    key_field: str = "",
    brokers: str = "",
    traceparent: str = "",
    timeout_seconds: float = 120.0,
) -> Published:
    """Send ``payload`` as JSON to ``topic`` and wait for the broker's acknowledgement.

    ``key_field`` names the payload field used as message key (order per key); ``brokers``
    defaults to ``$KAFKA_BROKERS``; TLS and SASL come from ``KAFKA_SECURITY_PROTOCOL``,
    ``KAFKA_SASL_MECHANISM``, ``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD`` and
    ``KAFKA_SSL_CA_PEM`` (see :func:`rtflow.configure` to set them from Secrets). A broker that
    is down is waited for (the idempotent producer retries without duplicating) up to
    ``timeout_seconds``, then the stage fails (retryable).
    """
    servers = brokers or os.environ.get("KAFKA_BROKERS", "")
    if not servers:
        raise BadInput("no brokers: pass brokers= or set KAFKA_BROKERS")
    key: bytes | None = None
    if key_field:
        if key_field not in payload:
            raise BadInput(f"the payload has no key field {key_field!r}")
        key = str(payload[key_field]).encode()
    trace = child_traceparent(traceparent)
    headers: list[tuple[str, str | bytes | None]] = [("traceparent", trace.encode())]
    workflow = os.environ.get("ARGO_WORKFLOW_NAME")
    if workflow:
        headers.append(("rtflow-workflow", workflow.encode()))
    result: dict[str, Any] = {}
    delivered = threading.Event()

    def on_delivery(err: Any, msg: Any) -> None:
        result["error"], result["msg"] = err, msg
        delivered.set()

    producer = _producer(servers)
    value = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(0.1)
    remaining = timeout_seconds
    while not delivered.is_set() and remaining > 0:
        producer.poll(min(remaining, 0.5))
        remaining -= 0.5
    if not delivered.is_set():
        raise TimeoutError(f"no acknowledgement from {servers} within {timeout_seconds:g} s")
    if result["error"] is not None:
        raise ConnectionError(f"delivery to {topic} failed: {result['error']}")
    msg = result["msg"]
    return Published(int(msg.partition()), int(msg.offset()), trace)
