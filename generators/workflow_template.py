"""A pipeline's IR as an Argo Workflows WorkflowTemplate (hera's typed models).

One DAG template ``main`` holds the tasks; each distinct stage is one template; an exit handler,
when declared, is the DAG ``exit-handler``. The production defaults a platform team expects are
set here: pod GC, TTL, a workflow deadline, the restricted security context, resource limits on
every container, and the standard labels on the template, the Workflows and their pods. A
stage's credentials are files in a read-only volume of its own template (``rtflow.Secret``;
``as_env=True`` for a ``secretKeyRef`` variable instead).
"""

from __future__ import annotations

from hera.workflows import models as m

from rtflow import ir
from rtflow.generators import argo_expressions, labels, secret_files, security
from rtflow.gpu.kserve import SUCCESS_CONDITION
from rtflow.stages import contract

API_VERSION = "argoproj.io/v1alpha1"
ENTRYPOINT = "main"
EXIT_HANDLER = "exit-handler"
CREDENTIALS_VOLUME = "credentials"


def workflow_template(pipeline: ir.Pipeline) -> m.WorkflowTemplate:
    templates = [_dag(ENTRYPOINT, pipeline.tasks)]
    if pipeline.exit_tasks:
        templates.append(_dag(EXIT_HANDLER, pipeline.exit_tasks))
    templates += [_template(pipeline, s) for s in pipeline.stages]
    workflow_labels = labels.standard_labels(pipeline, "workflow")
    return m.WorkflowTemplate(
        api_version=API_VERSION,
        kind="WorkflowTemplate",
        metadata=m.ObjectMeta(
            name=pipeline.name,
            namespace=pipeline.namespace,
            labels=labels.standard_labels(pipeline, "workflow-template"),
            annotations=_annotations(pipeline) or None,
        ),
        spec=m.WorkflowSpec(
            entrypoint=ENTRYPOINT,
            arguments=m.Arguments(parameters=[_argument(p) for p in pipeline.inputs])
            if pipeline.inputs
            else None,
            on_exit=EXIT_HANDLER if pipeline.exit_tasks else None,
            parallelism=pipeline.parallelism,
            active_deadline_seconds=pipeline.deadline_seconds,
            pod_gc=m.PodGC(strategy=pipeline.pod_gc),
            ttl_strategy=m.TTLStrategy(
                seconds_after_success=pipeline.ttl.after_success,
                seconds_after_failure=pipeline.ttl.after_failure,
                seconds_after_completion=pipeline.ttl.after_completion,
            ),
            security_context=security.pod_security_context(),
            service_account_name=pipeline.service_account,
            workflow_metadata=m.WorkflowMetadata(labels=workflow_labels),
            pod_metadata=m.Metadata(labels=labels.standard_labels(pipeline, "stage")),
            volumes=[security.scratch_volume()],
            templates=templates,
        ),
    )


def _annotations(pipeline: ir.Pipeline) -> dict[str, str]:
    annotations = dict(pipeline.annotations)
    if pipeline.description:
        annotations[labels.DESCRIPTION] = pipeline.description
    if pipeline.latency_budget_ms is not None:
        annotations[labels.LATENCY_BUDGET] = str(pipeline.latency_budget_ms)
    return dict(sorted(annotations.items()))


def _argument(param: ir.Param) -> m.Parameter:
    return m.Parameter(name=param.name, value=param.default, description=param.description)


def _dag(name: str, tasks: tuple[ir.Task, ...]) -> m.Template:
    return m.Template(name=name, dag=m.DAGTemplate(tasks=[_task(t) for t in tasks]))


def _task(task: ir.Task) -> m.DAGTask:
    return m.DAGTask(
        name=task.name,
        template=task.stage,
        arguments=m.Arguments(
            parameters=[
                m.Parameter(name=n, value=argo_expressions.value(v)) for n, v in task.arguments
            ]
        )
        if task.arguments
        else None,
        depends=" && ".join(task.depends) or None,
        when=argo_expressions.condition(task.when) if task.when is not None else None,
        with_param=argo_expressions.value(task.fan_out) if task.fan_out is not None else None,
    )


def _template(pipeline: ir.Pipeline, stage: ir.Stage) -> m.Template:
    if stage.kind == "approval":
        return _approval(stage)
    if stage.kind == "inference":
        return _inference(stage)
    if stage.kind == "http":
        return _http(stage)
    stage_labels = {**dict(stage.labels), labels.STAGE: stage.name}
    return m.Template(
        name=stage.name,
        metadata=m.Metadata(
            labels=dict(sorted(stage_labels.items())),
            annotations=_stage_annotations(stage) or None,
        ),
        inputs=m.Inputs(
            parameters=[
                m.Parameter(name=p.name, default=p.default, description=p.description)
                for p in stage.inputs
            ]
        )
        if stage.inputs
        else None,
        outputs=m.Outputs(
            parameters=[
                m.Parameter(name=o.name, value_from=m.ValueFrom(path=o.path)) for o in stage.outputs
            ]
        )
        if stage.outputs
        else None,
        container=_container(stage),
        volumes=[volume] if (volume := _credentials_volume(stage)) is not None else None,
        retry_strategy=_retry(stage),
        active_deadline_seconds=m.IntOrString(stage.deadline_seconds)
        if stage.deadline_seconds is not None
        else None,
        service_account_name=stage.service_account,
    )


def _stage_annotations(stage: ir.Stage) -> dict[str, str]:
    annotations = dict(stage.annotations)
    if stage.description:
        annotations[labels.DESCRIPTION] = stage.description
    return dict(sorted(annotations.items()))


def _container(stage: ir.Stage) -> m.Container:
    assert stage.image is not None and stage.resources is not None
    resources = stage.resources
    mounts = [security.scratch_mount()]
    if _files(stage):
        mounts.append(secret_files.mount(CREDENTIALS_VOLUME, contract.SECRETS_DIR))
    return m.Container(
        name="main",
        image=stage.image,
        image_pull_policy=security.PULL_POLICY,
        command=list(stage.command) or None,
        args=list(stage.args) or None,
        env=sorted((_env(e) for e in stage.env), key=lambda e: e.name) or None,
        resources=security.resource_requirements(resources, "stage"),
        security_context=security.container_security_context(),
        volume_mounts=mounts,
    )


def _files(stage: ir.Stage) -> list[tuple[str, ir.SecretKey]]:
    """The stage's credentials given as files: (path under SECRETS_DIR, Secret key)."""
    return [
        (f"{e.secret.secret}/{e.secret.key}", e.secret) for e in stage.env if e.secret and e.file
    ]


def _credentials_volume(stage: ir.Stage) -> m.Volume | None:
    """The template's own volume (only its pods mount it): the keys of its rtflow.Secrets."""
    return secret_files.volume(CREDENTIALS_VOLUME, _files(stage))


def _env(env: ir.EnvVar) -> m.EnvVar:
    if env.secret is not None and env.file:
        # The path, never the value (rtflow.stages.secret_files reads it for a function stage).
        path = contract.secret_path(env.secret.secret, env.secret.key)
        return m.EnvVar(name=contract.file_variable(env.name), value=path)
    if env.secret is not None:
        return m.EnvVar(
            name=env.name,
            value_from=m.EnvVarSource(
                secret_key_ref=m.SecretKeySelector(name=env.secret.secret, key=env.secret.key)
            ),
        )
    return m.EnvVar(name=env.name, value=env.value)


def _retry(stage: ir.Stage) -> m.RetryStrategy | None:
    retry = stage.retry
    if retry is None:
        return None
    backoff = retry.backoff
    return m.RetryStrategy(
        limit=m.IntOrString(retry.limit),
        retry_policy=retry.policy,
        # A bad input fails the same way every time: the runtime says so with its exit code.
        expression=contract.RETRY_EXPRESSION if stage.kind == "function" else None,
        backoff=m.Backoff(
            duration=backoff.duration,
            factor=m.IntOrString(backoff.factor),
            max_duration=backoff.max_duration,
        )
        if backoff is not None
        else None,
    )


def _approval(stage: ir.Stage) -> m.Template:
    approval = stage.approval
    assert approval is not None
    return m.Template(
        name=stage.name,
        metadata=m.Metadata(labels={labels.STAGE: stage.name}),
        # With a timeout, Argo resumes the node when the duration passes and fills every
        # output not supplied from its valueFrom.default (OverrideOutputParametersWithDefault
        # in the controller's executeSuspend): the decision is then on_timeout.
        suspend=m.SuspendTemplate(
            duration=str(approval.timeout_seconds) if approval.timeout_seconds else None
        ),
        inputs=m.Inputs(
            parameters=[
                m.Parameter(
                    name="decision",
                    default=approval.default,
                    enum=list(approval.choices),
                    description=stage.description or "Choose to continue the pipeline",
                )
            ]
        ),
        # The producer default is the decision of an approval that was never asked (a skipped
        # branch) or resumed without one (`argo resume` alone): Argo v4 refuses to substitute a
        # skipped node's output that has none, which failed every Workflow whose approval was
        # skipped (found by the execution tier against the real controller).
        outputs=m.Outputs(
            parameters=[
                m.Parameter(
                    name="decision",
                    value_from=m.ValueFrom(
                        supplied=m.SuppliedValueFrom(), default=approval.unanswered
                    ),
                )
            ]
        ),
    )


def _inference(stage: ir.Stage) -> m.Template:
    """An Argo ``http`` step: Argo's agent (one pod per Workflow) calls Triton, no pod per call."""
    inference = stage.inference
    assert inference is not None
    return m.Template(
        name=stage.name,
        metadata=m.Metadata(labels={labels.STAGE: stage.name}),
        inputs=m.Inputs(parameters=[m.Parameter(name=p.name) for p in stage.inputs]),
        http=m.HTTP(
            url=inference.url,
            method="POST",
            headers=[m.V1alpha1HTTPHeader(name="Content-Type", value="application/json")],
            body=inference.body,
            success_condition=SUCCESS_CONDITION,
            timeout_seconds=inference.timeout_seconds,
        ),
        retry_strategy=_retry(stage),
    )


def _http(stage: ir.Stage) -> m.Template:
    """An Argo ``http`` step to any URL (``rtflow.http``): the agent calls, no pod per call;
    a header from a Secret is ``valueFrom.secretKeyRef``, read by the agent when it calls."""
    call = stage.http
    assert call is not None
    return m.Template(
        name=stage.name,
        metadata=m.Metadata(
            labels={labels.STAGE: stage.name},
            annotations=_stage_annotations(stage) or None,
        ),
        inputs=m.Inputs(parameters=[m.Parameter(name=p.name) for p in stage.inputs])
        if stage.inputs
        else None,
        http=m.HTTP(
            url=call.url,
            method=call.method,
            headers=[_header(h) for h in call.headers] or None,
            body=call.body,
            success_condition=argo_expressions.status_condition(call.success_status)
            if call.success_status is not None
            else None,
            timeout_seconds=call.timeout_seconds,
        ),
        retry_strategy=_retry(stage),
    )


def _header(header: ir.HttpHeader) -> m.V1alpha1HTTPHeader:
    if header.secret is None:
        return m.V1alpha1HTTPHeader(name=header.name, value=header.value)
    return m.V1alpha1HTTPHeader(
        name=header.name,
        value_from=m.HTTPHeaderSource(
            secret_key_ref=m.SecretKeySelector(name=header.secret.secret, key=header.secret.key)
        ),
    )
