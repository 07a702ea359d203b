"""Pipelines: a Python function whose stage calls define the DAG.

``@rtflow.pipeline(name=...)`` turns the function into a ``Pipeline``. Nothing runs until
``build()``: it records the function once with placeholders and returns the validated IR.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rtflow import ir
from rtflow.argocd import ArgoCD
from rtflow.egress import Egress
from rtflow.environments import Environment
from rtflow.options import Retry
from rtflow.streams import Stream
from rtflow.triggers import EventBus, Trigger


@dataclass(frozen=True, eq=False)
class PipelineOptions:
    name: str | None = None
    namespace: str | None = None
    description: str | None = None
    default_image: str | None = None
    parallelism: int | None = None
    latency_budget_ms: int | None = None
    deadline: int | str = 3600
    ttl_after_success: int | str = 3600
    ttl_after_failure: int | str = 86400
    ttl_after_completion: int | str = 604800
    pod_gc: str = "OnPodSuccess"
    default_retry: Retry | None = None
    default_timeout: int | str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None
    triggers: tuple[Trigger, ...] = ()
    event_bus: str | EventBus = "default"
    environments: tuple[Environment, ...] = ()
    argocd: ArgoCD | None = None
    stream: Stream | None = None
    egress: tuple[Egress, ...] = ()


DEFINED: list[Pipeline] = []
"""Every pipeline defined in this process, in order: the loader finds two with one name even
when the second was bound to the same variable as the first (and replaced it there)."""


class Pipeline:
    """A pipeline definition: the recorded function and the options around it."""

    def __init__(self, function: Callable[..., Any], options: PipelineOptions) -> None:
        self.function = function
        self.options = options
        self.__doc__ = function.__doc__
        DEFINED.append(self)

    @property
    def name(self) -> str:
        """The name as given (or derived from the function); checked when built."""
        from rtflow.names import from_identifier

        return self.options.name or from_identifier(self.function.__name__)

    def build(self) -> ir.Pipeline:
        """Record the function and return the validated IR; DefinitionError when it is wrong."""
        from rtflow.ir_builder import build_pipeline

        return build_pipeline(self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"pipeline {self.name!r} is compiled, not called: use `rtflow compile` "
            "or `rtflow run --local`"
        )

    def __repr__(self) -> str:
        return f"<rtflow pipeline {self.name}>"


def pipeline(
    *,
    name: str | None = None,
    namespace: str | None = None,
    description: str | None = None,
    default_image: str | None = None,
    parallelism: int | None = None,
    latency_budget_ms: int | None = None,
    deadline: int | str = 3600,
    ttl_after_success: int | str = 3600,
    ttl_after_failure: int | str = 86400,
    ttl_after_completion: int | str = 604800,
    pod_gc: str = "OnPodSuccess",
    default_retry: Retry | None = None,
    default_timeout: int | str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    service_account: str | None = None,
    triggers: Sequence[Trigger] = (),
    event_bus: str | EventBus = "default",
    environments: Sequence[Environment] = (),
    argocd: ArgoCD | None = None,
    stream: Stream | None = None,
    egress: Sequence[Egress] = (),
) -> Callable[[Callable[..., Any]], Pipeline]:
    """Declare a pipeline. Its parameters (annotated) are the pipeline's inputs.

    ``deadline`` bounds a whole run (activeDeadlineSeconds); ``latency_budget_ms`` is the
    end-to-end budget the hot path is checked against; ``parallelism`` caps concurrent pods.
    ``default_timeout`` is the deadline of every step without its own ``timeout`` (a stage's
    ``activeDeadlineSeconds``, an http or inference step's ``timeoutSeconds``).
    ``triggers`` start runs from events (rtflow.kafka / webhook / calendar) through the Argo
    Events bus ``event_bus``: the name of an existing EventBus, or an rtflow.EventBus to emit.
    ``environments`` (rtflow.Environment) compile to kustomize overlays over the pipeline's base;
    ``argocd`` (rtflow.ArgoCD) names the Git repository Argo CD Applications point at.
    ``stream`` (rtflow.Stream) runs the hot path as long-running Kafka workers, exactly once.
    ``egress`` (rtflow.Egress) opens what the stages themselves call (a database, an API): the
    pipeline's pods are otherwise limited to the flows rtflow derives from its objects.
    """
    options = PipelineOptions(
        name=name,
        namespace=namespace,
        description=description,
        default_image=default_image,
        parallelism=parallelism,
        latency_budget_ms=latency_budget_ms,
        deadline=deadline,
        ttl_after_success=ttl_after_success,
        ttl_after_failure=ttl_after_failure,
        ttl_after_completion=ttl_after_completion,
        pod_gc=pod_gc,
        default_retry=default_retry,
        default_timeout=default_timeout,
        labels=dict(labels or {}),
        annotations=dict(annotations or {}),
        service_account=service_account,
        triggers=tuple(triggers),
        event_bus=event_bus,
        environments=tuple(environments),
        argocd=argocd,
        stream=stream,
        # Not a sequence: kept as given, for the build to refuse with the field named.
        egress=tuple(egress) if isinstance(egress, (list, tuple)) else egress,  # type: ignore[arg-type]
    )

    def wrap(function: Callable[..., Any]) -> Pipeline:
        return Pipeline(function, options)

    return wrap
