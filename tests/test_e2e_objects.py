"""The e2e cluster's own objects and image list, checked where no cluster runs.

The kind suite (``e2e/``) needs Docker and skips here; what it would apply besides the compiled
example (Kafka, Secrets, the model volume) and the images it builds are plain data, so a typo or
a forgotten image fails here, with kubernetes-validate (strict) and rtflow's own security lint,
instead of 10 minutes into a cluster start.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import strict_schema
from compiled import ROOT

from rtflow.generators.compiler import compile_pipelines
from rtflow.loader import load_pipelines
from rtflow.verify.lint import KUBERNETES_VERSION, Loaded, check_security

sys.path.insert(0, str(ROOT / "e2e"))
sys.path.insert(0, str(ROOT / "examples"))
import cluster as e2e

SECURITY = e2e.kafka_security("e2e-password")


def objects() -> list[dict[str, Any]]:
    return (
        e2e.kafka_objects(SECURITY, "cluster-id")
        + e2e.pipeline_secrets(SECURITY)
        + e2e.model_volume()
    )


@pytest.mark.parametrize(
    "document", objects(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}"
)
def test_every_object_is_valid_kubernetes(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    findings = list(check_security(Loaded(Path("e2e"), document)))
    assert findings == [], [f.message for f in findings]


def test_the_event_bus_passes_the_argo_events_schema_strictly() -> None:
    assert strict_schema.errors_any(e2e.event_bus()) == []


def test_the_broker_config_survives_the_properties_format() -> None:
    (config,) = [d for d in objects() if d["metadata"]["name"] == "kafka-config"]
    text = base64.b64decode(config["data"]["server.properties"]).decode()
    lines = text.splitlines()
    # One line per setting: the multi-line PEM is escaped, as java.util.Properties reads it.
    assert all("=" in line for line in lines)
    keys = dict(line.split("=", 1) for line in lines)
    key = SECURITY.tls.server_key_pem
    assert keys["listener.name.sasl_ssl.ssl.keystore.key"] == key.replace("\n", "\\n")
    assert keys["advertised.listeners"].endswith(f"SASL_SSL://{e2e.KAFKA_HOST}:9093")
    # The broker certificate names the host clients dial (librdkafka checks it).
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(SECURITY.tls.server_cert_pem.encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert e2e.KAFKA_HOST in names.get_values_for_type(x509.DNSName)


def test_the_kind_environment_points_at_the_e2e_kafka_and_volume() -> None:
    import fraud_detection

    assert [f"{e2e.KAFKA_HOST}:{e2e.KAFKA_SECURE_PORT}"] == fraud_detection.KIND_BROKERS
    repository = fraud_detection.FRAUD_SCORER.repository
    assert (repository.location, repository.path) == (e2e.MODEL_CLAIM, e2e.MODEL_PATH)


def test_e2e_builds_every_image_the_kind_overlay_runs(tmp_path: Path) -> None:
    wheel = tmp_path / "rtflow-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not a real wheel")
    built = {image.tag for image in e2e.images(wheel, tmp_path / "context")}
    pipelines = [d.build() for d in load_pipelines(str(ROOT / "examples/fraud_detection.py"))[1]]
    deployed = compile_pipelines(pipelines).deployed("fraud-detection", "kind")
    needed = e2e.referenced_images([m.body for m in deployed])
    assert needed, "the overlay runs images"
    assert needed <= built, f"not built by e2e: {sorted(needed - built)}"
    assert (tmp_path / "context/wheels" / wheel.name).exists()
