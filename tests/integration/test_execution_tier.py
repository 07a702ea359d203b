"""The execution tier: Argo's real workflow-controller (v4.1.4) runs the compiled fraud example.

Its pods run as local processes (rtflow.testing.pod_runner plays the kubelet; Argo's own
argoexec is their init, wait and emissary, and the agent that makes the http step's call), its
decision goes to a real SASL_SSL Kafka broker with the credentials the template projects from
real Secrets, its score comes from a real Triton. Argo decides everything a Workflow does: the
DAG order, the ``when`` branches, the fan-out, the retries, the suspend and the exit handler;
rtflow's local executor (rtflow.stages.semantics) is only a copy of those rules, and these
tests are where the copy meets the original.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import execution_harness as fx
import pytest
from components import component_missing

from rtflow.stages.semantics import backoff_wait
from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable
from rtflow.testing.execution import ExecutionPlane
from rtflow.testing.kafka_broker import KafkaBroker, KafkaUnavailable
from rtflow.testing.netns import NamespaceUnavailable
from rtflow.testing.workflow_controller import resume

pytestmark = pytest.mark.integration

sys.path.insert(0, str(fx.EXAMPLES))
from models.fraud_scorer import BIAS, FEATURES, WEIGHTS  # noqa: E402

DECISIONS = "fraud-decisions"


@pytest.fixture(scope="module")
def secure_broker() -> Iterator[tuple[KafkaBroker, Any]]:
    security = fx.broker_security()
    broker = KafkaBroker(security=security)
    try:
        try:
            broker.start()
        except KafkaUnavailable as exc:
            component_missing(str(exc))
        broker.create_topics(DECISIONS)
        yield broker, security
    finally:
        broker.close()


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from rtflow.gpu import triton_server as ts
    from rtflow.stages.inference import local_triton_server, needs_triton

    try:
        ts.locate_triton()
        ts.check_numpy()
    except ts.TritonUnavailable as exc:
        component_missing(str(exc))
    pipeline = fx.fraud_pipeline()
    server = local_triton_server(
        pipeline, needs_triton(pipeline), work_dir=tmp_path_factory.mktemp("triton")
    )
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def execution(
    control_plane: ControlPlane,
    secure_broker: tuple[KafkaBroker, Any],
    triton: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ExecutionPlane]:
    """The controller and the pod runner; their logs (the controller's, each container's) stay
    in the test's temporary folder."""
    broker, security = secure_broker
    work = tmp_path_factory.mktemp("execution")
    try:
        plane = fx.start(control_plane, broker, ("127.0.0.1", triton.http_port), security, work)
    except (NamespaceUnavailable, ControlPlaneUnavailable) as exc:
        component_missing(str(exc))
    try:
        yield plane
    finally:
        plane.close()


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def expected_risk(t: dict[str, Any]) -> float:
    hour = int(t.get("hour", 12))
    named = {
        "log_amount": math.log1p(float(t["amount"])),
        "foreign": float(t.get("country", "US") != t.get("card_country", "US")),
        "night": float(hour < 6 or hour >= 23),
        "card_not_present": float(t.get("channel") == "online"),
        "new_merchant": float(bool(t.get("first_time_merchant", False))),
    }
    z = BIAS + sum(w * f32(named[n]) for w, n in zip(WEIGHTS, FEATURES, strict=True))
    return f32(1.0 / (1.0 + math.exp(-z)))


def decisions(broker: KafkaBroker, key: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The records on the decisions topic whose key is ``key``."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers,
                         "group.id": f"check-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([DECISIONS])
    found = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not found:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.key() == key.encode():
                found.append(json.loads(msg.value()))
    finally:
        consumer.close()
    return found


def transaction(**fields: Any) -> dict[str, Any]:
    base = {"id": f"t-{uuid.uuid4().hex[:8]}", "type": "purchase", "amount": 12.5,
            "country": "US", "card_country": "US", "channel": "pos", "hour": 14}  # fmt: skip
    return {**base, **fields}


def test_a_transaction_runs_to_succeeded_with_its_decision_on_the_broker(
    execution: ExecutionPlane, secure_broker: tuple[KafkaBroker, Any]
) -> None:
    """compute-features, the http score (Argo's agent pod, which mounts the token Secret rtflow
    compiles for it: without it the pod stays Pending and the step never ends), decide, the
    publish over SASL_SSL; the review branch skipped; the exit handler."""
    broker, _ = secure_broker
    t = transaction()
    name = fx.submit(execution.plane, t)
    wf = fx.wait_for(execution, name, fx.finished)
    assert wf["status"]["phase"] == "Succeeded", (wf["status"].get("message"), _summary(wf))
    (record,) = decisions(broker, t["id"])
    assert record["transaction_id"] == t["id"]
    assert record["risk"] == pytest.approx(expected_risk(t), rel=1e-6)
    assert record["action"] == "allow"
    # The http step's answer reached decide through Argo's agent; the review branch was skipped.
    (score,) = fx.by_name(wf, "score(0)")  # the http step's attempt, under its Retry node
    assert score["type"] == "HTTP" and score["phase"] == "Succeeded"
    assert {n["phase"] for n in fx.by_name(wf, "summarize")} == {"Skipped"}
    # The exit handler ran, and told the stand-in notifier the run's status and name.
    (notified,) = fx.stand_in_calls(execution, name, "/notifier")
    assert notified["args"] == ["--status", "Succeeded", "--workflow", name]
    assert notified["credential_files"] == {"SLACK_WEBHOOK_URL_FILE": True}


def _summary(wf: dict[str, Any]) -> dict[str, Any]:
    return {n["displayName"]: (n["phase"], n.get("message")) for n in fx.nodes(wf)}


def test_a_risky_transaction_is_reviewed_suspended_approved_and_blocks_the_card(
    execution: ExecutionPlane,
) -> None:
    t = transaction(amount=4200.0, country="FR", hour=3, channel="online")
    name = fx.submit(execution.plane, t, review_threshold="0.1")
    suspended = fx.wait_for(
        execution, name,
        lambda wf: any(n["phase"] == "Running" for n in fx.by_name(wf, "analyst-approval")),
    )  # fmt: skip
    assert not fx.finished(suspended), _summary(suspended)
    reviews = fx.by_name(suspended, "review(0:graph-risk)")
    fanned = sorted(n["displayName"] for n in fx.nodes(suspended)
                    if n["displayName"].startswith("review(") and n["type"] == "Pod")  # fmt: skip
    assert fanned == ["review(0:graph-risk)", "review(1:merchant-history)", "review(2:velocity)"]
    assert reviews and reviews[0]["phase"] == "Succeeded"
    (summary,) = fx.by_name(suspended, "summarize")
    (result,) = summary["outputs"]["parameters"]
    assert result["value"].startswith("risk ") and "graph-risk=" in result["value"]
    assert fx.stand_in_calls(execution, name, "/card-actions") == []  # not before the approval

    resume(execution.plane, fx.NAMESPACE, name, "analyst-approval", {"decision": "approve"})
    wf = fx.wait_for(execution, name, fx.finished)
    assert wf["status"]["phase"] == "Succeeded", _summary(wf)
    (blocked,) = fx.stand_in_calls(execution, name, "/card-actions")
    assert blocked["args"] == ["block", "--reason", result["value"]]
    assert blocked["credential_files"] == {"CARD_API_TOKEN_FILE": True}


def test_a_rejection_does_not_block_the_card(execution: ExecutionPlane) -> None:
    t = transaction(amount=4200.0, country="FR", hour=3, channel="online")
    name = fx.submit(execution.plane, t, review_threshold="0.1")
    fx.wait_for(
        execution, name,
        lambda wf: any(n["phase"] == "Running" for n in fx.by_name(wf, "analyst-approval")),
    )  # fmt: skip
    resume(execution.plane, fx.NAMESPACE, name, "analyst-approval", {"decision": "reject"})
    wf = fx.wait_for(execution, name, fx.finished)
    assert wf["status"]["phase"] == "Succeeded", _summary(wf)
    assert {n["phase"] for n in fx.by_name(wf, "block-card")} == {"Skipped"}
    assert fx.stand_in_calls(execution, name, "/card-actions") == []


def test_a_failing_stage_is_retried_as_compiled_and_the_exit_handler_runs(
    execution: ExecutionPlane,
) -> None:
    """compute-features raises on a transaction without an amount (exit 1). Its compiled retry
    (limit 3, OnFailure, backoff 1s x2, at most 20 s after the first attempt's start) is Argo's
    to apply: every attempt fails with exit code 1, and when Argo stops before the limit it is
    for the max duration, which rtflow's own rule (rtflow.stages.semantics) must also say at the
    time Argo decided. (How many attempts fit in 20 s depends on this machine's speed and the
    controller's requeue delay; the rule does not.) Then the exit handler reports Failed."""
    t = transaction()
    del t["amount"]
    name = fx.submit(execution.plane, t)
    wf = fx.wait_for(execution, name, fx.finished)
    assert wf["status"]["phase"] == "Failed", _summary(wf)
    attempts = sorted(
        (n for n in fx.nodes(wf) if n["displayName"].startswith("compute-features(")),
        key=lambda n: n["displayName"],
    )
    retry = _stage_retry("compute-features")
    assert 2 <= len(attempts) <= retry.limit + 1, _summary(wf)  # retried, within the limit
    assert {n["phase"] for n in attempts} == {"Failed"}
    assert {n["outputs"]["exitCode"] for n in attempts} == {"1"}
    (group,) = fx.by_name(wf, "compute-features")
    assert group["type"] == "Retry" and group["phase"] == "Failed"
    if len(attempts) < retry.limit + 1:
        assert group["message"] in MAX_DURATION_MESSAGES, group
        decided = _time(group["finishedAt"]) - _time(attempts[0]["startedAt"])
        assert backoff_wait(retry, len(attempts) - 1, elapsed_since_first=decided) is None
    (notified,) = fx.stand_in_calls(execution, name, "/notifier")
    assert notified["args"] == ["--status", "Failed", "--workflow", name]


# workflow/controller/operator.go (v4.1.4), processNodeRetries
MAX_DURATION_MESSAGES = {"Max duration limit exceeded", "Backoff would exceed max duration limit"}


def _stage_retry(name: str) -> Any:
    (stage,) = [s for s in fx.fraud_pipeline().stages if s.name == name]
    return stage.retry


def _time(stamp: str) -> float:
    from datetime import datetime

    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").timestamp()


def test_a_bad_input_is_not_retried(execution: ExecutionPlane) -> None:
    """A transaction that is not JSON makes the runtime exit 65 (a bad input), which the
    compiled retry expression excludes: one attempt, not four."""
    name = fx.submit(execution.plane, "{not json")
    wf = fx.wait_for(execution, name, fx.finished)
    assert wf["status"]["phase"] == "Failed", _summary(wf)
    attempts = [n for n in fx.nodes(wf) if n["displayName"].startswith("compute-features(")]
    assert [n["outputs"]["exitCode"] for n in attempts] == ["65"], _summary(wf)


def test_close_leaves_no_process(control_plane: ControlPlane, tmp_path: Path) -> None:
    try:
        plane = ExecutionPlane(control_plane, "close-probe", {}, work_dir=tmp_path).start()
    except (NamespaceUnavailable, ControlPlaneUnavailable) as exc:
        component_missing(str(exc))
    pids = plane.pids
    namespace = plane.netns.name
    assert pids  # the controller, at least
    plane.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not Path(f"/run/netns/{namespace}").exists()
