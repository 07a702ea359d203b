"""``rtflow.Stream``: run a pipeline's hot path on the stream plane.

Why a pipeline option rather than a separate pipeline kind: the events, the stage functions, the
Triton models, the filters and payload schema are the pipeline's, and only one definition should
say them. ``stream=rtflow.Stream(...)`` says *how* the part that must be fast runs: as
long-running Kafka workers that consume the pipeline's Kafka trigger, run the function and
inference stages of every event in one process, call Triton in micro-batches and produce the
results exactly once through Kafka transactions. Everything the workers cannot run (container
stages, approvals, fan-outs, whatever depends on them) stays on the workflow plane, reached
through a hand-off topic, so one file describes both the 20 ms path and the hour-long review.

The options are checked when the pipeline is built (``rtflow.stream_ir``); the defaults come
from the pipeline's ``latency_budget_ms``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KafkaTopics:
    """The topics the stream plane reads and writes, as Strimzi ``KafkaTopic`` objects.

    Topics as code: partitions (the unit of the plane's parallelism), replication and
    retention are reviewed and synced like the rest of the pipeline. Pass ``topics=None`` to
    ``rtflow.Stream`` on a cluster whose topics are managed otherwise.

    Args:
        cluster: the Strimzi ``Kafka`` cluster's name (the ``strimzi.io/cluster`` label its
            Topic Operator selects on). The operator must watch the pipeline's namespace.
        replicas: replication factor of every topic.
        min_insync_replicas: replicas that must have a write before it is acknowledged;
            exactly-once needs at least 2 of 3 to survive a broker's loss without losing a
            committed transaction.
        retention_hours: how long the source, hop, output and hand-off topics keep records.
        dead_letter_retention_hours: the dead-letter topic keeps them longer (a fix is a replay).
    """

    cluster: str = "kafka"
    replicas: int = 3
    min_insync_replicas: int = 2
    retention_hours: int = 7 * 24
    dead_letter_retention_hours: int = 28 * 24


@dataclass(frozen=True)
class Stream:
    """How the hot path runs on the stream plane.

    Args:
        guarantee: ``"exactly_once"`` (Kafka transactions, EOS v2: each input's results and its
            consumer offset commit together; readers use ``read_committed``) or
            ``"at_least_once"`` (idempotent producer, offsets committed after delivery: lower
            latency, a crash may repeat the events since the last commit).
        transaction_interval_ms: how often a transaction commits (exactly-once). A
            ``read_committed`` reader sees results only at commit, so this bounds latency;
            default a quarter of ``latency_budget_ms`` (a 100 ms interval cannot fit 35 ms).
        max_wait_ms: the longest a worker waits to fill a batch; default an eighth of the budget.
        max_events: the most events a worker takes from Kafka per cycle.
        inference_batch: events per Triton request (one number, or per inference stage); default
            and maximum the model's ``max_batch_size``.
        inference_in_flight: Triton requests a worker keeps in flight at once. One by default:
            against a one-instance CPU model, a second request whose rows do not fit the first's
            batch waits about 100 ms in Triton (measured; BENCHMARKS.md); raise it for models
            with several instances or GPUs.
        batches_in_flight: batches a worker has started at once. With 2, the next batch is
            decoded and runs its stages up to its first inference while Triton answers the
            current one; batches still finish, and are produced, in order. 1 runs one batch
            at a time.
        generations_in_flight: generations (``rtflow.generate`` steps) a worker streams at
            once, per generate step: each event of a batch is one streamed request, answered
            concurrently up to this bound (batches in flight share it). 16 by default; an
            LLM backend batches the requests in flight (vLLM, TensorRT-LLM's in-flight
            batcher), so raise it with the server's capacity.
        dead_letter_topic: where poison events go with the reason and their source offset;
            default the trigger's dead-letter topic, else ``<topic>-dead-letter``.
        handoff_topic: where an event goes when it needs the workflow plane (an approval, a
            container stage); default ``<pipeline>-handoff`` when any stage needs it.
        results_topic: an optional topic receiving each event's hot-path outputs.
        hops: stages before which the fused group is cut by a Kafka topic (a stage that must
            scale or fail apart from the ones before it); none by default.
        workers: worker processes (``rtflow run --local``; the fewest replicas on a cluster,
            where KEDA adds more on consumer lag, up to ``partitions``).
        partitions: partitions of the plane's topics (the unit of parallelism: a worker more
            than partitions would idle).
        metrics_port: the Prometheus metrics port of each worker.
        image: the worker image: the hot path's stage functions and ``rtflow[stream]``
            (``rtflow stage-dockerfile``). Default: the stages' image, when they share one.
        cpu, memory: each worker's requests (the limits: ``cpu_limit``, ``memory_limit``;
            default the memory request, and a CPU limit of at least one core).
        topics: the ``KafkaTopic`` objects to emit (``rtflow.KafkaTopics``), or ``None`` to
            leave topics to whoever manages them on the cluster.
        prometheus_namespace: the namespace Prometheus scrapes from, the only one the
            workers' NetworkPolicy lets reach their metrics port.
    """

    guarantee: str = "exactly_once"
    transaction_interval_ms: int | None = None
    max_wait_ms: int | None = None
    max_events: int = 1000
    inference_batch: int | Mapping[str, int] | None = None
    inference_in_flight: int = 1
    batches_in_flight: int = 1
    generations_in_flight: int = 16
    dead_letter_topic: str | None = None
    handoff_topic: str | None = None
    results_topic: str | None = None
    hops: Sequence[str] = field(default_factory=tuple)
    workers: int = 1
    partitions: int = 4
    metrics_port: int = 9400
    image: str | None = None
    cpu: str = "1"
    memory: str = "1Gi"
    cpu_limit: str | None = None
    memory_limit: str | None = None
    topics: KafkaTopics | None = field(default_factory=KafkaTopics)
    prometheus_namespace: str = "monitoring"
