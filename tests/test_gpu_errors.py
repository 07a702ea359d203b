"""Every wrong GPU/Triton declaration fails at once, in one line that names the field and a fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rtflow.errors import DefinitionError
from rtflow.gpu.kserve import infer_request
from rtflow.gpu.models import triton_model
from rtflow.gpu.pools import gpu_pool
from rtflow.gpu.repository import model_repository
from rtflow.gpu.scheduling import DynamicBatching, InstanceGroup, QueuePolicy, VersionPolicy, Warmup
from rtflow.gpu.server import Autoscaling, triton_serving


def model(**overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "backend": "python",
        "inputs": [("features", "FP32", [5])],
        "outputs": [("risk", "FP32", [1])],
        "repository": "pvc://models/fraud",
        "max_batch_size": 8,
    }
    kwargs.update(overrides)
    return triton_model(kwargs.pop("name", "scorer"), **kwargs)


def gpu_model() -> Any:
    return model(instance_groups=[InstanceGroup(count=1, kind="KIND_GPU", gpus=(0, 1))])


CASES: list[tuple[str, Callable[[], object], str, str]] = [
    # the list
    (
        "MIG profile on a pool without MIG",
        lambda: gpu_pool("l4", product="NVIDIA-L4", mig_profile="1g.5gb", mig_strategy="single"),
        "mig_profile",
        "has no MIG",
    ),
    (
        "mixed-strategy profile not in the known list",
        lambda: gpu_pool("slices", mig_profile="1g.7gb", mig_strategy="mixed"),
        "mig_profile",
        "no node offers nvidia.com/mig-1g.7gb",
    ),
    (
        "instance-group GPUs beyond GPUs per pod",
        lambda: triton_serving("t", [gpu_model()], pool=gpu_pool("one", gpus_per_pod=1)),
        "models[scorer].instance_groups[0].gpus",
        "uses GPU index(es) [1]",
    ),
    (
        "GPU model with no pool",
        lambda: triton_serving("t", [gpu_model()]),
        "pool",
        "has no GPU pool",
    ),
    (
        "TensorRT model with no pool",
        lambda: triton_serving(
            "t",
            [model(backend=None, platform="tensorrt_plan", instance_groups=())],
        ),
        "pool",
        "GPU-only",
    ),
    (
        "dims mismatch in an infer body",
        lambda: infer_request(model(), {"features": [[1.0, 2.0, 3.0]]}),
        "inputs.features",
        "has shape [1, 3], but the model takes [batch<=8, 5]",
    ),
    (
        "dtype mismatch in an infer body",
        lambda: infer_request(model(), {"features": [["x", 0, 0, 0, 0]]}),
        "inputs.features",
        "is FP32, but holds 'x'",
    ),
    (
        "bad repository scheme",
        lambda: model(repository="http://models.example.com/triton"),
        "repository",
        "scheme 'http://'",
    ),
    ("repository with no bucket", lambda: model(repository="s3://"), "repository", "names no"),
    ("bad bucket", lambda: model(repository="gs://Bad_Bucket!/x"), "repository", "bucket name"),
    ("bad claim", lambda: model(repository="pvc://Claim_1/x"), "repository", "PersistentVolume"),
    ("path escape", lambda: model(repository="s3://bucket/../x"), "repository", "'..'"),
    (
        "credentials for a PVC",
        lambda: model_repository("pvc://claim", secret="creds"),
        "repository",
        "takes no secret",
    ),
    (
        "bad region",
        lambda: model_repository("s3://bucket/x", region="Mars"),
        "repository.region",
        "not an AWS region",
    ),
    # out-of-range values
    ("gpus per pod", lambda: gpu_pool("p", gpus_per_pod=64), "gpus_per_pod", "out of range"),
    ("max batch size", lambda: model(max_batch_size=-1), "max_batch_size", "out of range"),
    (
        "preferred batch above max",
        lambda: model(dynamic_batching=DynamicBatching(preferred_batch_sizes=(16,))),
        "dynamic_batching.preferred_batch_sizes",
        "preferred batch size 16 is out of range",
    ),
    (
        "negative queue delay",
        lambda: model(dynamic_batching=DynamicBatching(max_queue_delay_microseconds=-5)),
        "dynamic_batching.max_queue_delay_microseconds",
        "out of range",
    ),
    (
        "batching without a batch dimension",
        lambda: model(max_batch_size=0, dynamic_batching=True),
        "dynamic_batching",
        "needs max_batch_size > 0",
    ),
    (
        "queue policy action",
        lambda: model(
            dynamic_batching=DynamicBatching(
                default_queue_policy=QueuePolicy(timeout_action="DROP")  # type: ignore[arg-type]
            )
        ),
        "dynamic_batching.default_queue_policy.timeout_action",
        "not REJECT or DELAY",
    ),
    (
        "queue size",
        lambda: model(
            dynamic_batching=DynamicBatching(default_queue_policy=QueuePolicy(max_queue_size=-1))
        ),
        "dynamic_batching.default_queue_policy.max_queue_size",
        "out of range",
    ),
    (
        "instance count",
        lambda: model(instance_groups=[InstanceGroup(count=0)]),
        "instance_groups[0].count",
        "out of range",
    ),
    (
        "gpus on a CPU group",
        lambda: model(instance_groups=[InstanceGroup(kind="KIND_CPU", gpus=(0,))]),
        "instance_groups[0].gpus",
        "is KIND_CPU",
    ),
    (
        "instance kind",
        lambda: model(instance_groups=[InstanceGroup(kind="KIND_TPU")]),  # type: ignore[arg-type]
        "instance_groups[0].kind",
        "not KIND_GPU",
    ),
    ("dims zero", lambda: model(inputs=[("x", "FP32", [0])]), "inputs[x].dims", "out of range"),
    ("dims empty", lambda: model(inputs=[("x", "FP32", [])]), "inputs[x].dims", "non-empty"),
    ("dtype", lambda: model(inputs=[("x", "FLOAT128", [1])]), "inputs[x].data_type", "TYPE_FP32"),
    ("tensor name", lambda: model(inputs=[("1x", "FP32", [1])]), "inputs[0]", "not valid"),
    (
        "duplicate tensor",
        lambda: model(inputs=[("x", "FP32", [1]), ("x", "FP32", [2])]),
        "inputs[x]",
        "two inputs",
    ),
    (
        "input and output share a name",
        lambda: model(outputs=[("features", "FP32", [1])]),
        "outputs[features]",
        "both an input and an output",
    ),
    ("platform as backend", lambda: model(backend="onnxruntime_onnx"), "backend", "platform="),
    (
        "unknown platform",
        lambda: model(backend=None, platform="onnx"),
        "platform",
        "not a Triton platform",
    ),
    (
        "backend and platform",
        lambda: model(platform="onnxruntime_onnx"),
        "backend",
        "exactly one",
    ),
    (
        "latest zero versions",
        lambda: model(version_policy=VersionPolicy.latest(0)),
        "version_policy",
        "out of range",
    ),
    (
        "specific version not declared",
        lambda: model(version_policy=VersionPolicy.specific(2), versions=[1]),
        "version_policy",
        "versions lacks",
    ),
    ("version zero", lambda: model(versions=[0]), "versions", "out of range"),
    (
        "warm-up of a variable dim",
        lambda: model(inputs=[("x", "FP32", [-1])], warmup="zero"),
        "warmup[0].dims",
        "needs concrete dims",
    ),
    (
        "warm-up batch",
        lambda: model(warmup=Warmup(batch_size=9)),
        "warmup[0].batch_size",
        "out of range",
    ),
    ("warm-up data", lambda: model(warmup="ones"), "warmup[0].data", "'zero' or 'random'"),
    ("model name", lambda: model(name="Fraud_Scorer"), "name", "use 'fraud-scorer'"),
    ("replicas", lambda: triton_serving("t", [model()], replicas=0), "replicas", "out of range"),
    (
        "memory below request",
        lambda: triton_serving("t", [model()], memory="4Gi", memory_limit="2Gi"),
        "memory_limit",
        "below the request",
    ),
    ("memory unit", lambda: triton_serving("t", [model()], memory="4GB"), "memory", "'4Gi'"),
    (
        "autoscaling bounds",
        lambda: triton_serving("t", [model()], autoscaling=Autoscaling("queue_time", 1000, 5, 2)),
        "autoscaling.min_replicas",
        "above max_replicas",
    ),
    (
        "autoscaling target",
        lambda: triton_serving("t", [model()], autoscaling=Autoscaling("pending_requests", 0)),
        "autoscaling.target",
        "out of range",
    ),
    (
        "autoscaling metric",
        lambda: triton_serving("t", [model()], autoscaling=Autoscaling("gpu_util", 80)),  # type: ignore[arg-type]
        "autoscaling.metric",
        "queue_time",
    ),
    (
        "autoscaling model",
        lambda: triton_serving(
            "t", [model()], autoscaling=Autoscaling("queue_time", 10, model="other")
        ),
        "autoscaling.model",
        "does not serve",
    ),
    (
        "autoscaling window",
        lambda: triton_serving(
            "t", [model()], autoscaling=Autoscaling("queue_time", 10, window="5")
        ),
        "autoscaling.window",
        "Prometheus range",
    ),
    ("server name", lambda: triton_serving("1triton", [model()]), "name", "starts with a digit"),
    ("image", lambda: triton_serving("t", [model()], image="tritonserver"), "image", "tag"),
    ("no models", lambda: triton_serving("t", []), "models", "serves no models"),
    (
        "two models one name",
        lambda: triton_serving("t", [model(), model(max_batch_size=4)]),
        "models",
        "two models named 'scorer'",
    ),
    (
        "two sets of s3 credentials",
        lambda: triton_serving(
            "t",
            [
                model(name="a", repository=model_repository("s3://bucket/a", secret="one")),
                model(name="b", repository=model_repository("s3://bucket/b", secret="two")),
            ],
        ),
        "models",
        "different s3:// credentials",
    ),
    (
        "rtflow's own label",
        lambda: triton_serving("t", [model()], labels={"app.kubernetes.io/managed-by": "me"}),
        "labels",
        "set by rtflow",
    ),
]


@pytest.mark.parametrize(
    ("declare", "field", "message"),
    [pytest.param(declare, field, message, id=name) for name, declare, field, message in CASES],
)
def test_one_line_error_naming_the_field(
    declare: Callable[[], object], field: str, message: str
) -> None:
    with pytest.raises(DefinitionError) as info:
        declare()
    error = info.value
    text = str(error)
    assert error.field == field, text
    assert message in text
    assert "\n" not in text
    assert text.startswith(f"field {field!r}: ")
    assert error.fix and error.fix in text


def test_errors_locate_into_a_pipeline_stage() -> None:
    with pytest.raises(DefinitionError) as info:
        infer_request(model(), {"features": [[1.0]]}, stage="score")
    located = info.value.located(pipeline="fraud-detection")
    assert str(located).startswith(
        "pipeline 'fraud-detection', stage 'score', field 'inputs.features': model 'scorer':"
    )
