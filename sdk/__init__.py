"""rtflow: write a real-time AI pipeline once in Python, compile it to what Argo CD syncs.

The public surface: ``stage``, ``container`` and ``pipeline`` declare; ``when``,
``otherwise``, ``for_each``, ``approval``, ``http`` and ``on_exit`` shape the graph inside a
pipeline function, ``infer``, ``route`` and ``generate`` call models on Triton; ``Retry``,
``Backoff``,
``Secret``, ``Param`` and ``Output`` are option values; ``kafka``, ``webhook`` and
``calendar`` declare triggers, with ``field``, ``payload``, ``Delivery`` and ``SecretKey``;
``Environment`` and ``ArgoCD`` say where the compiled output is deployed.
"""

from rtflow.egress import Egress
from rtflow.environments import ArgoCD, Environment
from rtflow.errors import DefinitionError, LoadError, RtflowError
from rtflow.generation import GenerationResult, generate
from rtflow.http_step import http
from rtflow.options import Backoff, Output, Param, Retry, Secret
from rtflow.pipeline import Pipeline, pipeline
from rtflow.recording import (
    InferenceResult,
    approval,
    for_each,
    infer,
    on_exit,
    otherwise,
    when,
    workflow,
)
from rtflow.retrieval import SessionDatabase, VectorDatabase, history, remember, retrieve
from rtflow.routing import route
from rtflow.stage import ContainerStage, configure, container, stage
from rtflow.streams import KafkaTopics, Stream
from rtflow.triggers import (
    DeadLetter,
    Delivery,
    EventBus,
    Sasl,
    SecretKey,
    Tls,
    WebhookTls,
    calendar,
    constant,
    field,
    kafka,
    payload,
    webhook,
)

__all__ = [
    "ArgoCD",
    "Backoff",
    "ContainerStage",
    "DeadLetter",
    "DefinitionError",
    "Delivery",
    "Egress",
    "Environment",
    "EventBus",
    "GenerationResult",
    "InferenceResult",
    "KafkaTopics",
    "LoadError",
    "Output",
    "Param",
    "Pipeline",
    "Retry",
    "RtflowError",
    "Sasl",
    "Secret",
    "SecretKey",
    "SessionDatabase",
    "Stream",
    "Tls",
    "VectorDatabase",
    "WebhookTls",
    "approval",
    "calendar",
    "configure",
    "constant",
    "container",
    "field",
    "for_each",
    "generate",
    "history",
    "http",
    "infer",
    "kafka",
    "on_exit",
    "otherwise",
    "payload",
    "pipeline",
    "remember",
    "retrieve",
    "route",
    "stage",
    "webhook",
    "when",
    "workflow",
]
