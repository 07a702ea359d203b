"""The compiled stream Deployment runs: its exact command, args and env, started as the kubelet
would start them, against the real broker over SASL_SSL and the real Triton.

Nothing of the container is re-typed here: the command line, the environment entries and the
Secret files come from the Deployment ``rtflow compile`` wrote. The kubelet's part is done by
hand: each projected Secret key becomes a file under the mount path (a scratch folder here),
``fieldRef: metadata.name`` becomes a pod name. Only what differs between a cluster and this
machine is replaced, each named below: the broker list (the overlay's job on a cluster),
Triton's and the metrics port's addresses. The worker then has to log in with the mounted
SCRAM credentials and trust the mounted CA to process a single event: there is no other way in.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from components import component_missing
from prometheus_client.parser import text_string_to_metric_families
from stream_harness import (
    FRAUD_STREAM,
    exactly_once,
    expected_decisions,
    fraud_events,
    produce,
)
from stream_harness import read_committed as read_decisions

from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.stream import common
from rtflow.generators.writers import render_stream
from rtflow.gpu.triton_server import TritonServer
from rtflow.stages.stream.launcher import free_port, load_stream_pipeline
from rtflow.stream_layout import stream_topics
from rtflow.testing.kafka_broker import KafkaBroker, KafkaUnavailable
from rtflow.testing.kafka_security import BrokerSecurity, Scram

pytestmark = pytest.mark.integration

USER = Scram("fraud-stream", secrets.token_hex(16))
EVENTS = 3_000
STREAM_PIPELINES = Path(FRAUD_STREAM).parent


@pytest.fixture(scope="module")
def security() -> BrokerSecurity:
    return BrokerSecurity.generate(USER)


@pytest.fixture(scope="module")
def secure_broker(security: BrokerSecurity) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(security=security)
    try:
        try:
            broker.start()
        except KafkaUnavailable as exc:
            component_missing(str(exc))
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The test pipeline with the example's Kafka security, compiled; its topics suffixed."""
    suffix = f"-{secrets.token_hex(4)}"
    saved = dict(os.environ)
    os.environ.update({"RTFLOW_TEST_TOPICS": suffix, "RTFLOW_TEST_SECURE": "1"})
    try:
        pipeline = load_stream_pipeline(FRAUD_STREAM)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    documents = list(yaml.safe_load_all(render_stream(compile_pipelines([pipeline]))))
    (deployment,) = [
        d for d in documents
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "fraud-stream-stream"
    ]  # fmt: skip
    yield {"pipeline": pipeline, "deployment": deployment, "suffix": suffix}


def kubelet(
    deployment: dict[str, Any],
    secret_values: dict[tuple[str, str], str],
    mounts: Path,
    cluster_values: dict[str, str],
) -> tuple[list[str], dict[str, str]]:
    """The container's argv and environment as the kubelet sets them up: projected Secret
    keys written as files under each volume's mount path (moved to ``mounts``),
    ``cluster_values`` replacing the env values and arguments that only make sense there."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    moved: dict[str, str] = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "projected" not in volume:
            continue
        target = mounts / mount["name"]
        target.mkdir(parents=True)
        for source in volume["projected"]["sources"]:
            for item in source["secret"]["items"]:
                path = target / item["path"]
                path.write_text(secret_values[(source["secret"]["name"], item["key"])])
                path.chmod(volume["projected"]["defaultMode"])
        moved[mount["mountPath"]] = str(target)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "RTFLOW_"))}
    for entry in container["env"]:
        if "valueFrom" in entry:
            assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            env[entry["name"]] = "fraud-stream-stream-7d9f8-x2x4q"
            continue
        value = cluster_values.get(entry["name"], entry["value"])
        for mount_path, folder in moved.items():
            value = value.replace(mount_path, folder)
        env[entry["name"]] = value
    argv = [cluster_values.get(a, a) for a in [*container["command"], *container["args"]]]
    argv = [sys.executable if a == "python" else a for a in argv]
    return argv, env


def test_the_compiled_deployment_processes_events_exactly_once_over_sasl_ssl(
    compiled: dict[str, Any],
    secure_broker: KafkaBroker,
    security: BrokerSecurity,
    stream_triton: TritonServer,
    tmp_path: Path,
) -> None:
    deployment = compiled["deployment"]
    pipeline = compiled["pipeline"]
    secure_broker.create_topics(*stream_topics(pipeline), partitions=4)
    metrics_port = free_port()
    argv, env = kubelet(
        deployment,
        {
            ("kafka-credentials", "username"): USER.user,
            ("kafka-credentials", "password"): USER.password,
            ("kafka-ca", "ca.crt"): security.tls.ca_pem,
        },
        tmp_path / "mounts",
        {
            # A cluster's overlay names its brokers; here the SASL_SSL listener is the only
            # address the worker gets, so nothing works without the mounted credentials.
            "KAFKA_BROKERS": secure_broker.secure_bootstrap_servers,
            "fraud-triton=fraud-triton:8001": f"fraud-triton=127.0.0.1:{stream_triton.grpc_port}",
            "9400": str(metrics_port),
        },
    )
    assert any(a.startswith(str(tmp_path)) for a in env.values())  # secrets came as files
    # What the image holds (the pipeline's module on the path), the test's topic names, and a
    # loopback metrics address: this machine's servers listen on 127.0.0.1 only.
    env.update(
        {
            "PYTHONPATH": str(STREAM_PIPELINES),
            "RTFLOW_TEST_TOPICS": compiled["suffix"],
            "RTFLOW_METRICS_ADDRESS": "127.0.0.1",
        }
    )
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        argv, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        # The startup probe: the metrics endpoint answers once both producers are ready.
        deadline = time.monotonic() + 60
        while True:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as page:
                    assert page.status == 200
                    assert b"rtflow_stream_worker" in page.read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the startup probe never passed"
                time.sleep(0.5)
        events = fraud_events(EVENTS, seed=5)
        stream = pipeline.stream
        assert stream is not None
        produce(secure_broker.bootstrap_servers, stream.source_topic, events)
        decisions = next(t for t in stream_topics(pipeline) if t.startswith("decisions"))
        expected = expected_decisions(events)
        found = read_decisions(
            secure_broker.bootstrap_servers, decisions, expected=len(expected), timeout=120
        )
        problem = exactly_once(found, expected)
        assert problem is None, f"{problem}\n{(tmp_path / 'worker.log').read_text()[-3000:]}"
        # Every transaction's commit is timed, and so is each of its three phases.
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as page:
            samples = {
                (sample.name, sample.labels.get("phase")): sample.value
                for family in text_string_to_metric_families(page.read().decode())
                for sample in family.samples
                if sample.name.endswith("_count")
            }
        commits = samples[("rtflow_stream_commit_seconds_count", None)]
        assert commits > 0
        for phase in ("offsets", "flush", "end"):
            assert samples[("rtflow_stream_commit_phase_seconds_count", phase)] == commits
        # SIGTERM, as a rollout sends it: out within the grace period the Deployment gives.
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(grace) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        log.close()
    assert common.SECRETS_DIR in str(deployment)
