"""Kafka security as production uses it: SASL_SSL, SCRAM-SHA-512 and a private CA, for real.

The fraud example publishes its decisions through the built-in ``kafka_publish`` stage with
exactly these settings, fed from Secrets. A unit test can only check that the KAFKA_* variables
become librdkafka property names; whether those names and values get a record through a real
broker's TLS and SCRAM, and what a wrong password or CA looks like to the stage, only a real
broker can say. These tests start one with a SASL_SSL listener (certificates made for the run)
and drive the stage against it, both in-process and as the compiled container command.
"""

from __future__ import annotations

import datetime
import importlib
import ipaddress
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from compiled import templates, whole_on_the_workflow_plane
from components import component_missing, in_ci

try:
    from confluent_kafka import Consumer, Message, TopicPartition
    from cryptography import x509
except ImportError as exc:  # a collection error would take every other test down with it
    if in_ci():
        raise
    pytest.skip(f"a test dependency is not installed: {exc}", allow_module_level=True)

from rtflow.generators.compiler import compile_pipelines
from rtflow.loader import load_pipelines
from rtflow.stages import contract
from rtflow.stages.builtin.kafka_publish import Refused, kafka_publish
from rtflow.testing.kafka_broker import KafkaBroker, KafkaUnavailable
from rtflow.testing.kafka_security import BrokerSecurity, Scram, tls_material

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# The module, not the stage function of the same name that rtflow.stages.builtin re-exports.
publish_module = importlib.import_module("rtflow.stages.builtin.kafka_publish")

# The user the fraud example's kafka-credentials Secret would hold.
USER = Scram("fraud-detection", secrets.token_hex(16))
# A refusal must be reported in about the time of one connection attempt (~0.3 s here, the
# broker delays failed logins by 100 ms). Well under the stage's timeout, so a pass cannot be
# the timeout path.
PROMPT = 10.0


def start_broker(security: BrokerSecurity) -> KafkaBroker:
    broker = KafkaBroker(security=security)
    try:
        broker.start()
    except KafkaUnavailable as exc:
        broker.close()
        component_missing(str(exc))
    except BaseException:
        broker.close()
        raise
    return broker


@pytest.fixture(scope="module")
def security() -> BrokerSecurity:
    return BrokerSecurity.generate(USER)


@pytest.fixture(scope="module")
def secure_broker(security: BrokerSecurity) -> Iterator[KafkaBroker]:
    """One broker with PLAINTEXT (set-up) and SASL_SSL (under test) listeners, for the module."""
    broker = start_broker(security)
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def stage(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The publish stage as a fresh process has it: no cached producer, no KAFKA_* set.

    Its producers are cached per broker list with the settings of their first use, so without
    this a test would reuse the previous test's credentials. Producers made here are purged
    afterwards, so one with bad credentials does not keep reconnecting for the session.
    """
    producers: dict[str, Any] = {}
    monkeypatch.setattr(publish_module, "_producers", producers)
    monkeypatch.setattr(publish_module, "_refusals", {})
    names = [*publish_module.SECURITY_ENV, *publish_module.SECURITY_PATH_ENV]
    for name in [*names, *publish_module.SECURITY_FILE_ENV, "KAFKA_BROKERS"]:
        monkeypatch.delenv(name, raising=False)
    yield
    for producer in producers.values():
        producer.purge(in_queue=True, in_flight=False)
        producer.flush(1)


def new_topic(broker: KafkaBroker, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    broker.create_topics(name)  # over PLAINTEXT: set-up, not what is tested
    return name


def read_one(bootstrap: str, config: Mapping[str, str], tp: TopicPartition) -> Message:
    """The record at ``tp`` (topic, partition, offset), read with ``config``'s security."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            **config,
        }
    )
    try:
        consumer.assign([tp])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            return msg
        raise AssertionError(f"nothing read from {tp} within 20 s")
    finally:
        consumer.close()


def run_container_command(
    template: dict[str, Any],
    inputs: Mapping[str, str],
    secret_values: Mapping[tuple[str, str], str],
    env_values: Mapping[str, str],
    outputs: Path,
) -> subprocess.CompletedProcess[str]:
    """Run a compiled template's container as Argo and the kubelet would set it up.

    Argo substitutes ``{{inputs.parameters.x}}``; the kubelet sets each env entry from its
    value or its secretKeyRef, and writes each projected Secret volume's files (values from
    ``secret_values``, keyed by Secret name and key). The volume is written to a folder of
    the test's instead of its mount path, and the runtime told where (its SECRETS_DIR).
    ``env_values`` stands in for values that only make sense in the cluster (the brokers).
    """
    container = template["container"]
    mounted: dict[str, str] = {}  # mount path -> the folder standing in for it
    for volume in template.get("volumes") or []:
        folder = outputs.with_name(f"{outputs.name}-{volume['name']}")
        for source in volume["projected"]["sources"]:
            for item in source["secret"]["items"]:
                path = folder / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(secret_values[(source["secret"]["name"], item["key"])])
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        mounted[mount["mountPath"]] = str(folder)
    argv = []
    for arg in [*container["command"], *container["args"]]:
        for name, value in inputs.items():
            arg = arg.replace(f"{{{{inputs.parameters.{name}}}}}", value)
        argv.append(arg.replace(contract.OUTPUTS_DIR, str(outputs)))
    argv = [sys.executable if a == "python" else a for a in argv]
    if contract.SECRETS_DIR in mounted and argv[1:3] == ["-m", "rtflow.stages"]:
        patch = (
            "import sys; from rtflow.stages import contract; "
            f"contract.SECRETS_DIR = {mounted[contract.SECRETS_DIR]!r}; "
            "from rtflow.stages.__main__ import main; sys.exit(main(sys.argv[1:]))"
        )
        argv = [argv[0], "-c", patch, *argv[3:]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    for entry in container["env"]:
        if "valueFrom" in entry:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secret_values[(ref["name"], ref["key"])]
        else:
            value = env_values.get(entry["name"], entry["value"])
            for path, folder in mounted.items():
                value = value.replace(f"{path}/", f"{folder}/")
            env[entry["name"]] = value
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def publish_decision() -> dict[str, Any]:
    """The fraud example's compiled publish template: its env is what production sets."""
    _, pipelines = load_pipelines(str(ROOT / "examples" / "fraud_detection.py"))
    (fraud,) = [p for p in pipelines if p.name == "fraud-detection"]
    # Without stream=, the publish stage is a workflow-plane template (with it, the stream
    # workers run it: tests/integration/test_stream_deployment.py covers their SASL_SSL).
    bundle = compile_pipelines([whole_on_the_workflow_plane(fraud)])
    (template,) = [m.body for m in bundle.manifests if m.kind == "WorkflowTemplate"]
    return templates(template)["publish-decision"]


def fraud_secrets(security: BrokerSecurity, password: str) -> dict[tuple[str, str], str]:
    """The example's kafka-credentials and kafka-ca Secrets, as this broker needs them."""
    return {
        ("kafka-credentials", "username"): USER.user,
        ("kafka-credentials", "password"): password,
        ("kafka-ca", "ca.crt"): security.tls.ca_pem,
    }


# -- the certificates and users themselves --------------------------------------------------


def test_tls_material_is_a_ca_and_a_server_certificate_it_signed() -> None:
    tls = tls_material(["127.0.0.1", "kafka-0.kafka.svc"], days=3)
    ca = x509.load_pem_x509_certificate(tls.ca_pem.encode())
    server = x509.load_pem_x509_certificate(tls.server_cert_pem.encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    server.verify_directly_issued_by(ca)  # raises if the CA did not sign it
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["kafka-0.kafka.svc"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    lifetime = server.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=2) < lifetime <= datetime.timedelta(days=3)
    # The only key form Kafka's PEM key store reads without a password.
    assert tls.server_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert tls.server_chain_pem.count("BEGIN CERTIFICATE") == 2
    assert "server_key_pem" not in repr(tls)


def test_scram_refuses_what_the_format_tool_would_misread() -> None:
    expected = f"SCRAM-SHA-512=[name={USER.user},password={USER.password}]"
    assert USER.storage_argument() == expected
    assert USER.password not in repr(USER)
    for user, password in [("a,b", "pw"), ("ok", "p=w"), ("ok", "p]w"), ("ok", ""), ("o k", "pw")]:
        with pytest.raises(ValueError, match="SCRAM"):
            Scram(user, password)


# -- the happy path, exactly as the fraud example runs it -------------------------------------


def test_the_fraud_examples_publish_stage_delivers_over_sasl_ssl(
    secure_broker: KafkaBroker,
    security: BrokerSecurity,
    publish_decision: dict[str, Any],
    tmp_path: Path,
) -> None:
    env = {e["name"] for e in publish_decision["container"]["env"]}
    # All five come from the template: the credentials as files (<NAME>_FILE, read into <NAME>
    # by the stage runtime), the rest as values.
    assert all(n in env or f"{n}_FILE" in env for n in publish_module.SECURITY_ENV), env
    assert not any("valueFrom" in e for e in publish_decision["container"]["env"])
    topic = new_topic(secure_broker, "decisions")
    payload = {"transaction_id": "tx-0042", "decision": "block", "risk": 0.97}
    parent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    result = run_container_command(
        publish_decision,
        {
            "topic": topic,
            "payload": json.dumps(payload),
            "key_field": "transaction_id",
            "brokers": "",  # as in the example: from KAFKA_BROKERS
            "traceparent": parent,
            "timeout_seconds": "30",
        },
        fraud_secrets(security, USER.password),
        {"KAFKA_BROKERS": secure_broker.secure_bootstrap_servers},
        tmp_path,
    )
    assert result.returncode == contract.EXIT_OK, result.stderr
    out = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert out["traceparent"].split("-")[1] == parent.split("-")[1]  # the same trace

    # Read back over SASL_SSL with the same settings: the record, byte for byte.
    msg = read_one(
        secure_broker.secure_bootstrap_servers,
        security.client_config(),
        TopicPartition(topic, int(out["partition"]), int(out["offset"])),
    )
    assert msg.key() == b"tx-0042"
    assert msg.value() == b'{"decision":"block","risk":0.97,"transaction_id":"tx-0042"}'
    assert dict(msg.headers() or [])["traceparent"] == out["traceparent"].encode()


# -- refusals: named, and prompt -------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password"),
    [(USER.user, "not-the-password"), ("nobody", USER.password)],
    ids=["wrong-password", "unknown-user"],
)
def test_bad_credentials_fail_promptly_naming_authentication(
    secure_broker: KafkaBroker,
    security: BrokerSecurity,
    stage: None,
    monkeypatch: pytest.MonkeyPatch,
    username: str,
    password: str,
) -> None:
    topic = new_topic(secure_broker, "refused")
    env = {
        **security.client_env(),
        "KAFKA_SASL_USERNAME": username,
        "KAFKA_SASL_PASSWORD": password,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for attempt in ("first event", "next event, same producer"):
        started = time.monotonic()
        with pytest.raises(Refused) as info:
            kafka_publish(
                topic=topic,
                payload={"id": "x"},
                brokers=secure_broker.secure_bootstrap_servers,
                timeout_seconds=60,
            )
        took = time.monotonic() - started
        assert took < PROMPT, f"{attempt}: refused after {took:.1f} s, not promptly"
        message = str(info.value)
        assert "SASL authentication error" in message, message
        assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in message, message
        assert "KAFKA_SASL_PASSWORD" in message  # where to look


def test_a_refused_stage_process_exits_retryably_and_at_once(
    secure_broker: KafkaBroker,
    security: BrokerSecurity,
    publish_decision: dict[str, Any],
    tmp_path: Path,
) -> None:
    """The container, not just the function: exit code 1 (Argo retries: a fixed Secret reaches
    the next pod), the reason in the log line, and no exit-time flush waiting on a message
    that cannot be delivered."""
    topic = new_topic(secure_broker, "refused-pod")
    started = time.monotonic()
    result = run_container_command(
        publish_decision,
        {
            "topic": topic,
            "payload": '{"transaction_id": "tx-1"}',
            "key_field": "transaction_id",
            "brokers": "",
            "traceparent": "",
            "timeout_seconds": "60",
        },
        fraud_secrets(security, "a-stale-password"),
        {"KAFKA_BROKERS": secure_broker.secure_bootstrap_servers},
        tmp_path,
    )
    took = time.monotonic() - started
    assert result.returncode == contract.EXIT_FAILED, result.stderr
    log = json.loads(result.stderr.strip().splitlines()[-1])
    assert log["event"] == "failed"
    assert log["error"].startswith("Refused: ")
    assert "Authentication failed" in log["error"]
    assert took < PROMPT + 5, f"the process took {took:.1f} s to exit"
    assert not list(tmp_path.iterdir())  # no outputs for a failed publish


def test_a_ca_that_did_not_sign_the_broker_fails_the_handshake_promptly(
    secure_broker: KafkaBroker,
    security: BrokerSecurity,
    stage: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other_ca = tls_material(["127.0.0.1"]).ca_pem
    for name, value in {**security.client_env(), "KAFKA_SSL_CA_PEM": other_ca}.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    with pytest.raises(Refused) as info:
        kafka_publish(
            topic=new_topic(secure_broker, "untrusted"),
            payload={"id": "x"},
            brokers=secure_broker.secure_bootstrap_servers,
            timeout_seconds=60,
        )
    assert time.monotonic() - started < PROMPT
    message = str(info.value)
    assert "SSL handshake failed" in message, message
    assert "certificate verify failed" in message, message
    assert "KAFKA_SSL_CA_PEM" in message


def test_the_broker_name_is_verified_not_only_the_ca(
    stage: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """librdkafka checks the broker's address against the certificate (endpoint
    identification is on by default): a certificate from the right CA for other names is
    refused. So production certificates must name every advertised broker host."""
    elsewhere = BrokerSecurity.generate(USER, hosts=["kafka-0.kafka.svc"])
    broker = start_broker(elsewhere)
    try:
        broker.create_topics("t")
        for name, value in elsewhere.client_env().items():
            monkeypatch.setenv(name, value)
        with pytest.raises(Refused, match="certificate verify failed"):
            kafka_publish(
                topic="t",
                payload={"id": "x"},
                brokers=broker.secure_bootstrap_servers,
                timeout_seconds=60,
            )
    finally:
        broker.close()


# -- the two listeners side by side ----------------------------------------------------------


def test_plaintext_stays_for_set_up_and_the_secure_port_needs_security(
    secure_broker: KafkaBroker, security: BrokerSecurity, stage: None
) -> None:
    topic = new_topic(secure_broker, "both")
    # No KAFKA_* security: the PLAINTEXT listener takes it...
    sent = kafka_publish(topic=topic, payload={"id": "p"}, brokers=secure_broker.bootstrap_servers)
    # ...and what went in over PLAINTEXT comes out over SASL_SSL: one broker, one log.
    msg = read_one(
        secure_broker.secure_bootstrap_servers,
        security.client_config(),
        TopicPartition(topic, sent.partition, sent.offset),
    )
    assert msg.value() == b'{"id":"p"}'
    # The secure port does not serve a client that speaks PLAINTEXT. librdkafka sees only a
    # closed connection there, the same as a broker that is down, so this one is a timeout
    # rather than a Refused: keep it short.
    with pytest.raises(TimeoutError, match="no acknowledgement"):
        kafka_publish(
            topic=topic,
            payload={"id": "q"},
            brokers=secure_broker.secure_bootstrap_servers,
            timeout_seconds=2,
        )
