"""``rtflow.http``: a call to any URL as an Argo ``http`` step, and its IR.

The same path as ``rtflow.infer``'s http step: Argo's agent (one pod per Workflow, however many
http steps it runs) makes the request, so a call costs no pod of its own; the step's result is
the response body (Argo's ``outputs.result``), typed by ``returns``. Headers are literal, or
read from a Secret by the agent when it calls (``valueFrom.secretKeyRef``): a credential never
sits in the template. ``rtflow run --local`` makes the same request
(:mod:`rtflow.stages.http_step`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from rtflow import credentials, ir
from rtflow.errors import DefinitionError
from rtflow.literals import Resolved
from rtflow.names import (
    check_dns1123_label,
    check_dns1123_subdomain,
    check_secret_key,
    suggest_dns1123_label,
)
from rtflow.options import Retry
from rtflow.param_types import SUPPORTED, ParamType, from_annotation
from rtflow.quantity import check_seconds
from rtflow.recording import Call, HttpDef, _require_recorder
from rtflow.triggers import SecretKey

__all__ = ["BODY", "http", "http_body", "http_ir"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
DEFAULT_TIMEOUT = "30s"
BODY = "body"
"""The template input that carries the request body, and the step's output: the answer's."""
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110 token)
_NO_BODY = object()


def http(
    url: str,
    *,
    method: str = "GET",
    body: Any = _NO_BODY,
    json: Any = _NO_BODY,
    headers: Mapping[str, str] | None = None,
    secret_headers: Mapping[str, SecretKey] | None = None,
    timeout: int | str | None = None,
    success_status: Collection[int] | None = None,
    returns: Any = str,
    name: str | None = None,
    retry: Retry | None = None,
) -> Any:
    """Call ``url`` from the workflow: an Argo ``http`` step, no pod per call.

    ``body`` is text (a ``str``, or a ``str`` input or output), sent as
    ``text/plain; charset=utf-8``; ``json`` any JSON value, a literal that may hold inputs and
    outputs, sent as ``application/json`` (``headers`` may set another Content-Type).
    ``secret_headers={"Authorization": rtflow.SecretKey("api", "bearer")}``: the value is the
    Secret's key, read by Argo's agent when it calls (write the whole header value in the key:
    ``Bearer ...``). ``timeout``: the pipeline's ``default_timeout``, else 30 s.
    ``success_status`` (e.g. ``range(200, 300)``, ``{200, 404}``): the status codes that
    succeed, Argo's default being any 2xx; typed rather than an expression so that the local run
    decides exactly what Argo's agent does. The result stands for the response body, of type
    ``returns`` (``str``; ``dict[str, Any]`` or another JSON type for a JSON answer, decoded by
    the stage that reads it). ``name``: ``call-<host>`` unless given.
    """
    recorder = _require_recorder("http()")
    if body is not _NO_BODY and json is not _NO_BODY:
        raise DefinitionError(
            "http() is given both body= and json=",
            fix="send text with body= or a JSON value with json=, not both",
            stage=name or "http",
            field="json",
        )
    given = body if json is _NO_BODY else json
    if name is None:  # "call-<host>": two unnamed calls to one host must be named apart
        host = urlsplit(url).hostname if isinstance(url, str) else None
        name = "call-" + (suggest_dns1123_label((host or "url").split(".")[0]) or "url")
    definition = HttpDef(
        url=url,
        method=method,
        headers=headers,
        secret_headers=secret_headers,
        timeout=timeout,
        success_status=success_status,
        returns=returns,
        name=name,
        retry=retry,
        has_body=given is not _NO_BODY,
        json_body=json is not _NO_BODY,
    )
    return recorder.http(definition, {} if given is _NO_BODY else {BODY: given})


def http_ir(definition: HttpDef, pipeline: Any) -> ir.Stage:
    """The IR of one http step; errors name the step and the field."""
    written = definition.name or "http"
    try:
        return _http_ir(definition, pipeline, written)
    except DefinitionError as error:
        raise error.located(stage=written) from None


def _http_ir(definition: HttpDef, pipeline: Any, written: str) -> ir.Stage:
    from rtflow.stage_ir import RESERVED_TEMPLATE_NAMES, _retry

    name = check_dns1123_label(written, field="name", what="http step name")
    if name in RESERVED_TEMPLATE_NAMES:
        raise DefinitionError(
            f"{name!r} is reserved for the pipeline's own templates",
            fix=f"name the step e.g. {name + '-call'!r}",
            field="name",
        )
    url = _url(definition.url)
    method = definition.method
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise DefinitionError(
            f"method {method!r} is not an HTTP method", fix=f"use one of {', '.join(METHODS)}",
            field="method",
        )  # fmt: skip
    headers = _headers(definition)
    names = {h.name.lower() for h in headers}
    if definition.has_body and "content-type" not in names:
        kind = "application/json" if definition.json_body else "text/plain; charset=utf-8"
        headers = (ir.HttpHeader("Content-Type", kind), *headers)
    returns = from_annotation(definition.returns)
    if returns is None:
        raise DefinitionError(
            f"returns={definition.returns!r} is not a type rtflow carries",
            fix=f"use {SUPPORTED}",
            field="returns",
        )
    timeout = definition.timeout
    if timeout is None:
        timeout = getattr(pipeline, "default_timeout", None) or DEFAULT_TIMEOUT
    retry = definition.retry if definition.retry is not None else pipeline.default_retry
    body_tag = f"{{{{inputs.parameters.{BODY}}}}}"
    return ir.Stage(
        name=name,
        kind="http",
        inputs=(ir.Param(BODY, ParamType("str")),) if definition.has_body else (),
        outputs=(ir.Output(BODY, returns, ""),),
        retry=_retry(retry) if retry is not None else None,
        description=f"{method.upper()} {url}",
        http=ir.HttpCall(
            url=url,
            method=method.upper(),
            headers=headers,
            body=body_tag if definition.has_body else None,
            timeout_seconds=check_seconds(timeout, field="timeout"),
            success_status=_statuses(definition.success_status),
        ),
    )


def _url(url: object) -> str:
    if not isinstance(url, str):
        raise DefinitionError(
            f"url must be a str, got {type(url).__name__}",
            fix="give the URL as text, e.g. 'https://api.example.com/v1/notify' (a value known "
            "only at run time goes in body= or json=)",
            field="url",
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or "{{" in url:
        raise DefinitionError(
            f"{url!r} is not an http(s) URL",
            fix="give a full URL such as 'https://api.example.com/v1/notify'",
            field="url",
        )
    if parts.password is not None or credentials.url_password(url):
        raise DefinitionError(
            "the URL has a password in it: it would be stored in Git and in the template",
            fix="put the credential in a Secret and pass secret_headers={'Authorization': "
            "rtflow.SecretKey('<secret>', '<key>')}",
            field="url",
        )
    return url


def _headers(definition: HttpDef) -> tuple[ir.HttpHeader, ...]:
    found: list[ir.HttpHeader] = []
    for key, value in dict(definition.headers or {}).items():
        field = f"headers.{key}"
        _header_name(key, field)
        if not isinstance(value, str):
            raise DefinitionError(
                f"header {key}={value!r} is not a string", fix="quote it", field=field
            )
        if credentials.CREDENTIAL_NAME.search(key) and not credentials.is_reference(value):
            raise DefinitionError(
                f"header {key!r} holds a credential in plain text: it would be stored in Git "
                "and in the template",
                fix=f"pass secret_headers={{{key!r}: rtflow.SecretKey('<secret>', '<key>')}}",
                field=field,
            )
        found.append(ir.HttpHeader(key, value=value))
    for key, ref in dict(definition.secret_headers or {}).items():
        field = f"secret_headers.{key}"
        _header_name(key, field)
        if not isinstance(ref, SecretKey):
            raise DefinitionError(
                f"secret header {key!r} must be rtflow.SecretKey, got {type(ref).__name__}",
                fix=f"pass secret_headers={{{key!r}: rtflow.SecretKey('<secret>', '<key>')}}",
                field=field,
            )
        check_dns1123_subdomain(ref.secret, field=field, what="secret name")
        check_secret_key(ref.key, field=field)
        found.append(ir.HttpHeader(key, secret=ir.SecretKey(ref.secret, ref.key)))
    lowered = [h.name.lower() for h in found]
    twice = sorted({n for n in lowered if lowered.count(n) > 1})
    if twice:
        raise DefinitionError(
            f"header {twice[0]!r} is given twice",
            fix="give each header once, in headers= or secret_headers=",
            field="secret_headers",
        )
    return tuple(sorted(found, key=lambda h: h.name.lower()))


def _header_name(key: object, field: str) -> None:
    if not isinstance(key, str) or not _TOKEN.match(key):
        raise DefinitionError(
            f"{key!r} is not an HTTP header name",
            fix="use letters, digits and '-', e.g. 'X-Request-Id'",
            field=field,
        )


def _statuses(given: object) -> tuple[int, ...] | None:
    if given is None:
        return None
    codes = list(given) if isinstance(given, Collection) and not isinstance(given, str) else None
    if not codes or any(
        isinstance(c, bool) or not isinstance(c, int) or not 100 <= c <= 599 for c in codes
    ):
        raise DefinitionError(
            f"success_status {given!r} is not a collection of HTTP status codes",
            fix="give e.g. success_status=range(200, 300) or {200, 404}",
            field="success_status",
        )
    return tuple(sorted(set(codes)))


def http_body(raw: object, definition: HttpDef, resolve: Callable[[object], Resolved]) -> Resolved:
    """The task's ``body`` argument: text as it is (``body=``), or JSON text (``json=``), where
    a ``str`` input or output is quoted by Argo's ``toJson`` (it is carried raw)."""
    resolved = resolve(raw)
    if not definition.json_body:
        text = resolved.type is not None and resolved.type.kind == "str"
        if not (isinstance(raw, str) or text):
            shown = resolved.type or type(raw).__name__
            raise DefinitionError(
                f"body= takes text, got a {shown}",
                fix="send text with body=, or a JSON value with json=",
                field=BODY,
            )
        return resolved
    value = resolved.value
    if isinstance(value, ir.Constant) and resolved.type is None:
        if isinstance(raw, str):  # a str constant as a JSON string
            value = ir.Constant(json.dumps(raw, ensure_ascii=False))
    elif (
        resolved.type is not None
        and resolved.type.kind == "str"
        and isinstance(value, ir.PipelineInput | ir.TaskOutput | ir.WorkflowField)
    ):
        value = ir.JsonString(value)
    return Resolved(value, resolved.type, resolved.producers)


def is_http_call(call: Call) -> bool:
    return isinstance(call.definition, HttpDef)
