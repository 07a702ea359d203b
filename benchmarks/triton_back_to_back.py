"""Triton called back to back, as a stream worker calls it: where half-second stalls come from.

    python benchmarks/triton_back_to_back.py --write     # about 3.5 minutes; BENCHMARKS.md

A stream worker makes one blocking gRPC call per micro-batch and sends the next one as soon as
the answer is in. Against a model with Triton's dynamic batcher and **one** instance, some of
those calls take about 500 ms: the next request arrives while the previous batch is still being
released, no free slot wakes the batcher, and the batcher sleeps out its idle timeout
(``default_wait_microseconds = 500 * 1000`` in Triton core's ``dynamic_batch_scheduler.cc``;
the slot wait and the completion's notify share no lock, so the wake-up can be lost). Triton's
own request trace shows the 500 ms between QUEUE_START and COMPUTE_START.

This measures the example's fraud scorer (``examples/models/fraud_scorer.py``, Python backend,
CPU) in three declarations, each on a fresh local Triton (the nvidia-pytriton wheel, loopback):
one instance with the dynamic batcher (the example's declaration before this was measured), two
instances with it (the example's now), one instance without it. One client, blocking
``tritonclient.grpc`` calls of ``ROWS`` rows (the stream benchmark's mean batch), back to back.
No assertion: the numbers are the output.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
HEADING = "## Triton called back to back (`benchmarks/triton_back_to_back.py`)"
ROWS = 130
STALL_MS = 400.0


@dataclasses.dataclass
class Result:
    name: str
    calls: int
    seconds: float
    p50: float
    p99: float
    worst: float
    stalls: int

    @property
    def stalls_per_minute(self) -> float:
        return self.stalls / self.seconds * 60.0


def variants() -> list[tuple[str, object]]:
    from models.fraud_scorer import FRAUD_SCORER

    from rtflow.gpu.models import InstanceGroup

    def instances(count: int) -> tuple[InstanceGroup, ...]:
        return tuple(dataclasses.replace(g, count=count) for g in FRAUD_SCORER.instance_groups)

    return [
        ("1 instance, dynamic batcher", dataclasses.replace(FRAUD_SCORER, instance_groups=instances(1))),
        ("2 instances, dynamic batcher", dataclasses.replace(FRAUD_SCORER, instance_groups=instances(2))),
        (
            "1 instance, no dynamic batcher",
            dataclasses.replace(FRAUD_SCORER, instance_groups=instances(1), dynamic_batching=None),
        ),
    ]  # fmt: skip


def measure(name: str, model: object, seconds: float) -> Result:
    import numpy as np
    import tritonclient.grpc as grpcclient  # type: ignore[import-untyped, unused-ignore]

    from rtflow.gpu.triton_server import TritonServer
    from rtflow.stages.inference import write_local_repository

    folder = Path(tempfile.mkdtemp(prefix="rtflow-back-to-back-"))
    models = ROOT / "examples" / "models"  # where the scorer's version folder is
    repository = write_local_repository([model], folder / "models", extra_bases=[models])  # type: ignore[list-item]
    server = TritonServer(
        repository, http_port=0, grpc_port=0, metrics_port=0, work_dir=folder / "server"
    ).start()
    try:
        client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{server.grpc_port}")
        data = np.random.default_rng(3).random((ROWS, 5), dtype=np.float32)
        for _ in range(200):  # warm-up, not counted
            request = grpcclient.InferInput("features", list(data.shape), "FP32")
            request.set_data_from_numpy(data)
            client.infer("fraud-scorer", [request], client_timeout=5)
        latencies: list[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            request = grpcclient.InferInput("features", list(data.shape), "FP32")
            request.set_data_from_numpy(data)
            sent = time.perf_counter()
            client.infer("fraud-scorer", [request], client_timeout=5)
            latencies.append((time.perf_counter() - sent) * 1000.0)
        elapsed = time.perf_counter() - start
        client.close()
    finally:
        server.close()
    ordered = sorted(latencies)
    result = Result(
        name,
        len(latencies),
        elapsed,
        statistics.median(ordered),
        ordered[int(len(ordered) * 0.99)],
        ordered[-1],
        sum(1 for x in latencies if x >= STALL_MS),
    )
    print(
        f"{name:32} {result.calls:>7,} calls  p50 {result.p50:5.2f}  p99 {result.p99:6.2f}  "
        f"max {result.worst:7.1f} ms  calls >= {STALL_MS:g} ms: {result.stalls} "
        f"({result.stalls_per_minute:.1f}/min)",
        flush=True,
    )
    return result


def section(results: list[Result], seconds: float, repeat: int) -> str:
    lines = [
        HEADING,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on this machine ({os.cpu_count()} cores, "
        f"{platform.machine()}, Python {platform.python_version()}): the example's fraud scorer "
        f"(Python backend, CPU) on a local Triton, one client making blocking gRPC calls of "
        f"{ROWS} rows back to back, as a stream worker does; {seconds:g} s per declaration, "
        f"{repeat} round(s), each on a fresh server. Command: "
        "`python benchmarks/triton_back_to_back.py --write`.",
        "",
        f"| declaration | calls | p50 ms | p99 ms | worst ms | calls >= {STALL_MS:g} ms "
        "| per minute |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.calls:,} | {r.p50:.2f} | {r.p99:.2f} | {r.worst:.1f} "
            f"| {r.stalls} | {r.stalls_per_minute:.1f} |"
        )
    lines += [
        "",
        "A call of about 500 ms is Triton's dynamic batcher sleeping out its idle timeout after "
        "a lost wake-up (the request's trace: 500 ms from QUEUE_START to COMPUTE_START). A "
        "second instance leaves a slot free when the next request comes; without the batcher, "
        "requests go to the instance directly (and each call is faster: no hand-off to the "
        "batcher thread), but concurrent requests from several workers are then not merged. "
        "The example declares two instances.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the declarations")
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    options = parser.parse_args(argv)
    results: dict[str, list[Result]] = {}
    for _ in range(options.repeat):
        for name, model in variants():
            results.setdefault(name, []).append(measure(name, model, options.seconds))
    merged = [
        Result(
            name,
            sum(r.calls for r in runs),
            sum(r.seconds for r in runs),
            statistics.median(r.p50 for r in runs),
            max(r.p99 for r in runs),
            max(r.worst for r in runs),
            sum(r.stalls for r in runs),
        )
        for name, runs in results.items()
    ]
    if options.write:
        from bench_report import replace_section

        replace_section(HEADING, section(merged, options.seconds, options.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
