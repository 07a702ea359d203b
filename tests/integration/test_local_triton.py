"""``rtflow run --local`` against a real Triton (the nvidia-pytriton wheel's, on CPU).

The executor starts Triton itself from the pipeline's model declarations, sends the compiled
http step and runs the gRPC client stage against it; and a Triton killed and restarted mid-run
loses no event.
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import component_missing
from local_pipelines import scoring

from rtflow.gpu import triton_server as ts
from rtflow.stages.events import Event, ListSource, MemorySink
from rtflow.stages.inference import local_triton_server, needs_triton
from rtflow.stages.local import run_local

pytestmark = pytest.mark.integration

WEIGHTS = (0.9, 1.4, 0.8, 1.1, 1.3)
BIAS = -7.0


@pytest.fixture(autouse=True)
def triton_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTFLOW_TEST_STATE", str(tmp_path))
    try:
        ts.locate_triton()
        ts.check_numpy()
    except ts.TritonUnavailable as exc:
        component_missing(str(exc))


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def expected(features: list[float]) -> float:
    z = BIAS + sum(w * f32(x) for w, x in zip(WEIGHTS, features, strict=True))
    return f32(1.0 / (1.0 + math.exp(-z)))


def rows(n: int) -> list[list[float]]:
    return [
        [math.log1p(7.0 * (i + 1)), float(i % 2), float(i % 5 == 0), float(i % 3 == 0), 0.0]
        for i in range(n)
    ]


@pytest.mark.parametrize("pipeline", [scoring.scoring, scoring.scoring_grpc], ids=["http", "grpc"])
def test_a_local_triton_started_from_the_declarations_scores_every_event(
    pipeline: Any, tmp_path: Path
) -> None:
    features = rows(30)
    out, dead = MemorySink(), MemorySink()
    summary = run_local(
        pipeline.build(),
        ListSource([{"features": f} for f in features]),
        output=out,
        dead_letter=dead,
        max_in_flight=4,
        log_dir=tmp_path / "logs",
    )
    assert summary.failed == 0, summary.failures
    assert summary.triton is not None and summary.triton.startswith("local Triton at http://")
    by_event = {r["event"]: r for r in out.records}
    for index, f in enumerate(features):
        got = by_event[f"event:{index}"]["outputs"]["risk-of"]["result"]
        assert got == pytest.approx(expected(f), rel=1e-6, abs=1e-7)
    assert any(r["outputs"]["risk-of"]["result"] > 0.5 for r in out.records)  # not vacuous


class PacedSource:
    """Events a few milliseconds apart, each marked with whether Triton was back when read."""

    def __init__(self, bodies: list[Any], gap: float, back: threading.Event) -> None:
        self.bodies = bodies
        self.gap = gap
        self.back = back
        self.total = len(bodies)
        self.read_after_restart: set[str] = set()
        self.read = 0

    def __iter__(self) -> Iterator[Event]:
        for index, body in enumerate(self.bodies):
            event_id = f"event:{index}"
            if self.back.is_set():
                self.read_after_restart.add(event_id)
            self.read += 1
            yield Event(event_id, body)
            time.sleep(self.gap)


def test_triton_killed_and_restarted_mid_run_loses_no_event(tmp_path: Path) -> None:
    pipeline = scoring.scoring.build()
    server = local_triton_server(
        pipeline, needs_triton(pipeline), work_dir=tmp_path / "triton", exit_timeout=1
    )
    features = rows(700)
    back = threading.Event()
    source = PacedSource([{"features": f} for f in features], 0.005, back)
    restarted: list[float] = []

    def kill_and_restart() -> None:
        while source.read < 150:
            time.sleep(0.01)
        assert server._process is not None
        server._process.kill()  # a crash, not a clean stop
        time.sleep(6.0)  # longer than the stage's retries (0.5 + 1 + 2 s): some events give up
        server.stop()
        server.start()
        restarted.append(time.monotonic())
        back.set()

    out, dead = MemorySink(), MemorySink()
    chaos = threading.Thread(target=kill_and_restart)
    try:
        server.start()
        chaos.start()
        summary = run_local(
            pipeline,
            source,
            output=out,
            dead_letter=dead,
            max_in_flight=8,
            triton=server,
            log_dir=tmp_path / "logs",
        )
        chaos.join()
    finally:
        server.close()
    ok = {r["event"] for r in out.records}
    failed = {r["event"]: r["reason"] for r in dead.records}
    everything = {f"event:{i}" for i in range(len(features))}
    assert len(out.records) + len(dead.records) == len(features)  # each event once
    assert ok | set(failed) == everything and not ok & set(failed)  # none lost
    assert restarted and len(source.read_after_restart) > 100
    assert failed, "a 6 s outage must exhaust some events' retries"
    for reason in failed.values():
        assert reason.startswith("task score failed after 4 attempt(s)"), reason
        assert "/v2/models/fraud-scorer/infer" in reason
    assert source.read_after_restart <= ok  # after the restart every event succeeds again
    assert summary.events == len(features)
