"""The intermediate representation: what a pipeline means, with nothing of how it was written.

Frozen dataclasses, built and validated once by ``rtflow.ir_builder``; every generator may trust
them. Names are already DNS-1123-safe, quantities already checked, collections already sorted, so
the same meaning always gives the same IR and so the same bytes on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rtflow.param_types import ParamType


@dataclass(frozen=True)
class Param:
    """An input of a pipeline or a stage. ``default`` is the Argo text; None means required."""

    name: str
    type: ParamType
    default: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class Output:
    name: str
    type: ParamType
    path: str


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str


@dataclass(frozen=True)
class Backoff:
    duration: str
    factor: int
    max_duration: str | None = None


RetryPolicyName = Literal["Always", "OnFailure", "OnError", "OnTransientError"]


@dataclass(frozen=True)
class Retry:
    limit: int
    policy: RetryPolicyName
    backoff: Backoff | None = None


@dataclass(frozen=True)
class SecretKey:
    secret: str
    key: str


@dataclass(frozen=True)
class EnvVar:
    """A literal value or a Secret reference, never both: credentials come only from Secrets.
    ``file``: the Secret's key is mounted as a file whose path is in ``<name>_FILE``."""

    name: str
    value: str | None = None
    secret: SecretKey | None = None
    file: bool = False


# Values a task argument or a condition can read.


@dataclass(frozen=True)
class Constant:
    text: str


@dataclass(frozen=True)
class PipelineInput:
    name: str


@dataclass(frozen=True)
class TaskOutput:
    """``result``: the producer is an http step, whose output is Argo's ``outputs.result``."""

    task: str
    output: str
    result: bool = False


@dataclass(frozen=True)
class Item:
    """The current element of a fan-out."""


WorkflowFieldName = Literal["name", "namespace", "uid", "status", "duration"]


@dataclass(frozen=True)
class WorkflowField:
    field: WorkflowFieldName


@dataclass(frozen=True)
class JsonObject:
    """A JSON object whose fields are values that are themselves JSON text (lists, dicts,
    numbers): ``{"features": {{tasks.x.outputs.parameters.result}}}``."""

    fields: tuple[tuple[str, Value], ...]


@dataclass(frozen=True)
class JsonList:
    """A JSON array whose items are values that are themselves JSON text: a list literal that
    holds outputs or inputs, ``[{{tasks.x.outputs.parameters.result}},2.0]``."""

    items: tuple[Value, ...]


@dataclass(frozen=True)
class JsonString:
    """A ``str`` value as a JSON string, so that it can sit inside a :class:`JsonList` or
    :class:`JsonObject`: Argo carries a ``str`` parameter as its raw text (``hello``, not
    ``"hello"``), which pasted into JSON would not parse; Argo's ``{{=toJson(...)}}``
    quotes and escapes it."""

    value: PipelineInput | TaskOutput | WorkflowField


@dataclass(frozen=True)
class TensorData:
    """The flat ``data`` of one output tensor of an inference step's KServe v2 answer
    (``scored.output("risk")``): picked by Argo's expression (``find(fromJSON(...).outputs,
    ...)``), so the stage reading it gets a typed list, not the whole answer."""

    answer: TaskOutput | PipelineInput  # a pipeline input once handed off by the stream plane
    tensor: str


Value = (
    Constant
    | PipelineInput
    | TaskOutput
    | Item
    | WorkflowField
    | JsonObject
    | JsonList
    | JsonString
    | TensorData
)

CompareOp = Literal["==", "!=", ">", ">=", "<", "<="]


@dataclass(frozen=True)
class Compare:
    """``quoted`` compares as strings (both sides quoted in the Argo expression)."""

    left: Value
    op: CompareOp
    right: Value
    quoted: bool


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    part: Condition


Condition = Compare | AllOf | AnyOf | Not

StageKind = Literal["function", "container", "approval", "inference", "http"]


@dataclass(frozen=True)
class Inference:
    """An http step against Triton's KServe v2 endpoint; ``body`` holds Argo input tags."""

    server: str
    model: str
    url: str
    body: str
    timeout_seconds: int


@dataclass(frozen=True)
class HttpHeader:
    """A request header: a literal value, or a Secret's key (Argo's ``valueFrom.secretKeyRef``,
    read by Argo's agent when it makes the call)."""

    name: str
    value: str | None = None
    secret: SecretKey | None = None


@dataclass(frozen=True)
class HttpCall:
    """An http step to any URL (``rtflow.http``): Argo's agent makes the call, no pod.
    ``body`` is Argo text (``{{inputs.parameters.body}}``) or None; ``success_status`` the
    status codes that succeed (None: Argo's default, any 2xx)."""

    url: str
    method: str
    headers: tuple[HttpHeader, ...]
    body: str | None
    timeout_seconds: int
    success_status: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Approval:
    """``timeout_seconds``: Argo's ``suspend.duration``; the decision when it passes unanswered
    is ``on_timeout`` (then also the decision of a resume without one, or of a skipped
    approval: Argo fills every unsupplied output from its one ``valueFrom.default``)."""

    choices: tuple[str, ...]
    default: str
    approve: str
    timeout_seconds: int | None = None
    on_timeout: str | None = None

    @property
    def unanswered(self) -> str:
        """The decision nobody supplied: ``on_timeout`` when set, else ``default``."""
        return self.on_timeout if self.on_timeout is not None else self.default


@dataclass(frozen=True)
class Stage:
    """One Argo template: a function or container stage, or an approval (suspend) step."""

    name: str
    kind: StageKind
    inputs: tuple[Param, ...] = ()
    outputs: tuple[Output, ...] = ()
    image: str | None = None
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    function: str | None = None
    resources: Resources | None = None
    retry: Retry | None = None
    deadline_seconds: int | None = None
    env: tuple[EnvVar, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    service_account: str | None = None
    description: str | None = None
    approval: Approval | None = None
    inference: Inference | None = None
    http: HttpCall | None = None

    def output(self, name: str) -> Output:
        return next(o for o in self.outputs if o.name == name)


@dataclass(frozen=True)
class Task:
    """One use of a stage in the DAG. ``fan_out`` is the list the task runs once per item of."""

    name: str
    stage: str
    arguments: tuple[tuple[str, Value], ...] = ()
    depends: tuple[str, ...] = ()
    when: Condition | None = None
    fan_out: Value | None = None


# Triggers: what starts a pipeline (Argo Events).


@dataclass(frozen=True)
class Tls:
    ca_cert: SecretKey | None = None
    client_cert: SecretKey | None = None
    client_key: SecretKey | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class Sasl:
    mechanism: str
    user: SecretKey
    password: SecretKey


@dataclass(frozen=True)
class KafkaSource:
    brokers: tuple[str, ...]
    topic: str
    consumer_group: str
    oldest: bool
    json_body: bool
    tls: Tls | None = None
    sasl: Sasl | None = None
    limit_events_per_second: int | None = None
    version: str | None = None
    read_committed: bool = False  # skip records of aborted transactions (rtflow.on_drift)


@dataclass(frozen=True)
class WebhookSource:
    endpoint: str
    port: int
    method: str
    auth_secret: SecretKey | None = None
    server_cert: SecretKey | None = None  # HTTPS, with the key below
    server_key: SecretKey | None = None
    max_payload_size: int | None = None


@dataclass(frozen=True)
class CalendarSource:
    schedule: str | None
    interval: str | None
    timezone: str


Source = KafkaSource | WebhookSource | CalendarSource


@dataclass(frozen=True)
class InputMapping:
    """Input ``input`` takes the payload field at ``path`` (``default`` when absent); with no
    path, it takes ``default`` on every event."""

    input: str
    path: str | None
    default: str | None = None


DataFilterType = Literal["string", "number", "bool"]


@dataclass(frozen=True)
class DataFilter:
    path: str
    type: DataFilterType
    comparator: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class ExprFilter:
    """An expression over named fields; ``fields`` maps each name to its payload path."""

    expr: str
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    brokers: tuple[str, ...]
    tls: Tls | None = None
    sasl: Sasl | None = None


@dataclass(frozen=True)
class Delivery:
    at_least_once: bool
    retries: int
    backoff: str
    backoff_factor: str
    backoff_jitter: str
    rate_limit: int | None = None
    rate_limit_unit: str = "Second"
    dead_letter: DeadLetter | None = None


@dataclass(frozen=True)
class Trigger:
    name: str
    source: Source
    inputs: tuple[InputMapping, ...] = ()
    data_filters: tuple[DataFilter, ...] = ()
    expr_filters: tuple[ExprFilter, ...] = ()
    delivery: Delivery = field(default_factory=lambda: Delivery(True, 3, "1s", "2", "0.1"))
    payload_schema: tuple[tuple[str, ParamType], ...] = ()
    """Each declared leaf field of the body as a dotted path (``body.amount``) and its type:
    what the stream plane checks every event against (the workflow plane checks paths only)."""


@dataclass(frozen=True)
class EventBus:
    """A NATS JetStream EventBus that rtflow emits (None on the pipeline: use an existing one)."""

    name: str
    replicas: int
    version: str
    storage: str
    storage_class: str | None = None


# The stream plane: long-running Kafka workers for the hot path (rtflow.Stream).

Guarantee = Literal["exactly_once", "at_least_once"]


@dataclass(frozen=True)
class TopicPolicy:
    """How the stream plane's topics are declared on the cluster (Strimzi KafkaTopic)."""

    cluster: str
    replicas: int
    min_insync_replicas: int
    retention_ms: int
    dead_letter_retention_ms: int


@dataclass(frozen=True)
class StreamPlane:
    """How the pipeline's hot path runs as long-running Kafka workers.

    ``hot_tasks`` run inside the workers, in this (topological) order, fused into one process
    except where ``hops`` starts a new group behind a Kafka topic; every other task stays on the
    workflow plane and is reached through ``handoff_topic``.
    """

    source_topic: str
    consumer_group: str
    brokers: tuple[str, ...]
    guarantee: Guarantee
    transaction_interval_ms: int
    max_wait_ms: int
    max_events: int
    inference_batch: tuple[tuple[str, int], ...]  # inference task -> client batch size
    inference_in_flight: int
    dead_letter_topic: str
    handoff_topic: str | None
    results_topic: str | None
    hot_tasks: tuple[str, ...]
    handoff_tasks: tuple[str, ...]
    hops: tuple[str, ...] = ()
    workers: int = 1
    partitions: int = 4
    metrics_port: int = 9400
    target: str = ""  # module:attribute the worker loads the pipeline from
    image: str | None = None
    resources: Resources | None = None
    topics: TopicPolicy | None = None
    prometheus_namespace: str = "monitoring"
    batches_in_flight: int = 1  # started, not yet produced (the worker's pipelining depth)
    generations_in_flight: int = 16  # streamed generations at once, per generate step


# Where the compiled output goes: environments (kustomize overlays) and Argo CD.


@dataclass(frozen=True)
class ImageOverride:
    """A kustomize ``images:`` entry: ``name`` as the pipeline writes it, without tag or digest."""

    name: str
    new_tag: str | None = None
    digest: str | None = None
    new_name: str | None = None


@dataclass(frozen=True)
class Environment:
    """One deployment target of a pipeline: a kustomize overlay over the pipeline's base."""

    name: str
    namespace: str | None = None
    images: tuple[ImageOverride, ...] = ()
    replicas: tuple[tuple[str, int], ...] = ()
    gpu_pool: Any = None  # rtflow.gpu.pools.GpuPool, validated on creation
    cpu_only: bool = False
    models: tuple[tuple[str, tuple[str, ...]], ...] = ()  # server -> models it loads here
    server_resources: tuple[tuple[str, Resources], ...] = ()  # server -> its pods' resources
    kafka_brokers: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    worker_resources: tuple[tuple[str, Resources], ...] = ()  # stream worker Deployment -> ...
    pull_images: bool = True  # False: the nodes were given the images (kind load)


@dataclass(frozen=True)
class ArgoCD:
    """The Git source and destination Argo CD Applications point at (no repo: none emitted)."""

    repo_url: str | None = None
    revision: str = "HEAD"
    path_prefix: str | None = None
    project: str = "default"
    namespace: str = "argocd"
    destination_server: str = "https://kubernetes.default.svc"


@dataclass(frozen=True)
class Ttl:
    after_success: int
    after_failure: int
    after_completion: int


PodGcStrategy = Literal[
    "OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess"
]


@dataclass(frozen=True)
class Pipeline:
    name: str
    source: str
    inputs: tuple[Param, ...]
    stages: tuple[Stage, ...]
    tasks: tuple[Task, ...]
    exit_tasks: tuple[Task, ...] = ()
    namespace: str | None = None
    description: str | None = None
    parallelism: int | None = None
    latency_budget_ms: int | None = None
    deadline_seconds: int = 3600
    ttl: Ttl = field(default_factory=lambda: Ttl(3600, 86400, 604800))
    pod_gc: PodGcStrategy = "OnPodSuccess"
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    service_account: str | None = None
    owns_service_account: bool = False
    triggers: tuple[Trigger, ...] = ()
    event_bus_name: str = "default"
    event_bus: EventBus | None = None
    servers: tuple[Any, ...] = ()  # rtflow.gpu.serving.TritonServing, validated on creation
    environments: tuple[Environment, ...] = ()
    argocd: ArgoCD = field(default_factory=ArgoCD)
    stream: StreamPlane | None = None
    egress: tuple[Any, ...] = ()  # rtflow.Egress: what the stages reach besides rtflow's own

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def task(self, name: str) -> Task:
        return next(t for t in (*self.tasks, *self.exit_tasks) if t.name == name)
