"""Inference stages in a local run: the compiled KServe v2 request against a real Triton.

An ``rtflow.infer`` step compiles to an Argo ``http`` template: the workflow controller POSTs
``Inference.body`` (with Argo's ``{{inputs.parameters.<tensor>}}`` tags replaced by the input
texts) to ``Inference.url`` and succeeds when the answer is ``200``; the step's output is the
response body. :class:`HttpInference` does exactly that, over kept-alive connections, with the
timeout of the template; the executor applies the retry strategy and the pipeline deadline,
except to a request Triton refuses as such (a 4xx about the tensors: a bad input, dead-lettered
at once, since the same request fails again; a 5xx, a timeout or a refused connection are the
server's state and are retried).

Where Triton comes from (:class:`TritonTarget`):

* an existing server (``--triton-url``): its scheme and host replace the cluster Service's,
  the path (``/v2/models/<model>/infer``, ``.../versions/<stable>/infer`` for a model under
  canary) is kept;
* by default a Triton that rtflow starts here (:func:`local_triton_server`) from the models the
  pipeline calls: a CPU-only model repository is written from their declarations
  (:func:`rtflow.gpu.config.write_repository`), version folders resolved from the folder of the
  module that declares each model.

gRPC inference steps (``via="grpc"``) are function stages running the built-in Triton client; the
executor points their ``url`` input (the cluster Service by default) at the local gRPC address.
"""

from __future__ import annotations

import http.client
import queue
import re
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rtflow import ir
from rtflow.stages.workers import Invocation

if TYPE_CHECKING:
    from rtflow.gpu.models import TritonModel
    from rtflow.gpu.triton_server import TritonServer

__all__ = [
    "GRPC_CLIENT_FUNCTION",
    "HttpInference",
    "InferenceSetupError",
    "TritonTarget",
    "called_models",
    "is_grpc_inference",
    "local_infer_url",
    "local_triton_server",
    "model_base",
    "needs_triton",
    "substitute",
    "write_local_repository",
]

GRPC_CLIENT_FUNCTION = "rtflow.stages.builtin.triton_client:triton_infer"
GENERATE_FUNCTION = "rtflow.stages.builtin.triton_generate:triton_generate"
_TAG = re.compile(r"\{\{inputs\.parameters\.([A-Za-z0-9_.-]+)\}\}")
_RESET = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class InferenceSetupError(RuntimeError):
    """The pipeline's inference cannot run here (a model without local files, no Triton)."""


def is_grpc_inference(stage: ir.Stage) -> bool:
    """A function stage calling Triton over gRPC: ``via="grpc"`` or ``rtflow.generate``."""
    return stage.kind == "function" and stage.function in (GRPC_CLIENT_FUNCTION, GENERATE_FUNCTION)


def needs_triton(pipeline: ir.Pipeline, skip: Sequence[str] = ()) -> list[ir.Stage]:
    """The stages (http or gRPC inference) that call Triton, except those in ``skip``."""
    return [
        s
        for s in pipeline.stages
        if s.name not in skip
        and s.inference is not None
        and (s.kind == "inference" or is_grpc_inference(s))
    ]


def substitute(body: str, inputs: Mapping[str, str]) -> str:
    """Argo's substitution of ``{{inputs.parameters.X}}`` tags: the input's text, verbatim."""

    def text(match: re.Match[str]) -> str:
        name = match[1]
        if name not in inputs:
            raise KeyError(f"failed to resolve {{{{inputs.parameters.{name}}}}}")
        return inputs[name]

    return _TAG.sub(text, body)


def local_infer_url(cluster_url: str, triton_url: str) -> str:
    """The cluster URL with its scheme and host replaced by ``triton_url``'s; the path kept
    (after any path prefix ``triton_url`` has, e.g. behind a proxy)."""
    base = triton_url if "://" in triton_url else f"http://{triton_url}"
    path = urllib.parse.urlsplit(cluster_url).path
    return base.rstrip("/") + path


def grpc_address_for(triton_url: str) -> str:
    """The gRPC ``host:port`` of a Triton given by its HTTP URL: Triton's default 8001."""
    parts = urllib.parse.urlsplit(triton_url if "://" in triton_url else f"http://{triton_url}")
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:8001"


# -- the http step --------------------------------------------------------------------------------


class HttpInference:
    """POST one stage's compiled body to its URL, as Argo's ``http`` template would.

    Connections are kept alive and reused across calls (a LIFO pool, one connection per
    concurrent caller). A kept-alive connection the server closed meanwhile (Triton restarted)
    is replaced once, transparently, before the attempt counts as failed.
    """

    def __init__(self, stage: ir.Stage, url: str) -> None:
        assert stage.inference is not None
        self.stage = stage.name
        self.body = stage.inference.body
        self.timeout_seconds = float(stage.inference.timeout_seconds)
        self.url = url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InferenceSetupError(f"stage {stage.name!r}: {url!r} is not an http(s) URL")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue()

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            return cls(self._host, self._port, timeout=timeout), False
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn, True

    def _post(self, body: bytes, timeout: float) -> tuple[int, bytes]:
        for _ in range(2):
            conn, reused = self._connection(timeout)
            try:
                conn.request(
                    "POST",
                    self._path,
                    body=body,
                    headers={"Content-Type": "application/json", "Connection": "keep-alive"},
                )
                response = conn.getresponse()
                data = response.read()
            except _RESET:
                conn.close()
                if reused:  # the server closed an idle connection: once more on a fresh one
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if response.will_close:
                conn.close()
            else:
                self._idle.put(conn)
            return response.status, data
        raise ConnectionError("the connection was reset twice")  # pragma: no cover

    def __call__(
        self, raw: Mapping[str, str], timeout: float | None, context: Mapping[str, str]
    ) -> Invocation:
        started = time.perf_counter()
        limit = self.timeout_seconds if timeout is None else min(timeout, self.timeout_seconds)

        def ms() -> float:
            return (time.perf_counter() - started) * 1000

        try:
            body = substitute(self.body, raw).encode()
        except KeyError as exc:
            return Invocation("failed", error=str(exc.args[0]), ms=ms())
        try:
            status, data = self._post(body, max(limit, 0.001))
        except TimeoutError:
            return Invocation(
                "timeout", error=f"POST {self.url}: no answer within {limit:g} s", ms=ms()
            )
        except (OSError, http.client.HTTPException) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Invocation("failed", error=f"POST {self.url}: {reason}", ms=ms())
        elapsed = ms()
        text = data.decode("utf-8", errors="replace")
        if status != 200:  # the template's successCondition: response.statusCode == 200
            return Invocation(
                _refusal(status, text), error=f"POST {self.url} answered {status}: {text[:300]}",
                ms=elapsed,
            )  # fmt: skip
        return Invocation("ok", {"response": text}, ms=elapsed, run_ms=elapsed)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


_NOT_THE_INPUT = ("unknown model", "not found", "not ready", "unavailable", "is not loaded")
#: How Triton says the request's tensors do not fit the model, whatever the status it answers
#: with (2.51 answers 500 to a shape mismatch it finds while parsing the JSON data).
_ABOUT_THE_INPUT = re.compile(
    r"unable to parse|shape|data-?type|expected \d+ inputs|unexpected inference input"
    r"|invalid argument",
    re.IGNORECASE,
)


def _refusal(status: int, text: str) -> Literal["bad_input", "failed"]:
    """A request Triton refuses for its tensors (a 4xx but 404, 408, 409 and 429, or any status
    whose message is about the inputs: a shape, a datatype, data it cannot parse) fails the same
    way again: a bad input, dead-lettered at once. The server's state (a 5xx otherwise, a model
    not loaded or unknown) may pass: the stage's retry policy applies."""
    lowered = text.lower()
    if any(phrase in lowered for phrase in _NOT_THE_INPUT):
        return "failed"
    if _ABOUT_THE_INPUT.search(text):
        return "bad_input"
    if 400 <= status < 500 and status not in (404, 408, 409, 429):
        return "bad_input"
    return "failed"


# -- the models and the local server --------------------------------------------------------------


def called_models(pipeline: ir.Pipeline, stages: Sequence[ir.Stage]) -> list[TritonModel]:
    """The model declarations the given inference stages call, from ``pipeline.servers``
    (with an ensemble, its step models)."""
    from rtflow.gpu.ensemble import step_models

    servers = {s.name: s for s in pipeline.servers}
    models: dict[str, TritonModel] = {}
    for stage in stages:
        assert stage.inference is not None
        server = servers.get(stage.inference.server)
        if server is None:
            raise InferenceSetupError(
                f"stage {stage.name!r} calls server {stage.inference.server!r}, which the "
                "pipeline does not declare; pass --triton-url URL of a running Triton"
            )
        called = server.model(stage.inference.model)
        models.setdefault(called.name, called)
        for step in step_models(called):  # an ensemble needs its steps' models loaded too
            models.setdefault(step.name, step)
    return [models[name] for name in sorted(models)]


def _declaring_folders(model: TritonModel) -> list[Path]:
    """Folders of the loaded modules that hold ``model`` as a global (where it was declared,
    and where it was imported into)."""
    folders: list[Path] = []
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file:
            continue
        try:
            held = any(value is model for value in vars(module).values())
        except Exception:
            continue
        if held:
            folder = Path(file).resolve().parent
            if folder not in folders:
                folders.append(folder)
    return folders


def model_base(model: TritonModel, extra: Sequence[Path] = ()) -> Path | None:
    """The folder relative version sources of ``model`` are resolved from: the folder of the
    module that declared it (the first module holding it whose folder has every source)."""
    relative = [v.source for v in model.versions if v.source and not Path(v.source).is_absolute()]
    candidates = [*_declaring_folders(model), *extra]
    if not relative:
        return candidates[0] if candidates else None
    for folder in candidates:
        if all((folder / source).is_dir() for source in relative):
            return folder
    return candidates[0] if candidates else None


def _check_local(model: TritonModel) -> None:
    if model.ensemble_steps:
        return  # its version folder is generated empty; its steps are checked on their own
    remote = [v.number for v in model.versions if v.source is None]
    if not model.versions or remote:
        where = model.repository.uri
        which = f"version {remote[0]}" if remote else "it"
        raise InferenceSetupError(
            f"model {model.name!r}: {which} has no local files (they live in {where}), so a "
            "local Triton cannot load it; declare versions={N: 'local/folder'} with the model "
            "files, or run against a Triton that serves it with --triton-url URL"
        )


def write_local_repository(
    models: Sequence[TritonModel], destination: Path, *, extra_bases: Sequence[Path] = ()
) -> Path:
    """A CPU-only model repository with ``models`` (each version folder copied from its
    declaring module's folder)."""
    from rtflow.errors import DefinitionError
    from rtflow.gpu.config import write_repository

    for model in models:
        _check_local(model)
    for model in models:
        try:
            write_repository(
                [model], destination, base=model_base(model, extra_bases), cpu_only=True
            )
        except DefinitionError as exc:
            raise InferenceSetupError(str(exc)) from None
    return destination


def local_triton_server(
    pipeline: ir.Pipeline,
    stages: Sequence[ir.Stage],
    *,
    work_dir: Path | None = None,
    extra_bases: Sequence[Path] = (),
    **options: Any,
) -> TritonServer:
    """A (not yet started) Triton on free loopback ports serving the models ``stages`` call,
    loaded as the generated Deployment loads them (explicit model control, no auto-complete)."""
    from rtflow.gpu.response_cache import cache_args
    from rtflow.gpu.triton_server import TritonServer

    models = called_models(pipeline, stages)
    folder = work_dir or Path(tempfile.mkdtemp(prefix=f"rtflow-triton-{pipeline.name}-"))
    repository = write_local_repository(models, folder / "models", extra_bases=extra_bases)
    settings: dict[str, Any] = {
        "http_port": 0,
        "grpc_port": 0,
        "metrics_port": 0,
        "model_control_mode": "explicit",
        "models": [m.name for m in models],
        "extra_args": ["--disable-auto-complete-config", *cache_args(models)],
        "work_dir": folder / "server",
        **options,
    }
    return TritonServer(repository, **settings)


@dataclass
class TritonTarget:
    """The Triton a run's inference goes to: an HTTP base URL, a gRPC address, and the local
    server when rtflow started it (stopped by :meth:`close`)."""

    http_url: str
    grpc_address: str
    server: TritonServer | None = None
    owned: bool = False
    folder: Path | None = None

    def describe(self) -> str:
        if self.server is not None and self.owned:
            seconds = self.server.startup_seconds or 0.0
            return f"local Triton at {self.http_url} (started in {seconds:.1f} s)"
        return f"Triton at {self.http_url}"

    def close(self) -> None:
        if self.server is not None and self.owned:
            self.server.close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
