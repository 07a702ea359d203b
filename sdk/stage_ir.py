"""The IR of one stage definition, and the field checks stages and pipelines share.

A stage is inspected, never run: its signature and annotations give its inputs and outputs, its
options give resources, retries, deadline, environment and metadata, each checked here so that
an error can point at the exact field.
"""

from __future__ import annotations

import inspect
import string
import typing
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any, cast

from rtflow import credentials, ir
from rtflow.errors import DefinitionError
from rtflow.names import (
    check_annotation_key,
    check_dns1123_label,
    check_dns1123_subdomain,
    check_label,
    check_parameter_name,
    from_identifier,
)
from rtflow.options import NO_DEFAULT, Backoff, Output, Param, Retry
from rtflow.param_types import SUPPORTED, ParamType, encode, from_annotation, mismatch
from rtflow.quantity import check_go_duration, check_quantity, check_seconds, parse_quantity
from rtflow.recording import InferenceDef
from rtflow.stage import StageDef
from rtflow.stage_env import stage_env
from rtflow.stages import contract

RESERVED_TEMPLATE_NAMES = frozenset({"main", "exit-handler"})
RETRY_POLICIES = ("Always", "OnError", "OnFailure", "OnTransientError")
DEFAULT_CPU = "250m"
DEFAULT_MEMORY = "256Mi"
MIN_CPU_LIMIT = Decimal(1)


def function_inputs(function: Callable[..., Any], *, what: str) -> list[ir.Param]:
    hints = _type_hints(function, field="annotations")
    params: list[ir.Param] = []
    for p in inspect.signature(function).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise DefinitionError(
                f"{what}s cannot be *args or **kwargs ({p.name!r})",
                fix="declare each input as a named parameter",
                field=p.name,
            )
        check_parameter_name(p.name, field=p.name)
        annotation = hints.get(p.name, inspect.Parameter.empty)
        param_type = from_annotation(annotation)
        if param_type is None:
            shown = "no annotation" if annotation is inspect.Parameter.empty else repr(annotation)
            raise DefinitionError(
                f"{what} {p.name!r} has {shown}",
                fix=f"annotate it as {SUPPORTED}",
                field=p.name,
            )
        default: str | None = None
        if p.default is not inspect.Parameter.empty:
            if not param_type.accepts_value(p.default):
                raise DefinitionError(
                    f"the default of {p.name!r}: {mismatch(p.default, param_type)}",
                    fix=f"give a {param_type} default",
                    field=p.name,
                )
            default = encode(p.default)
        params.append(ir.Param(p.name, param_type, default))
    return params


def _type_hints(function: Callable[..., Any], *, field: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception as exc:
        raise DefinitionError(
            f"its annotations cannot be resolved ({type(exc).__name__}: {exc})",
            fix="import every type its annotations name at module level",
            field=field,
        ) from None


def _function_outputs(function: Callable[..., Any]) -> list[ir.Output]:
    hints = _type_hints(function, field="return")
    if "return" not in hints or hints["return"] is type(None):
        return []
    annotation = hints["return"]
    fields = getattr(annotation, "_fields", None)
    if isinstance(annotation, type) and issubclass(annotation, tuple) and fields is not None:
        field_hints = _type_hints(annotation, field="return")
        outputs = []
        for name in fields:
            check_parameter_name(name, field="return")
            param_type = from_annotation(field_hints.get(name))
            if param_type is None:
                raise DefinitionError(
                    f"output {name!r} of the returned NamedTuple is not a supported type",
                    fix=f"annotate it as {SUPPORTED}",
                    field="return",
                )
            outputs.append(ir.Output(name, param_type, contract.output_path(name)))
        return outputs
    param_type = from_annotation(annotation)
    if param_type is None:
        raise DefinitionError(
            f"the return annotation {annotation!r} is not a supported type",
            fix=f"return {SUPPORTED}, a NamedTuple of those, or None",
            field="return",
        )
    return [ir.Output("result", param_type, contract.output_path("result"))]


def _function_reference(function: Callable[..., Any]) -> str:
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", "")
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise DefinitionError(
            f"the function {qualname!r} is not at module level, so the stage runtime cannot "
            "import it in the container",
            fix="define stage functions at the top level of a module",
            field="function",
        )
    if not module or module == "__main__":
        raise DefinitionError(
            "the function lives in __main__, which the stage runtime cannot import",
            fix="compile the file with `rtflow compile path.py` or import it from a module",
            field="function",
        )
    return f"{module}:{qualname}"


def stage_ir(definition: StageDef, pipeline: Any) -> ir.Stage:
    """The IR of a function or container stage; errors name the stage as the user wrote it."""
    written = definition.name
    if written is None and definition.function is not None:
        written = from_identifier(definition.function.__name__)
    try:
        name = check_dns1123_label(written or "", field="name", what="stage name")
        return _stage_unlocated(definition, pipeline, name)
    except DefinitionError as error:
        raise error.located(stage=written or definition.display_name) from None


def _stage_unlocated(definition: StageDef, pipeline: Any, name: str) -> ir.Stage:
    options = definition.options
    if name in RESERVED_TEMPLATE_NAMES:
        raise DefinitionError(
            f"{name!r} is reserved for the pipeline's own templates",
            fix=f"name the stage e.g. {name + '-stage'!r}",
            field="name",
        )
    image = options.image or pipeline.default_image
    if not image or not isinstance(image, str) or image != image.strip() or " " in image:
        raise DefinitionError(
            "the stage has no image" if not image else f"image {image!r} is not an image reference",
            fix="set image='registry/name:tag' on the stage, or default_image= on the pipeline",
            field="image",
        )
    if definition.function is not None:
        inputs = function_inputs(definition.function, what="input")
        outputs = _function_outputs(definition.function)
        function = _function_reference(definition.function)
        command: tuple[str, ...] = contract.COMMAND
        args = tuple(contract.run_args(function, [p.name for p in inputs]))
    else:
        function = None
        inputs = _container_inputs(definition.inputs)
        outputs = _container_outputs(definition.outputs)
        names = {p.name for p in inputs}
        command = tuple(_placeholders(a, names, "command") for a in definition.command or ())
        args = tuple(_placeholders(a, names, "args") for a in definition.args)
        for field_name, line in (("command", command), ("args", args)):
            for reason in credentials.argument_credentials(line):
                raise DefinitionError(
                    f"{field_name} {reason}: it would be stored in Git and in every pod spec",
                    fix="take it from a Secret (secrets=[rtflow.Secret(env=..., secret=..., "
                    "key=...)]) and pass $(THAT_ENV), or mount it and pass the file's path",
                    field=field_name,
                )
    retry = options.retry if options.retry is not None else pipeline.default_retry
    return ir.Stage(
        name=name,
        kind="function" if definition.function is not None else "container",
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        image=image,
        command=command,
        args=args,
        function=function,
        resources=_resources(options),
        retry=_retry(retry) if retry is not None else None,
        deadline_seconds=stage_timeout(options.timeout, pipeline),
        env=stage_env(options.env, options.secrets),
        labels=label_pairs(options.labels),
        annotations=annotation_pairs(options.annotations),
        service_account=service_account(options.service_account),
        description=options.description
        or (inspect.getdoc(definition.function) if definition.function else None),
    )


def stage_timeout(timeout: object, pipeline: Any) -> int | None:
    """A stage's own deadline, else the pipeline's ``default_timeout`` (None: neither)."""
    if timeout is not None:
        return check_seconds(timeout, field="timeout")
    default = getattr(pipeline, "default_timeout", None)
    return check_seconds(default, field="default_timeout") if default is not None else None


def _container_inputs(declared: Mapping[str, Any]) -> list[ir.Param]:
    params = []
    for name, spec in declared.items():
        check_parameter_name(name, field=name)
        param = spec if isinstance(spec, Param) else Param(spec)
        param_type = from_annotation(param.type)
        if param_type is None:
            raise DefinitionError(
                f"input {name!r} has the type {param.type!r}",
                fix=f"declare it as {SUPPORTED}",
                field=name,
            )
        default: str | None = None
        if param.default is not NO_DEFAULT:
            if not param_type.accepts_value(param.default):
                raise DefinitionError(
                    f"the default of {name!r}: {mismatch(param.default, param_type)}",
                    fix=f"give a {param_type} default",
                    field=name,
                )
            default = encode(param.default)
        params.append(ir.Param(name, param_type, default, param.description))
    return params


def _container_outputs(declared: Mapping[str, Any]) -> list[ir.Output]:
    outputs = []
    for name, spec in declared.items():
        check_parameter_name(name, field=name)
        output = spec if isinstance(spec, Output) else Output(spec)
        param_type = from_annotation(output.type)
        if param_type is None:
            raise DefinitionError(
                f"output {name!r} has the type {output.type!r}",
                fix=f"declare it as {SUPPORTED}",
                field=name,
            )
        path = output.path or contract.output_path(name)
        if not path.startswith("/"):
            raise DefinitionError(
                f"output path {path!r} is not absolute",
                fix="give an absolute path inside the container, e.g. '/tmp/out/result'",
                field=name,
            )
        outputs.append(ir.Output(name, param_type, path))
    return outputs


def _placeholders(text: str, inputs: set[str], field: str) -> str:
    """``{input}`` becomes Argo's ``{{inputs.parameters.input}}``; ``{{``/``}}`` are braces."""
    if not isinstance(text, str):
        raise DefinitionError(
            f"{field} must hold strings, got {text!r}", fix="quote every item", field=field
        )
    out = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise DefinitionError(
            f"{text!r} has unbalanced braces ({exc})",
            fix="write {input} for an input and {{ or }} for a literal brace",
            field=field,
        ) from None
    for literal, name, spec, conversion in parsed:
        out.append(literal)
        if name is None:
            continue
        if spec or conversion or name not in inputs:
            raise DefinitionError(
                f"{{{name}}} in {text!r} is not an input of this stage",
                fix=f"use one of: {', '.join('{' + i + '}' for i in sorted(inputs)) or 'none'}",
                field=field,
            )
        out.append(f"{{{{inputs.parameters.{name}}}}}")
    return "".join(out)


def _resources(options: Any) -> ir.Resources:
    return check_resources(
        options.cpu or DEFAULT_CPU,
        options.memory or DEFAULT_MEMORY,
        options.cpu_limit,
        options.memory_limit,
    )


def check_resources(
    cpu: object,
    memory: object,
    cpu_limit: object = None,
    memory_limit: object = None,
    *,
    prefix: str = "",
) -> ir.Resources:
    """Requests and limits (default limits: the memory request, and at least one core of CPU);
    ``prefix`` locates the fields in errors (``stream.``, ``environments[...].``)."""
    cpu = check_quantity(cpu, kind="cpu", field=f"{prefix}cpu")
    memory = check_quantity(memory, kind="memory", field=f"{prefix}memory")
    if cpu_limit is not None:
        cpu_limit = check_quantity(cpu_limit, kind="cpu", field=f"{prefix}cpu_limit")
    else:
        cpu_limit = cpu if parse_quantity(cpu) >= MIN_CPU_LIMIT else "1"
    memory_limit = (
        check_quantity(memory_limit, kind="memory", field=f"{prefix}memory_limit")
        if memory_limit is not None
        else memory
    )
    for request, limit, field in (
        (cpu, cpu_limit, "cpu_limit"),
        (memory, memory_limit, "memory_limit"),
    ):
        if parse_quantity(limit) < parse_quantity(request):
            raise DefinitionError(
                f"limit {limit!r} is below the request {request!r}",
                fix=f"raise {field} to at least {request!r} or lower the request",
                field=f"{prefix}{field}",
            )
    return ir.Resources(cpu, memory, cpu_limit, memory_limit)


def _retry(retry: object) -> ir.Retry:
    if not isinstance(retry, Retry):
        raise DefinitionError(
            f"retry must be rtflow.Retry, got {type(retry).__name__}",
            fix="use rtflow.Retry(limit=3, policy='OnError', backoff=rtflow.Backoff('2s'))",
            field="retry",
        )
    if isinstance(retry.limit, bool) or not isinstance(retry.limit, int) or retry.limit < 0:
        raise DefinitionError(
            f"retry limit {retry.limit!r} is not a whole number >= 0",
            fix="use e.g. Retry(limit=3)",
            field="retry.limit",
        )
    policy = one_of(retry.policy, RETRY_POLICIES, field="retry.policy")
    backoff = None
    if retry.backoff is not None:
        b = retry.backoff
        if not isinstance(b, Backoff):
            raise DefinitionError(
                f"backoff must be rtflow.Backoff, got {type(b).__name__}",
                fix="use rtflow.Backoff(duration='2s', factor=2, max_duration='1m')",
                field="retry.backoff",
            )
        if isinstance(b.factor, bool) or not isinstance(b.factor, int) or b.factor < 1:
            raise DefinitionError(
                f"backoff factor {b.factor!r} is not a whole number >= 1",
                fix="use e.g. factor=2",
                field="retry.backoff.factor",
            )
        backoff = ir.Backoff(
            duration=check_go_duration(b.duration, field="retry.backoff.duration"),
            factor=b.factor,
            max_duration=check_go_duration(b.max_duration, field="retry.backoff.max_duration")
            if b.max_duration is not None
            else None,
        )
    return ir.Retry(limit=retry.limit, policy=cast(ir.RetryPolicyName, policy), backoff=backoff)


def label_pairs(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    for key, value in labels.items():
        if not isinstance(value, str):
            raise DefinitionError(
                f"label {key}={value!r} is not a string",
                fix="quote it",
                field=f"labels.{key}",
            )
        check_label(key, value, field=f"labels.{key}")
    return tuple(sorted(labels.items()))


def annotation_pairs(annotations: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    for key, value in annotations.items():
        check_annotation_key(key, field=f"annotations.{key}")
        if not isinstance(value, str):
            raise DefinitionError(
                f"annotation {key}={value!r} is not a string",
                fix="quote it",
                field=f"annotations.{key}",
            )
    return tuple(sorted(annotations.items()))


def service_account(name: str | None) -> str | None:
    if name is None:
        return None
    return check_dns1123_subdomain(name, field="service_account", what="service account")


def positive_int(value: int | None, *, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DefinitionError(
            f"{value!r} is not a whole number >= 1", fix=f"set {field} to e.g. 10", field=field
        )
    return value


def one_of(value: object, allowed: tuple[str, ...], *, field: str) -> str:
    if isinstance(value, str) and value in allowed:
        return value
    lowered = {a.lower(): a for a in allowed}
    near = lowered.get(str(value).lower().replace("_", "").replace("-", ""))
    hint = f"did you mean {near!r}? " if near else ""
    raise DefinitionError(
        f"{value!r} is not a known {field.rsplit('.', 1)[-1].replace('_', ' ')}",
        fix=f"{hint}use one of {', '.join(allowed)}",
        field=field,
    )


# TYPE_STRING is text or bytes, UTF-8 text on the wire (KServe v2 JSON BYTES): a str per element
_TENSOR_ITEM = {"BOOL": "bool", "STRING": "str"}
# A Triton that is restarting or briefly overloaded answers again within seconds.
INFERENCE_RETRY = ir.Retry(limit=3, policy="Always", backoff=ir.Backoff("500ms", 2, "5s"))


def tensor_param(tensor: Any) -> ir.Param:
    """A tensor as the flat list a pipeline edge carries, typed by its data type."""
    datatype = str(tensor.data_type).removeprefix("TYPE_")
    if datatype in _TENSOR_ITEM:
        item = ParamType(_TENSOR_ITEM[datatype])  # type: ignore[arg-type]
    elif datatype.startswith(("FP", "BF")):
        item = ParamType("float")
    else:
        item = ParamType("int")
    return ir.Param(tensor.name, ParamType("list", item))


DEFAULT_INFERENCE_TIMEOUT = "10s"


def inference_ir(
    definition: InferenceDef, namespace: str | None, default_timeout: int | str | None = None
) -> ir.Stage:
    """An inference step: the model's inputs as flat lists in, the KServe response out."""
    from rtflow.gpu.addresses import infer_url
    from rtflow.gpu.kserve import infer_request_template
    from rtflow.gpu.models import TritonModel
    from rtflow.gpu.server import TritonServing

    server = definition.server
    if not isinstance(server, TritonServing):
        raise DefinitionError(
            "infer() needs a Triton server from rtflow.gpu.triton_serving, "
            f"got {type(server).__name__}",
            fix="pass the TritonServing that serves the model",
            field="server",
        )
    model = definition.model
    if isinstance(model, str):
        served = {m.name: m for m in server.models}
        if model not in served:
            raise DefinitionError(
                f"server {server.name!r} does not serve model {model!r}",
                fix=f"call one of {', '.join(served)} or add the model to the server",
                field="model",
            )
        model = served[model]
    if not isinstance(model, TritonModel):
        raise DefinitionError(
            f"model must be a TritonModel or its name, got {type(model).__name__}",
            fix="pass the model declared with rtflow.gpu.triton_model",
            field="model",
        )
    if all(m is not model and m != model for m in server.models):
        raise DefinitionError(
            f"server {server.name!r} does not serve model {model.name!r}",
            fix="add the model to the server's models, or call the server that serves it",
            field="model",
        )
    name = check_dns1123_label(
        definition.name or f"infer-{model.name}", field="name", what="inference step name"
    )
    shapes: dict[str, list[int]] = {}
    for tensor in model.inputs:
        if tensor.name in definition.shapes:
            shapes[tensor.name] = list(definition.shapes[tensor.name])
        elif -1 in tensor.dims:
            raise DefinitionError(
                f"input {tensor.name!r} of {model.name!r} has a variable dimension",
                fix=f"pass shapes={{{tensor.name!r}: [...]}} to rtflow.infer",
                field=f"shapes.{tensor.name}",
                stage=name,
            )
        else:
            shapes[tensor.name] = [1, *tensor.dims] if model.batched else list(tensor.dims)
    inputs = [tensor_param(t) for t in model.inputs]
    if definition.timeout is None:  # the pipeline's default_timeout, else 10 s
        timeout = default_timeout if default_timeout is not None else DEFAULT_INFERENCE_TIMEOUT
        definition = replace(definition, timeout=timeout)
    if getattr(model, "decoupled", False) != (definition.via == "generate"):
        raise DefinitionError(
            f"model {model.name!r} streams its answer (decoupled), so one request cannot read it"
            if definition.via != "generate"
            else f"model {model.name!r} is not decoupled, so it cannot stream tokens",
            fix="call it with rtflow.generate"
            if definition.via != "generate"
            else "call it with rtflow.infer, or declare it decoupled (rtflow.gpu.llm)",
            field="model",
            stage=name,
        )
    if definition.via in GRPC_FUNCTIONS:  # grpc, generate: the built-in client stages
        return _grpc_inference(definition, server, model, name, namespace)
    if definition.via != "http":
        raise DefinitionError(
            f"via={definition.via!r} is not a request path",
            fix="use via='http' (an Argo http step, no pod) or via='grpc' (the client stage)",
            field="via",
            stage=name,
        )
    body = infer_request_template(
        model, {p.name: f"{{{{inputs.parameters.{p.name}}}}}" for p in inputs}, shapes, stage=name
    )
    retry = definition.retry
    return ir.Stage(
        name=name,
        kind="inference",
        inputs=tuple(inputs),
        outputs=(ir.Output("response", ParamType("dict"), ""),),
        retry=_retry(retry) if retry is not None else INFERENCE_RETRY,
        description=f"KServe v2 inference on {model.name!r} served by {server.name!r}",
        inference=ir.Inference(
            server=server.name,
            model=model.name,
            url=infer_url(addressed(server, namespace), model.name),
            body=body,
            timeout_seconds=check_seconds(definition.timeout, field="timeout"),
        ),
    )


def server_in(server: Any, namespace: str | None) -> Any:
    """A Triton server declared without a namespace runs in its pipeline's: its objects land
    beside the pipeline's (and move with them when an environment names another)."""
    if server.namespace is not None or namespace is None:
        return server
    return replace(server, namespace=namespace)


def addressed(server: Any, namespace: str | None) -> Any:
    """The server as its callers in ``namespace`` address it: by the Service's short name when
    it runs in their namespace, so the call follows both when an environment moves them (a
    full ``<service>.<namespace>.svc`` would still name the base's namespace); by its full
    name when it runs elsewhere."""
    own = server.namespace or namespace
    return replace(server, namespace=None if own == namespace else own)


GRPC_CLIENT_FUNCTION = "rtflow.stages.builtin.triton_client:triton_infer"
GENERATE_FUNCTION = "rtflow.stages.builtin.triton_generate:triton_generate"
GRPC_FUNCTIONS = {"grpc": GRPC_CLIENT_FUNCTION, "generate": GENERATE_FUNCTION}
"""``via`` -> the built-in stage that makes the call: one gRPC inference, or a token stream
(``rtflow.generate``: decoupled gRPC, time to first token measured; see docs/inference.md)."""


def _grpc_inference(
    definition: InferenceDef, server: Any, model: Any, name: str, namespace: str | None
) -> ir.Stage:
    """The built-in Triton client stage as a function stage: url and model fixed by defaults,
    the tensors in one JSON object the task assembles from its upstream values."""
    from rtflow.canary_policy import declared_stable
    from rtflow.gpu.addresses import grpc_address
    from rtflow.stages.builtin import image as builtin_image

    timeout = check_seconds(definition.timeout, field="timeout")
    function = GRPC_FUNCTIONS[definition.via]
    what = "token stream" if definition.via == "generate" else "gRPC inference"
    inputs: tuple[ir.Param, ...] = (
        ir.Param("url", ParamType("str"), grpc_address(addressed(server, namespace))),
        ir.Param("model", ParamType("str"), model.name),
        ir.Param("tensors", ParamType("dict")),
        ir.Param("timeout_seconds", ParamType("float"), encode(float(timeout))),
    )
    stable = declared_stable(model)  # under canary: the declared stable version, by number
    if stable is not None:
        inputs += (ir.Param("model_version", ParamType("str"), str(stable)),)
    retry = definition.retry
    return ir.Stage(
        name=name,
        kind="function",
        inputs=inputs,
        outputs=(ir.Output("result", ParamType("dict"), contract.output_path("result")),),
        image=builtin_image("triton-client"),
        command=contract.COMMAND,
        args=tuple(contract.run_args(function, [p.name for p in inputs])),
        function=function,
        resources=ir.Resources("500m", "1Gi", "1", "1Gi"),
        retry=_retry(retry) if retry is not None else INFERENCE_RETRY,
        deadline_seconds=timeout * 4,
        description=f"{what} on {model.name!r} served by {server.name!r}",
        inference=ir.Inference(
            server=server.name,
            model=model.name,
            url=grpc_address(addressed(server, namespace)),
            body="",
            timeout_seconds=timeout,
        ),
    )


def tensor_params(model: Any) -> list[ir.Param]:
    return [tensor_param(t) for t in model.inputs]
