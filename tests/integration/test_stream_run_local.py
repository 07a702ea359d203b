"""``rtflow run --local`` on a stream pipeline: the real broker and Triton started here, worker
processes, the events fed from a file, a progress line without a TTY, a summary, and nothing
left running afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from components import component_missing

from rtflow.gpu import triton_server as ts
from rtflow.testing.kafka_broker import KafkaUnavailable, find_jars, find_java

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_run_local_runs_the_fraud_example_on_the_stream_plane(tmp_path: Path) -> None:
    try:
        find_java()
        find_jars()
        ts.locate_triton()
        ts.check_numpy()
    except (KafkaUnavailable, ts.TritonUnavailable) as exc:
        component_missing(str(exc))
    events = tmp_path / "events.jsonl"
    generator = ROOT / "examples" / "models" / "fraud_events.py"
    events.write_text(
        subprocess.run(
            [sys.executable, str(generator), "--count", "3000", "--seed", "5"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    logs = tmp_path / "logs"
    done = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "run", "--local",
         str(ROOT / "examples" / "fraud_detection.py"), "--events", str(events),
         "--workers", "2", "--log-dir", str(logs)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if not line.startswith("%")]
    assert any(line.startswith("stream: fed 3000") for line in lines), lines
    summary = json.loads(lines[-1])
    assert summary["fed"] == 3000
    assert summary["processed"] + summary["filtered"] + summary["dead_lettered"] == 3000
    assert summary["dead_lettered"] > 0, "the sample has invalid events"
    assert summary["handed_off"] > 0, "suspicious transactions go to the workflow plane"
    assert summary["worker_exit_codes"] == [0, 0]
    assert sorted(p.name for p in logs.glob("worker-*.log")) == ["worker-0-0.log", "worker-0-1.log"]
    leftover = subprocess.run(
        ["pgrep", "-f", f"rtflow.stages stream {ROOT / 'examples' / 'fraud_detection.py'}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert leftover.stdout.strip() == "", "a worker outlived rtflow run --local"
