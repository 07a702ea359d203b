"""The fraud example's models, the GPU pool they run on and the Triton server serving them.

* ``fraud-scorer``: the Python-backend logistic scorer in ``fraud-scorer/1/model.py`` (numpy, so
  it also runs on a CPU-only Triton locally and in the tests); its ``config.pbtxt`` is generated.
* ``graph-risk``: an ONNX model served from S3 (config only: its weights live in the bucket).

Write the model repository for a local Triton::

    python -c "import fraud_scorer as f; f.write_local_repository('/tmp/fraud-repo')"
"""

from __future__ import annotations

from pathlib import Path

from rtflow.gpu.config import write_repository
from rtflow.gpu.models import (
    DynamicBatching,
    InstanceGroup,
    QueuePolicy,
    Tensor,
    VersionPolicy,
    Warmup,
    model_repository,
    triton_model,
)
from rtflow.gpu.pools import gpu_pool
from rtflow.gpu.serving import Autoscaling, triton_serving

HERE = Path(__file__).resolve().parent
"""Version folders below are relative to this folder (pass it as ``base``)."""

FEATURES = ("log_amount", "foreign", "night", "card_not_present", "new_merchant")
WEIGHTS = (0.9, 1.4, 0.8, 1.1, 1.3)
BIAS = -7.0

POOL = gpu_pool(
    "l4",
    product="NVIDIA-L4",
    gpus_per_pod=1,
    cloud="gke",
    accelerator="nvidia-l4",
)

FRAUD_SCORER = triton_model(
    "fraud-scorer",
    backend="python",
    inputs=[Tensor("features", "TYPE_FP32", (len(FEATURES),))],
    outputs=[Tensor("risk", "TYPE_FP32", (1,))],
    # Sized for the stream plane, whose workers send micro-batches of up to max_batch_size
    # rows: a short queue delay only, so Triton merges concurrent requests without holding them.
    # Preferred sizes of 8/16 and a 20 ms REJECT queue policy (the settings of one-row http
    # calls) split those batches and time them out under load: measured at 20,000 events/s,
    # p99 1.1 s against 25 ms (BENCHMARKS.md).
    max_batch_size=1024,
    dynamic_batching=DynamicBatching(
        max_queue_delay_microseconds=500,
        default_queue_policy=QueuePolicy(max_queue_size=4096),
    ),
    # Two instances on the GPU: with one, a request that arrives while the previous batch is
    # being released can wait out the dynamic batcher's 500 ms idle timeout (a lost wake-up in
    # Triton's scheduler, measured: BENCHMARKS.md); with a second one a slot is free.
    instance_groups=[InstanceGroup(count=2, kind="KIND_GPU")],
    version_policy=VersionPolicy.latest(1),
    warmup=Warmup(batch_size=1, data="zero"),
    repository="pvc://triton-models/fraud",
    versions={1: "fraud-scorer/1"},
)

GRAPH_RISK = triton_model(
    "graph-risk",
    platform="onnxruntime_onnx",
    inputs=[Tensor("edges", "TYPE_INT64", (-1, 2)), Tensor("node_features", "TYPE_FP32", (-1, 16))],
    outputs=[Tensor("graph_risk", "TYPE_FP32", (1,))],
    max_batch_size=32,
    dynamic_batching=DynamicBatching(
        preferred_batch_sizes=(16, 32), max_queue_delay_microseconds=2_000
    ),
    instance_groups=[InstanceGroup(count=2, kind="KIND_GPU", gpus=(0,))],
    version_policy=VersionPolicy.specific(3),
    warmup=Warmup(batch_size=1, data="random", dims={"edges": (8, 2), "node_features": (4, 16)}),
    repository=model_repository(
        "s3://acme-fraud-models/triton", secret="fraud-models-s3", region="eu-west-1"
    ),
    versions=[3],
)

SERVER = triton_serving(
    "fraud-triton",
    [FRAUD_SCORER, GRAPH_RISK],
    pool=POOL,
    cpu="2",
    memory="8Gi",
    part_of="fraud-detection",
    autoscaling=Autoscaling(
        "queue_time", target=2_000, min_replicas=1, max_replicas=4, model="fraud-scorer"
    ),
)


def write_local_repository(destination: str | Path) -> Path:
    """The Python-backend model's repository for a CPU-only local Triton."""
    return write_repository([FRAUD_SCORER], destination, base=HERE, cpu_only=True)
