"""Publish a payload to a Kafka topic: idempotent producer, key from a payload field, W3C trace
context in the headers, delivery confirmed before the stage returns, flush at process exit.

One producer per process and broker list, created on first use: a long-lived worker (or a
stream-plane Deployment) keeps its connections across events.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import rtflow
from rtflow.stages import portable_json
from rtflow.stages.builtin import image
from rtflow.stages.runtime import BadInput

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Producer

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_producers: dict[str, Producer] = {}
# Per broker list: when the broker last refused this client, whether it was the SASL login (else
# the TLS handshake), and librdkafka's words for it; cleared by a delivery. See ``Refused``.
_refusals: dict[str, tuple[float, bool, str]] = {}
_lock = threading.Lock()


class Refused(ConnectionError):
    """The broker refused this client: SASL authentication or the TLS handshake failed.

    librdkafka treats both as passing trouble and keeps reconnecting, so without this a wrong
    password or CA would look like a broker that is down: the stage would wait its whole
    ``timeout_seconds`` and fail with "no acknowledgement", naming neither. The stage fails as
    soon as the broker says no instead, with librdkafka's reason; it stays retryable, since a
    corrected Secret reaches a retried pod.
    """


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
# Files mounted from Secrets (the stream plane's workers): librdkafka reads these paths.
SECURITY_PATH_ENV = {
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
}
# Secrets mounted as files whose *content* is the setting (SASL credentials).
SECURITY_FILE_ENV = {
    "KAFKA_SASL_USERNAME_FILE": "sasl.username",
    "KAFKA_SASL_PASSWORD_FILE": "sasl.password",
}


def security_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings for TLS and SASL, from the KAFKA_* variables that are set."""
    env = os.environ if environ is None else environ
    settings = {**SECURITY_ENV, **SECURITY_PATH_ENV}
    found = {setting: env[name] for name, setting in settings.items() if env.get(name)}
    for name, setting in SECURITY_FILE_ENV.items():
        path = env.get(name)
        if path:
            # A Secret's file may end in a newline that is no part of the credential.
            found[setting] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    return found


def _producer(brokers: str) -> Producer:
    with _lock:
        if brokers not in _producers:
            from confluent_kafka import KafkaError, Producer

            from rtflow.stages.kafka_io import PRODUCER_DEFAULTS

            refusing = {KafkaError._AUTHENTICATION, KafkaError._SSL}

            def on_error(err: KafkaError) -> None:
                # Called from poll() with the client's connection-level errors; all but these
                # (a broker that is down or restarting) are waited through.
                if err.code() in refusing:
                    login = err.code() == KafkaError._AUTHENTICATION
                    _refusals[brokers] = (time.monotonic(), login, str(err.str()))

            _producers[brokers] = Producer(
                {
                    "bootstrap.servers": brokers,
                    **PRODUCER_DEFAULTS,
                    **security_from_env(),
                    "error_cb": on_error,
                }
            )
        return _producers[brokers]


def _refused(brokers: str, since: float) -> Refused | None:
    """A :class:`Refused` if the broker said no after ``since`` (not an old, healed refusal)."""
    refusal = _refusals.get(brokers)
    if refusal is None or refusal[0] < since:
        return None
    _, login, reason = refusal
    check = (
        "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
        if login
        else "KAFKA_SSL_CA_PEM and KAFKA_SECURITY_PROTOCOL"
    )
    return Refused(f"{brokers} refused this client ({reason}); check {check}")


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
    ``timeout_seconds``, then the stage fails (retryable). A broker that refuses the client
    (authentication or TLS verification failed) fails it at once with :class:`Refused`.
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

    started = time.monotonic()
    deadline = started + timeout_seconds
    try:
        # The stream plane's publish writes the same bytes (rtflow.stages.portable_json).
        value = portable_json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"the payload is not portable JSON: {exc}") from None
    producer = _producer(servers)
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(0.1)
    # A deadline, not a countdown of poll timeouts: poll returns early whenever it serves a
    # callback (every reconnect error, say), so counting 0.5 s per call would end it early.
    while not delivered.is_set() and (remaining := deadline - time.monotonic()) > 0:
        producer.poll(min(remaining, 0.5))
        if not delivered.is_set() and (refused := _refused(servers, started)) is not None:
            # Drop what cannot be sent, ours included: delivered after a fix of the broker's
            # users, it would duplicate the retry this failure leads to.
            producer.purge(in_queue=True, in_flight=False)
            raise refused
    if not delivered.is_set():
        raise TimeoutError(f"no acknowledgement from {servers} within {timeout_seconds:g} s")
    if result["error"] is not None:
        if (refused := _refused(servers, started)) is not None:
            raise refused  # purged by a concurrent call that saw the refusal first
        raise ConnectionError(f"delivery to {topic} failed: {result['error']}")
    _refusals.pop(servers, None)  # whatever was refused before is healed
    msg = result["msg"]
    return Published(int(msg.partition()), int(msg.offset()), trace)
