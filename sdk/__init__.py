"""rtflow: write a real-time AI pipeline once in Python, compile it to what Argo CD syncs.

The public surface: ``stage``, ``container`` and ``pipeline`` declare; ``when``,
``otherwise``, ``for_each``, ``approval``, ``http`` and ``on_exit`` shape the graph inside a
pipeline function, ``infer``, ``route`` and ``generate`` call models on Triton (``canary``
declares how a model's new versions roll out, ``canary_rollout`` builds their controller); ``drift``
watches a stream pipeline's value against a ``Reference`` and ``on_drift`` triggers the
retraining; ``Retry``,
``Backoff``,
``Secret``, ``Param`` and ``Output`` are option values; ``kafka``, ``webhook`` and
``calendar`` declare triggers, with ``field``, ``payload``, ``Delivery`` and ``SecretKey``;
``Environment`` and ``ArgoCD`` say where the compiled output is deployed.
"""

from rtflow.argocd import ArgoCD
from rtflow.canary_controller import canary_rollout
from rtflow.canary_policy import Canary, canary
from rtflow.drift import Reference, drift, on_drift
from rtflow.egress import Egress
from rtflow.environments import Environment
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
    "Canary",
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
    "Reference",
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
    "canary",
    "canary_rollout",
    "configure",
    "constant",
    "container",
    "drift",
    "field",
    "for_each",
    "generate",
    "history",
    "http",
    "infer",
    "kafka",
    "on_drift",
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
