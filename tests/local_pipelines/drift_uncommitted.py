"""The retraining trigger of tests/local_pipelines/drift.py with one thing changed: its topic is
read ``read_uncommitted`` (Sarama's default, no ``isolationLevel`` in the EventSource's
``config``). Everything else is ``rtflow.on_drift``'s: the same topic, the ``body.crossed ==
true`` filter, the same inputs; its own consumer group. tests/integration/
test_drift_trigger_events.py deploys it beside ``drift_retrain`` to show what
``read_committed`` changes: an aborted transaction's crossing starts a retraining here.

The same environment as drift.py: ``$RTFLOW_TEST_BROKERS``, ``$RTFLOW_TEST_DRIFT_RUN``.
"""

from __future__ import annotations

import dataclasses
import os

import rtflow

BROKERS = os.environ.get("RTFLOW_TEST_BROKERS", "kafka.kafka.svc:9092")
RUN = os.environ.get("RTFLOW_TEST_DRIFT_RUN", "")
DRIFT_TOPIC = f"drift-scoring-drift{RUN}"  # drift.py's
RETRAIN_IMAGE = (
    "ghcr.io/acme/retrain:1.0"
    "@sha256:7e2b9d4f1a6c8e3b5d0f2a7c9e4b1d6f8a3c5e0b2d7f9a1c4e6b8d0f3a5c7e9b"
)

ON_DRIFT = rtflow.on_drift(
    DRIFT_TOPIC,
    brokers=BROKERS,
    consumer_group=f"drift-retrain-uncommitted{RUN}",
    inputs={"drift": "body.drift", "psi": "body.value"},
)
UNCOMMITTED = dataclasses.replace(ON_DRIFT, source={**ON_DRIFT.source, "read_committed": False})


@rtflow.stage(image=RETRAIN_IMAGE)
def retrain_uncommitted(drift: str, psi: float) -> int:
    return 2


@rtflow.pipeline(name="drift-retrain-uncommitted", namespace="drift", triggers=[UNCOMMITTED])
def drift_retrain_uncommitted(drift: str, psi: float) -> None:
    retrain_uncommitted(drift, psi)
