"""Pipelines that send text through a real Triton: a ``str`` from the event into a
``TYPE_STRING`` tensor (http and gRPC), and the text read back by a downstream stage.

The model (``shout/1/model.py``) upper-cases its input and counts its characters.
"""

from __future__ import annotations

from typing import Any

import rtflow
from rtflow.gpu.models import triton_model
from rtflow.gpu.server import triton_image, triton_serving
from rtflow.gpu.tensors import Tensor
from rtflow.stages.builtin.kafka_publish import kafka_publish

SHOUT = triton_model(
    "shout",
    backend="python",
    max_batch_size=8,
    inputs=[Tensor("text", "TYPE_STRING", (1,))],
    outputs=[Tensor("upper", "TYPE_STRING", (1,)), Tensor("length", "TYPE_INT64", (1,))],
    repository="pvc://triton-models/text",
    versions={1: "shout/1"},
)
SERVER = triton_serving(
    "text-triton",
    [SHOUT],
    cpu="1",
    memory="1Gi",
    # Pinned, as a cluster should run it (a fictional digest: no registry is reached).
    image=f"{triton_image('24.10')}@sha256:6f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5",
)


@rtflow.stage(image="ghcr.io/acme/text:1.0")
def greeting(name: str) -> str:
    return f'hello "{name}"'


@rtflow.stage(image="ghcr.io/acme/text:1.0")
def read_back(shouted: dict[str, Any], message: str) -> dict[str, Any]:
    """What a downstream stage does with the answer: reads the text and the count."""
    outputs = {o["name"]: o for o in shouted["outputs"]}
    return {
        "sent": message,
        "upper": outputs["upper"]["data"][0],
        "length": outputs["length"]["data"][0],
    }


@rtflow.pipeline(name="text-http", namespace="text")
def text_http(message: str) -> None:
    shouted = rtflow.infer(SERVER, SHOUT, {"text": message}, name="shout", timeout="5s")
    read_back(shouted, message)


@rtflow.pipeline(name="text-grpc", namespace="text")
def text_grpc(message: str) -> None:
    shouted = rtflow.infer(
        SERVER, SHOUT, {"text": [message]}, name="shout", timeout="5s", via="grpc"
    )
    read_back(shouted, message)


@rtflow.pipeline(name="text-output", namespace="text")
def text_output(name: str) -> None:
    """A stage's str output, in a list literal, into the model."""
    message = greeting(name)
    shouted = rtflow.infer(SERVER, SHOUT, {"text": [message]}, name="shout", timeout="5s")
    read_back(shouted, message)


@rtflow.pipeline(
    name="text-stream",
    namespace="text",
    latency_budget_ms=2_000,
    triggers=[
        rtflow.kafka(
            "messages",
            brokers=["kafka:9092"],
            consumer_group="text",
            inputs={"message": "body.message"},
        )
    ],
    stream=rtflow.Stream(
        # Pinned, as a cluster should run it (a fictional digest: no registry is reached).
        image="ghcr.io/acme/text/stream:test@sha256:c01144f49a36aa24115b0f3445dc819043b69e4f1eb3ebee62414688401256af",
    ),
)
def text_stream(message: str) -> None:
    """The stream plane: the event's text to the model, read back, published with a payload
    literal that holds outputs and the input."""
    shouted = rtflow.infer(SERVER, SHOUT, {"text": message}, name="shout", timeout="5s")
    answer = read_back(shouted, message)
    publish = rtflow.configure(kafka_publish, name="publish")
    publish(
        topic="shouted",
        payload={
            "answer": answer,
            "message": message,
            "tags": [message],
            "upper": shouted.output("upper"),
        },
    )


@rtflow.stage(image="ghcr.io/acme/text:1.0")
def summary(upper: list[str], length: list[int], message: str) -> str:
    """Reads two picked outputs, typed: no KServe answer to parse."""
    return f"{message!r} -> {upper[0]!r} ({length[0]} characters)"


@rtflow.pipeline(name="text-pick", namespace="text")
def text_pick(message: str) -> None:
    shouted = rtflow.infer(SERVER, SHOUT, {"text": message}, name="shout", timeout="5s")
    summary(upper=shouted.output("upper"), length=shouted.output("length"), message=message)


@rtflow.pipeline(name="text-pick-grpc", namespace="text")
def text_pick_grpc(message: str) -> None:
    shouted = rtflow.infer(SERVER, SHOUT, {"text": message}, name="shout", timeout="5s", via="grpc")
    summary(upper=shouted.output("upper"), length=shouted.output("length"), message=message)
