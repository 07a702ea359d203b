"""The retraining trigger (``rtflow.on_drift``) on the events tier: Argo Events for real
(v1.9.11, rtflow.testing.events) reads the drift topic of a real broker and starts the
retraining only on a crossing, and never on a crossing of an aborted transaction.

``drift_retrain`` of tests/local_pipelines/drift.py, as compiled (its Kafka EventSource with
``isolationLevel: 1`` in its Sarama ``config``, its Sensor with the ``body.crossed == true``
data filter, their RBAC), is applied to the real API server; Argo Events' real controller makes
their Deployments, whose pods run the real ``argo-events`` eventsource and sensor services
over a real JetStream EventBus, and the Sensor's k8s trigger creates the Workflows (only
created: no WorkflowTemplate is applied, as in test_events_typed_inputs.py). Beside it,
``drift_retrain_uncommitted`` (tests/local_pipelines/drift_uncommitted.py): the same trigger
copied with ``read_committed=False`` and its own consumer group, reading the same topic.

The drift records are the stream worker's own: the real plan of ``drift_scoring``
(rtflow.stages.stream.plan, its drift watch bound by rtflow.stages.stream.drift.attach) turns
batches of readings into the records a worker writes (the drift record of each window a batch
closes and the window's state), and each batch goes into a transaction of a transactional
producer configured as the worker's (rtflow.stages.stream.output; only the consumed offsets a
worker also sends are left out: no consumer here), committed or aborted. After an abort the
watch reads its window back from the state topic and the batch is replayed, as a worker does.

"No Workflow" is established as tests/integration/test_events_tier.py does: a later crossing
of the same worker (same key, so same partition, read and handled in order) must create a
Workflow; once it exists, a Workflow for an earlier record would exist too. Each window of the
module has its own PSI (its readings differ), so a Workflow's ``psi`` says which record made it.

Measured here, and asserted by the last test: without ``read_committed`` the aborted crossing
**does** start a retraining (the uncommitted copy creates two Workflows, for the aborted
crossing and for its replay); with it, one. Before the tests, a probe worker's crossing is
produced until both Sensors have created its Workflow (:func:`_ready`).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from components import component_missing
from handoff_harness import wait_group_assigned

from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable
from rtflow.testing.events import EventsPlane, move_to_namespace
from rtflow.testing.kafka_broker import KafkaBroker
from rtflow.testing.netns import NamespaceUnavailable
from rtflow.testing.pod_network import Service

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DRIFT = ROOT / "tests" / "local_pipelines" / "drift.py"
UNCOMMITTED = ROOT / "tests" / "local_pipelines" / "drift_uncommitted.py"
NAMESPACE = "drift-events"
BROKER_HOST, BROKER_PORT = "kafka.kafka.svc", 9092  # what the compiled EventSources dial
WANTED = {"ServiceAccount", "Role", "RoleBinding", "EventSource", "Sensor"}
COMMITTED_PIPELINE, UNCOMMITTED_PIPELINE = "drift-retrain", "drift-retrain-uncommitted"
WINDOW, THRESHOLD = 200, 0.2  # drift_scoring's watch
BATCHES = (150, 50)  # a window's readings in two batches (the pipeline's max_events is 150)
TIMEOUT = 120.0


def _readings(high: int) -> list[float]:
    """A window of readings against drift.py's reference (five bins of 20 % over [0, 100)):
    ``high`` of them in the top bin, the rest spread evenly over the four others. Its PSI grows
    with ``high``: 40 is the reference itself, up to 80 stays at or below the threshold, from
    84 on it is above."""
    assert (WINDOW - high) % 4 == 0
    rest = [10.0, 30.0, 50.0, 70.0] * ((WINDOW - high) // 4)
    return [90.0] * high + rest


@dataclass
class Tier:
    events: EventsPlane
    broker: KafkaBroker
    run: str
    scoring: Any  # the drift_scoring pipeline, for the workers' plans
    readings_topic: str


class Worker:
    """A stream worker's drift watch and its transactions (see the module docstring)."""

    def __init__(self, tier: Tier, name: str) -> None:
        from confluent_kafka import Producer

        from rtflow.stages.stream.drift import attach
        from rtflow.stages.stream.metrics import StreamMetrics
        from rtflow.stages.stream.plan import Plan
        from rtflow.stages.stream.settings import WorkerSettings

        self.tier = tier
        self.worker_id = f"{name}{tier.run}"
        self.transactional_id = f"drift-scoring-{self.worker_id}"
        self.plan = Plan(tier.scoring.build())
        settings = WorkerSettings(brokers=tier.broker.bootstrap_servers, worker_id=self.worker_id)
        metrics = StreamMetrics("drift-scoring", self.worker_id)
        self.watches = attach(self.plan, settings, metrics, self.transactional_id)
        self.producer = Producer({
            "bootstrap.servers": tier.broker.bootstrap_servers,
            "client.id": f"{self.transactional_id}-producer",
            "enable.idempotence": True, "acks": "all", "linger.ms": 5,
            "transactional.id": self.transactional_id,
            "transaction.timeout.ms": settings.transaction_timeout_ms,
        })  # fmt: skip
        self.producer.init_transactions(30)
        self.offset = 0  # the next reading's offset in the readings topic

    def batch(self, amounts: list[float], *, commit: bool = True) -> list[dict[str, Any]]:
        """One batch: the plan's records in one transaction; the drift records it wrote. An
        aborted batch is then replayed as a worker replays it: the window read back from the
        state topic (the last committed batch's), the same readings again, committed."""
        from rtflow.stages.stream.batch import Message

        self.watches.restore_if_stale()
        topic = self.tier.readings_topic
        messages = [
            Message(topic, 0, self.offset + i, json.dumps({"amount": a}).encode())
            for i, a in enumerate(amounts)
        ]
        result = self.plan.execute(messages)
        (step,) = self.watches.steps
        drift = [r for r in result.records if r.topic == step.topic]
        self.producer.begin_transaction()
        for record in result.records:
            assert record.topic in (step.topic, step.state_topic), record.topic
            self.producer.produce(record.topic, value=record.value, key=record.key,
                                  headers=record.headers)  # fmt: skip
        if not commit:
            assert self.producer.flush(30) == 0  # on the broker, then aborted
            self.producer.abort_transaction(30)
            self.watches.stale()  # a rewind: the window is read back before the next batch
            replayed = self.batch(amounts)
            assert replayed == [json.loads(r.value) for r in drift]  # the same records again
            return replayed
        self.producer.commit_transaction(30)
        self.offset += len(amounts)
        return [json.loads(r.value) for r in drift]

    def window(self, high: int, *, abort_last: bool = False) -> dict[str, Any]:
        """A full window of readings (see :func:`_readings`), in the pipeline's batches; the
        one drift record it published (the committed one, if its last batch aborted first)."""
        amounts = _readings(high)
        first, _ = BATCHES
        assert self.batch(amounts[:first]) == []
        (record,) = self.batch(amounts[first:], commit=not abort_last)
        return record

    def close(self) -> None:
        self.producer.close()


def _documents(events: EventsPlane, *pipelines: Any) -> list[dict[str, Any]]:
    from rtflow.generators.compiler import compile_pipelines

    bodies = [dict(m.body) for m in compile_pipelines([p.build() for p in pipelines]).manifests]
    wanted = [b for b in bodies if b["kind"] in WANTED]
    buses = {b["spec"].get("eventBusName", "default") for b in wanted
             if b["kind"] in ("EventSource", "Sensor")}  # fmt: skip
    return [*move_to_namespace(wanted, NAMESPACE), *(events.event_bus(n) for n in sorted(buses))]


def _ensure_compacted(broker: KafkaBroker, topic: str) -> None:
    """The drift state topic (the pipeline's, shared by this session's tests: keys per
    worker), compacted as compiled."""
    from confluent_kafka.admin import AdminClient

    existing = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10)
    if topic not in existing.topics:
        broker.create_topics(topic, partitions=2, config={"cleanup.policy": "compact"})


def _load(run: str) -> tuple[Any, Any, Any]:
    """drift_scoring and drift_retrain of drift.py, drift_retrain_uncommitted, with this
    module's topics and consumer groups, and the brokers' name as a cluster has it."""
    from rtflow.loader import load_pipelines

    with pytest.MonkeyPatch.context() as env:
        env.setenv("RTFLOW_TEST_DRIFT_RUN", run)
        env.setenv("RTFLOW_TEST_BROKERS", f"{BROKER_HOST}:{BROKER_PORT}")
        _, found = load_pipelines(str(DRIFT))
        _, (uncommitted,) = load_pipelines(str(UNCOMMITTED))
    by_name = {p.name: p for p in found}
    return by_name["drift-scoring"], by_name[COMMITTED_PIPELINE], uncommitted


@pytest.fixture(scope="module")
def tier(
    control_plane: ControlPlane, kafka_broker: KafkaBroker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Tier]:  # fmt: skip
    """Both retraining pipelines deployed on the events tier, their Sensors subscribed, their
    EventSources' consumer groups holding the drift topic and seen to pass a crossing."""
    from rtflow.stream_layout import drift_state_topic

    run = f"-{secrets.token_hex(3)}"
    scoring, committed, uncommitted = _load(run)
    (trigger,) = committed.build().triggers
    topic = trigger.source.topic
    assert topic == f"drift-scoring-drift{run}" and trigger.source.read_committed is True
    (copied,) = uncommitted.build().triggers  # the same but for the isolation level and group
    group = f"drift-retrain-uncommitted{run}"
    assert copied.source == replace(trigger.source, read_committed=False, consumer_group=group)
    assert replace(copied, source=trigger.source) == trigger
    kafka_broker.create_topics(topic, partitions=2)
    _ensure_compacted(kafka_broker, drift_state_topic("drift-scoring"))
    host, port = kafka_broker.bootstrap_servers.rsplit(":", 1)
    broker = (host, int(port))
    # the compiled brokers' name, and the address the broker advertises, lead to it
    services = [Service((BROKER_HOST,), BROKER_PORT, broker), Service((), broker[1], broker)]
    work = tmp_path_factory.mktemp("events-drift")
    try:
        events = EventsPlane(control_plane, NAMESPACE, {}, services=services, work_dir=work)
        events.start()
    except (NamespaceUnavailable, ControlPlaneUnavailable) as exc:
        component_missing(str(exc))
    try:
        documents = _documents(events, committed, uncommitted)
        sources = [d for d in documents if d["kind"] == "EventSource"]
        spec = {d["metadata"]["name"]: d["spec"]["kafka"][topic] for d in sources}
        assert spec[f"{COMMITTED_PIPELINE}-{topic}"]["config"] == "consumer:\n  isolationLevel: 1\n"
        assert "config" not in spec[f"{UNCOMMITTED_PIPELINE}-{topic}"]
        control_plane.apply(documents, namespace=NAMESPACE)
        for name in spec:
            events.wait_subscribed(f"{name}.{topic}")
        for spec_of in spec.values():
            wait_group_assigned(kafka_broker, spec_of["consumerGroup"]["groupName"])
        found = Tier(events, kafka_broker, run, scoring, f"drift-readings{run}")
        _ready(found)
        yield found
    finally:
        events.close()


def _ready(tier: Tier) -> None:
    """Until each EventSource has passed a crossing on: a group at its newest offset only
    reads what is produced after it looked the offset up, a moment after the group is
    assigned. A probe worker's crossing, again (after a window below) until both have it."""
    probe = Worker(tier, "probe")
    deadline = time.monotonic() + 3 * TIMEOUT
    try:
        while True:
            probe.window(44)
            crossing = probe.window(196)
            assert crossing["crossed"] is True
            try:
                for pipeline in (COMMITTED_PIPELINE, UNCOMMITTED_PIPELINE):
                    _wait_created(tier, pipeline, crossing["value"], timeout=30)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
    finally:
        probe.close()


def _retrainings(tier: Tier, pipeline: str) -> list[dict[str, Any]]:
    """The Workflows the Sensor of ``pipeline`` created."""
    from kubernetes import client

    api = client.CustomObjectsApi(tier.events.plane.api_client())
    found = api.list_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NAMESPACE, "workflows",
        label_selector=f"rtflow.dev/pipeline={pipeline}",
    )  # fmt: skip
    return list(found["items"])


def _parameters(wf: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p.get("value", "") for p in wf["spec"]["arguments"]["parameters"]}


def _psis(tier: Tier, pipeline: str) -> list[float]:
    """The ``psi`` of each retraining ``pipeline``'s Sensor started (the record's ``value``)."""
    return [float(_parameters(wf)["psi"]) for wf in _retrainings(tier, pipeline)]


def _wait_created(
    tier: Tier, pipeline: str, psi: float, timeout: float = TIMEOUT
) -> dict[str, Any]:
    """The Workflow of ``pipeline`` whose ``psi`` is this one, once the API server has it."""
    deadline = time.monotonic() + timeout
    while True:
        for wf in _retrainings(tier, pipeline):
            if float(_parameters(wf)["psi"]) == psi:
                return wf
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {pipeline} Workflow with psi {psi} after {timeout:g} s\n"
                               + tier.events.diagnostics())  # fmt: skip
        time.sleep(0.2)


@pytest.fixture
def worker(tier: Tier, request: pytest.FixtureRequest) -> Iterator[Worker]:
    """A stream worker of its own for the test (its windows start empty)."""
    found = Worker(tier, request.node.name.removeprefix("test_")[:12].replace("_", "-"))
    try:
        yield found
    finally:
        found.close()


def test_a_crossing_starts_exactly_one_retraining_with_its_value(
    tier: Tier, worker: Worker
) -> None:
    below = worker.window(52)
    crossing = worker.window(124)
    assert not below["above"] and not below["crossed"] and below["value"] <= THRESHOLD
    assert crossing["crossed"] is True and crossing["value"] > THRESHOLD
    wf = _wait_created(tier, COMMITTED_PIPELINE, crossing["value"])
    # Created by the Sensor from the compiled trigger: its generateName and labels, the
    # template it names, the record's watch and value as the retraining's inputs.
    assert wf["metadata"]["name"].startswith(f"{COMMITTED_PIPELINE}-")
    assert wf["metadata"]["labels"]["rtflow.dev/trigger"] == f"drift-scoring-drift{tier.run}"
    assert wf["spec"]["workflowTemplateRef"] == {"name": COMMITTED_PIPELINE}
    assert _parameters(wf) == {"drift": "amount-drift", "psi": json.dumps(crossing["value"])}
    # a later crossing of the same worker, once handled: the first one started one run only
    assert not worker.window(56)["above"]
    sentinel = worker.window(128)
    assert sentinel["crossed"] is True
    _wait_created(tier, COMMITTED_PIPELINE, sentinel["value"])
    psis = _psis(tier, COMMITTED_PIPELINE)
    assert psis.count(crossing["value"]) == 1 and psis.count(sentinel["value"]) == 1, psis
    assert below["value"] not in psis


def test_windows_that_do_not_cross_start_nothing(tier: Tier, worker: Worker) -> None:
    """Above the threshold but not crossing it (the window before was above), and below it:
    the Sensor's filter drops both, in either pipeline."""
    crossing = worker.window(100)
    still_above = worker.window(120)
    below = worker.window(48)
    sentinel = worker.window(104)
    assert crossing["crossed"] is True
    assert still_above["above"] is True and still_above["crossed"] is False
    assert still_above["value"] > THRESHOLD
    assert below["above"] is False and below["crossed"] is False
    assert sentinel["crossed"] is True
    for pipeline in (COMMITTED_PIPELINE, UNCOMMITTED_PIPELINE):
        _wait_created(tier, pipeline, sentinel["value"])
        psis = _psis(tier, pipeline)
        assert still_above["value"] not in psis and below["value"] not in psis, (pipeline, psis)
        assert psis.count(crossing["value"]) == 1 and psis.count(sentinel["value"]) == 1, psis
    logs = tier.events.pod_logs("sensor-name", COMMITTED_PIPELINE)
    assert "didn't pass filter" in logs


def test_a_crossing_of_an_aborted_transaction_starts_nothing(tier: Tier, worker: Worker) -> None:
    """The batch that closed the crossing window aborts (its records, the crossing among them,
    reached the broker first); the worker reads its window back and replays the batch, which
    commits the same crossing. read_committed: one retraining. The copy without it: two, the
    aborted crossing's and the replay's."""
    worker.window(60)
    crossing = worker.window(132, abort_last=True)
    assert crossing["crossed"] is True and crossing["window_events"] == WINDOW
    assert not worker.window(64)["above"]
    sentinel = worker.window(136)
    assert sentinel["crossed"] is True
    for pipeline in (COMMITTED_PIPELINE, UNCOMMITTED_PIPELINE):
        _wait_created(tier, pipeline, sentinel["value"])
    committed = _psis(tier, COMMITTED_PIPELINE)
    uncommitted = _psis(tier, UNCOMMITTED_PIPELINE)
    assert committed.count(crossing["value"]) == 1, committed
    assert uncommitted.count(crossing["value"]) == 2, uncommitted
    assert committed.count(sentinel["value"]) == 1 and uncommitted.count(sentinel["value"]) == 1
