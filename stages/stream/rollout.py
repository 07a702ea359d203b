"""The stream plane's side of a canary rollout: each event to the stable or the candidate version.

For a model declared with ``canary=rtflow.canary(...)`` an inference step's batcher is a
:class:`VersionRouter` (``Plan.bind_triton``): it follows the model's rollout state
(:mod:`rtflow.stages.rollout_state`, watched by :func:`start_rollouts` in every worker) and
sends an event to the candidate version when the hash of its source (topic, partition, offset)
modulo 10,000 is below the candidate's share times 100, else to the stable version.

* **Deterministic**: the same event goes to the same version in every worker and on every
  retry (a batch retried after a failure, a partition moved to another worker), so a canary's
  share is a fixed set of events, not a coin tossed again; the hash spreads consecutive
  offsets evenly (a share of 10% is 10% of every partition).
* **Still micro-batched**: each version has its own :class:`TritonBatcher` asking for that
  version by number (gRPC ``model_version``): an unversioned request would go to the highest
  version loaded, which during a rollout is the candidate.
* **A candidate's failure costs latency, not answers**: the rows the candidate fails (an
  error, a rejected row, Triton refusing the version) are counted as its errors and sent to
  the stable version at once, in the same batch. The stream never stalls on a bad canary and
  no event is dead-lettered for it; the controller sees the errors and rolls it back. A failure
  of the stable version is what it always was (a DependencyError: the batch is retried).
* **The declared stable version as the last resort**: when Triton says it does not have the
  state's stable version (gRPC ``NOT_FOUND``, "Request for unknown model: '<m>' version <n> is
  not found": a Triton pod restarted after a promotion loads only the compiled declaration),
  the rows go to the declared stable version (the one the compiled policy loads) instead of
  stalling the partition: counted in ``rtflow_stream_inference_version_unavailable_rows``
  (labelled stage and the missing version) and logged once per state change. The version is
  tried again every :data:`RECHECK_SECONDS` and with every new state.
* **Counted per version**: rows by outcome and request latency in the worker's Prometheus
  metrics (``rtflow_stream_inference_version_rows``, ``..._version_seconds``, labelled stage and
  version), and cumulative per-version counts published to the state topic about once a
  second (``stats/<model>/<worker>``) for the controller.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rtflow.canary_policy import declared_stable
from rtflow.gpu.models import TritonModel
from rtflow.stages.rollout_state import (
    LATENCY_BOUNDS,
    RolloutState,
    TopicWatch,
    VersionStats,
    read_topic,
    stats_key,
)
from rtflow.stages.stream.batch import DependencyError, Message
from rtflow.stages.stream.triton import Rejected, TritonBatcher, VersionNotFound

__all__ = ["SHARE_POINTS", "VersionRouter", "share_point", "stable_version", "start_rollouts"]

SHARE_POINTS = 10_000
"""An event's place in [0, 10,000): a share is set in hundredths of a percent."""
STATS_SECONDS = 1.0
RECHECK_SECONDS = 5.0
"""How long a version Triton said it does not have is not asked for again (the same state)."""
log = logging.getLogger("rtflow.stream")


def stable_version(model: TritonModel) -> int:
    """The declared stable version: the one the compiled version policy serves."""
    stable = declared_stable(model)
    assert stable is not None, f"model {model.name!r} is not under canary"
    return stable


def share_point(topic: str, partition: int, offset: int) -> int:
    """The event's place among 10,000: a hash of where it came from (BLAKE2b, not Python's
    ``hash``, which differs between processes)."""
    digest = hashlib.blake2b(f"{topic}\0{partition}\0{offset}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SHARE_POINTS


class VersionRouter:
    """An inference step's batcher for a model under canary (one per step per worker)."""

    routes_by_source = True  # InferenceStep passes each row's message

    def __init__(
        self,
        url: str,
        model: TritonModel,
        *,
        stage: str,
        batch: int,
        in_flight: int = 4,
        timeout_seconds: float = 2.0,
    ) -> None:
        self.url, self.model, self.stage = url, model, stage
        self.batch, self.in_flight, self.timeout_seconds = batch, in_flight, timeout_seconds
        self.state = RolloutState(model.name, stable_version(model))
        self.stats: dict[int, VersionStats] = {}
        self.cache = None  # each version's batcher keeps its own (never one across versions)
        self.observe: Any = None  # (version, rows, errors, fallback, seconds), the worker's metrics
        self.unavailable: Any = None  # (version, rows): answered by the declared stable version
        self.declared = stable_version(model)
        self._missing: dict[int, float] = {}  # version -> when Triton said it does not have it
        self._warned: RolloutState | None = None
        self._batchers: dict[int, TritonBatcher] = {}
        self._lock = threading.Lock()
        self._calls: cf.ThreadPoolExecutor | None = None

    def follow(self, state: RolloutState) -> None:
        """The model's state changed (a record of the state topic)."""
        with self._lock:
            if state != self.state:
                self._missing.clear()  # a new state: ask for its versions again
            self.state = state

    def batcher(self, version: int) -> TritonBatcher:
        with self._lock:
            if version not in self._batchers:
                self._batchers[version] = TritonBatcher(
                    self.url,
                    self.model,
                    version=version,
                    batch=self.batch,
                    in_flight=self.in_flight,
                    timeout_seconds=self.timeout_seconds,
                )
            return self._batchers[version]

    def version_of(self, message: Message, state: RolloutState | None = None) -> int:
        state = state or self.state
        if state.candidate is None or state.share_percent <= 0 or state.phase != "canary":
            return state.stable
        point = share_point(message.topic, message.partition, message.offset)
        return state.candidate if point < state.share_percent * 100 else state.stable

    def _count(self, version: int, rows: int, errors: int, fallback: int, seconds: float) -> None:
        with self._lock:
            self.stats.setdefault(version, VersionStats()).observe(rows, errors, seconds)
        if self.observe is not None:
            self.observe(version, rows, errors, fallback, seconds)

    def _ask(self, version: int, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        started = time.perf_counter()
        try:
            answers: list[Any] = self.batcher(version).infer(rows)
        except DependencyError:
            self._count(version, len(rows), len(rows), 0, time.perf_counter() - started)
            raise
        failed = sum(isinstance(a, Rejected) for a in answers)
        self._count(version, len(rows), failed, 0, time.perf_counter() - started)
        return answers

    def _ask_stable(self, state: RolloutState, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The state's stable version; the declared one when Triton does not have it."""
        version = state.stable
        if version != self.declared:
            with self._lock:
                seen = self._missing.get(version)
            if seen is None or time.monotonic() - seen >= RECHECK_SECONDS:
                try:
                    return self._ask(version, rows)
                except VersionNotFound as exc:
                    with self._lock:
                        self._missing[version] = time.monotonic()
                        warn, self._warned = self._warned != state, state
                    if warn:
                        log.warning(
                            "%s: Triton does not serve version %d of %r (the rollout state's "
                            "stable version, %s); answering with the declared stable version "
                            "%d: %s",
                            self.stage, version, self.model.name, state.phase, self.declared,
                            exc,
                        )  # fmt: skip
            if self.unavailable is not None:
                self.unavailable(version, len(rows))
        return self._ask(self.declared, rows)

    def infer_routed(
        self, rows: Sequence[Mapping[str, Any]], messages: Sequence[Message]
    ) -> list[dict[str, Any] | Rejected]:
        """Each row's answer from its version; the candidate's failures from the stable one."""
        state = self.state
        chosen = [self.version_of(m, state) for m in messages]
        answers: list[Any] = [None] * len(rows)
        stable = [i for i, v in enumerate(chosen) if v == state.stable]
        tried = [i for i, v in enumerate(chosen) if v != state.stable]
        if tried:
            candidate = chosen[tried[0]]
            try:
                got = self._ask(candidate, [rows[i] for i in tried])
            except DependencyError:
                got = [Rejected("the candidate failed")] * len(tried)
            for index, answer in zip(tried, got, strict=True):
                if isinstance(answer, Rejected):
                    stable.append(index)  # answered by the stable version below
                else:
                    answers[index] = answer
            fallback = len(tried) - sum(a is not None for a in answers)
            if fallback and self.observe is not None:
                self.observe(candidate, 0, 0, fallback, 0.0)
        if stable:
            stable.sort()
            for index, answer in zip(
                stable, self._ask_stable(state, [rows[i] for i in stable]), strict=True
            ):
                answers[index] = answer
        return answers

    def submit_routed(
        self, rows: Sequence[Mapping[str, Any]], messages: Sequence[Message]
    ) -> cf.Future[list[dict[str, Any] | Rejected]]:
        """:meth:`infer_routed` on a thread of its own (the worker's overlapped batches)."""
        if self._calls is None:
            self._calls = cf.ThreadPoolExecutor(2, thread_name_prefix=f"rtflow-{self.stage}")
        return self._calls.submit(self.infer_routed, list(rows), list(messages))

    def counts(self) -> dict[str, Any]:
        with self._lock:
            return {str(v): s.as_json() for v, s in sorted(self.stats.items())}

    def close(self) -> None:
        if self._calls is not None:
            self._calls.shutdown(wait=True)
        for batcher in self._batchers.values():
            batcher.close()


def _merged(routers: Sequence[VersionRouter]) -> dict[str, Any]:
    """The cumulative counts of one model's routers in this worker, per version."""
    total: dict[str, VersionStats] = {}
    for router in routers:
        for version, counts in router.counts().items():
            mine = total.setdefault(version, VersionStats())
            theirs = VersionStats.from_json(counts)
            mine.rows += theirs.rows
            mine.errors += theirs.errors
            mine.seconds += theirs.seconds
            mine.buckets = [a + b for a, b in zip(mine.buckets, theirs.buckets, strict=True)]
    return {v: s.as_json() for v, s in total.items()}


class Rollouts:
    """A worker's watches of the state topics of its models under canary (see
    :func:`start_rollouts`)."""

    def __init__(self, watches: Sequence[TopicWatch], producer: Any) -> None:
        self.watches, self.producer = list(watches), producer

    def close(self) -> None:
        for watch in self.watches:
            watch.close()
        if self.producer is not None:
            self.producer.flush(5)


def _metrics(registry: Any) -> tuple[Any, Any, Any]:
    from prometheus_client import Counter, Histogram

    rows = Counter(
        "rtflow_stream_inference_version_rows",
        "Rows of an inference stage under canary, by model version and outcome (ok, error, "
        "fallback: a candidate's failed row answered by the stable version)",
        ["stage", "version", "outcome"],
        registry=registry,
    )
    seconds = Histogram(
        "rtflow_stream_inference_version_seconds",
        "A request of an inference stage under canary, by model version",
        ["stage", "version"],
        buckets=LATENCY_BOUNDS,
        registry=registry,
    )
    unavailable = Counter(
        "rtflow_stream_inference_version_unavailable_rows",
        "Rows of an inference stage under canary whose version (the rollout state's stable "
        "one) Triton does not serve, answered by the model's declared stable version",
        ["stage", "version"],
        registry=registry,
    )
    return rows, seconds, unavailable


def start_rollouts(
    steps: Sequence[Any],
    brokers: str,
    worker: str,
    *,
    config: Mapping[str, Any] | None = None,
    registry: Any = None,
) -> Rollouts | None:
    """Make the worker's version routers follow their models' rollout state: read it once now
    (before the first batch), then watch it; publish their counts every second. None when no
    step calls a model under canary."""
    routers = [s.batcher for s in steps if isinstance(getattr(s, "batcher", None), VersionRouter)]
    if not routers:
        return None
    if registry is not None:
        rows, seconds, unavailable = _metrics(registry)
        for router in routers:

            def observe(
                version: int, count: int, errors: int, fallback: int, taken: float,
                stage: str = router.stage,
            ) -> None:  # fmt: skip
                label = str(version)
                if count:
                    rows.labels(stage, label, "ok").inc(count - errors)
                    seconds.labels(stage, label).observe(taken)
                if errors:
                    rows.labels(stage, label, "error").inc(errors)
                if fallback:
                    rows.labels(stage, label, "fallback").inc(fallback)

            router.observe = observe
            router.unavailable = lambda version, count, stage=router.stage: unavailable.labels(
                stage, str(version)
            ).inc(count)
    from rtflow.stages.kafka_io import producer as make_producer

    settings = dict(config or {})
    producer = make_producer(brokers, **settings)
    by_topic: dict[str, list[VersionRouter]] = {}
    for router in routers:
        assert router.model.canary is not None
        by_topic.setdefault(router.model.canary.topic, []).append(router)
    watches = []
    for topic, followers in by_topic.items():

        def on_record(key: str, value: Any, followers: list[VersionRouter] = followers) -> None:
            for router in followers:
                if key == router.model.name and value is not None:
                    router.follow(RolloutState.from_json(value))

        def publish(topic: str = topic, followers: list[VersionRouter] = followers) -> None:
            models = sorted({r.model.name for r in followers})
            for model in models:
                mine = [r for r in followers if r.model.name == model]
                record = {"model": model, "worker": worker, "at": time.time(),
                          "versions": _merged(mine)}  # fmt: skip
                producer.produce(topic, key=stats_key(model, worker).encode(),
                                 value=_json(record))  # fmt: skip
            producer.poll(0)

        watch = TopicWatch(brokers, topic, on_record, settings, every=[(STATS_SECONDS, publish)])
        watch.start()  # creates the topic when it is not there yet
        for key, value in read_topic(brokers, topic, settings).items():
            on_record(key, value)
        watches.append(watch)
    return Rollouts(watches, producer)


def _json(value: Any) -> bytes:
    import json

    return json.dumps(value, separators=(",", ":")).encode()
