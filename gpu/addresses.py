"""How a pipeline reaches a served model: which server serves it, and at what address.

An inference step names a model; the bundle finds the one server that serves it
(:func:`serving_for_model`) and the pool it runs on (:func:`model_gpu_pool`), and the step calls
the server's in-cluster Service: KServe v2 REST (:func:`infer_url`) or gRPC
(:func:`grpc_address`).
"""

from __future__ import annotations

from collections.abc import Sequence

from rtflow.errors import DefinitionError
from rtflow.gpu.pools import GpuPool
from rtflow.gpu.server import GRPC_PORT, HTTP_PORT, TritonServing, _problem

__all__ = ["grpc_address", "infer_url", "model_gpu_pool", "service_url", "serving_for_model"]


def service_url(serving: TritonServing, *, namespace: str | None = None) -> str:
    """The in-cluster KServe v2 REST base URL, e.g. ``http://fraud-triton.fraud.svc:8000``."""
    ns = namespace or serving.namespace
    host = f"{serving.name}.{ns}.svc" if ns else serving.name
    return f"http://{host}:{HTTP_PORT}"


def infer_url(serving: TritonServing, model: str, *, namespace: str | None = None) -> str:
    """``<service>/v2/models/<model>/infer``: what an Argo ``http`` inference step calls; for a
    model under canary ``.../versions/<stable>/infer``, its declared stable version (never the
    highest loaded, which during a rollout is the candidate: :mod:`rtflow.canary_policy`)."""
    from rtflow.canary_policy import declared_stable
    from rtflow.gpu.kserve import infer_path

    found = [served for served in serving.models if served.name == model]
    if not found:
        raise DefinitionError(
            _problem(serving.name, f"does not serve model {model!r}"),
            fix=f"call one of {', '.join(served.name for served in serving.models)}",
            field="model",
        )
    path = infer_path(found[0], declared_stable(found[0]))
    return f"{service_url(serving, namespace=namespace)}{path}"


def grpc_address(serving: TritonServing, *, namespace: str | None = None) -> str:
    """``host:8001`` for tritonclient's gRPC client (no scheme)."""
    ns = namespace or serving.namespace
    host = f"{serving.name}.{ns}.svc" if ns else serving.name
    return f"{host}:{GRPC_PORT}"


def serving_for_model(
    servings: Sequence[TritonServing], model: str, *, stage: str | None = None
) -> TritonServing:
    """The one server serving ``model``: the bundle's check that an inference step has a target."""
    found = [serving for serving in servings if any(m.name == model for m in serving.models)]
    if len(found) == 1:
        return found[0]
    if not found:
        served = sorted({m.name for serving in servings for m in serving.models})
        raise DefinitionError(
            f"no Triton server serves model {model!r}",
            fix=f"call one of {', '.join(served)}"
            if served
            else "declare a triton_serving(...) that serves it",
            field="model",
            stage=stage,
        )
    raise DefinitionError(
        f"model {model!r} is served by {len(found)} Triton servers "
        f"({', '.join(serving.name for serving in found)})",
        fix="serve each model from one server, or name the server of the inference step",
        field="model",
        stage=stage,
    )


def model_gpu_pool(serving: TritonServing, model: str) -> GpuPool | None:
    """The pool a served model runs on (``None``: CPU only), for the bundle's cross-checks."""
    return serving.pool if serving.model(model).needs_gpu else None
