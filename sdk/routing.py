"""``rtflow.route``: one inference step that picks its model per event.

``rtflow.route(server, {"small": cond_a, "large": cond_b}, default="medium", inputs=...,
then=...)`` sends the same tensors to the first model whose condition holds (an ``if`` /
``elif`` / ``else`` over the routes, in the order given), and calls ``then(answer)`` with that
model's answer, inside the route's branch, for the stages that read it. The conditions are
``rtflow.when``'s: comparisons of pipeline inputs (payload fields, a user profile a stage looked
up) or outputs (a branch's decision), combined with ``&``, ``|`` and ``~``.

**Why a ``when`` per route, and not one http step whose model name is a parameter.** Each
route compiles to ``rtflow.infer`` under ``with rtflow.when(...)`` / ``rtflow.otherwise()``,
so every check and every plane already holds:

* the workflow plane gets one Argo ``http`` step per model, each with its ``when``: the Argo
  UI shows which model answered an event (a skipped step is visible), each step keeps the
  timeout, retry and the compile-time checks of its own model (input names, dtypes, shapes,
  the server serving it, the Deployment loading it), and nothing but the URL's model segment
  would differ, which an expression in the URL would hide from those checks and from the
  bundle's cross-resource check of model names;
* the stream plane gets one inference stage per model: each event runs the one stage whose
  condition holds, and each stage batches *its* events, so the batch's events are grouped per
  model and each model still gets micro-batches (one ``TritonBatcher`` per model, the model's
  ``max_batch_size`` bounding its own requests); one stage with a per-event model would have
  to split its batch by model anyway;
* ``rtflow run --local`` decides the ``when``s exactly as the controller and the stream
  worker do.

The price: a stage reading the answer must run in the route's branch (the value exists only
when that route ran), hence ``then``; it is called once per route, so the stages it records
are one per route too (``then`` should record the same stages for every route; the answers
share their outputs' names when the models do).

**Why a mapping of model to condition, not a chooser function.** A chooser (``lambda event:
"small" if ...``) would be Python that runs per event, which compile cannot turn into Argo's
``when`` nor check; conditions are recorded values, checked and compiled like ``when``'s. The
mapping's keys are the models (names the server serves, or their declarations), so an unknown
model, a model of another server, or models whose inputs differ are compile errors in one
line, not a 404 from Triton at run time. Canary rollout (a share of traffic on a new version)
and drift-triggered retraining build on the same shape: a route whose condition is a share of
events, or whose model is the retrained one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from rtflow.errors import DefinitionError
from rtflow.recording import (
    InferenceResult,
    _require_recorder,
    as_cond,
    infer,
    otherwise,
    when,
)

if TYPE_CHECKING:
    from rtflow.gpu.models import TritonModel
    from rtflow.gpu.server import TritonServing
    from rtflow.options import Retry

__all__ = ["route"]

_FIX_MODELS = "route to models the server serves: {}"


def _served(server: Any) -> dict[str, TritonModel]:
    from rtflow.gpu.models import TritonModel

    models = getattr(server, "models", None)
    if not isinstance(models, (tuple, list)) or not all(isinstance(m, TritonModel) for m in models):
        raise DefinitionError(
            f"rtflow.route() needs a Triton server, got {type(server).__name__}",
            fix="pass the triton_serving(...) that serves the models",
            field="server",
        )
    return {m.name: m for m in models}


def _model(server: Any, served: Mapping[str, TritonModel], key: object, step: str) -> TritonModel:
    """The declaration of the model ``key`` names, checked against the server."""
    from rtflow.gpu.models import TritonModel

    listed = ", ".join(sorted(served)) or "none"
    server_name = getattr(server, "name", "?")
    if isinstance(key, str):
        if key not in served:
            raise DefinitionError(
                f"server {server_name!r} serves no model {key!r}",
                fix=_FIX_MODELS.format(listed),
                field=f"routes[{key}]",
                stage=step,
            )
        return served[key]
    if not isinstance(key, TritonModel):
        raise DefinitionError(
            f"a route's model is a {type(key).__name__}, not a model",
            fix="key the routes by model name or by the triton_model(...) declaration",
            field="routes",
            stage=step,
        )
    if served.get(key.name) != key:
        raise DefinitionError(
            f"model {key.name!r} is not served by server {server_name!r} (another server's, "
            "or another declaration of that name)",
            fix=f"route on the server that serves it, or to one of {listed}",
            field=f"routes[{key.name}]",
            stage=step,
        )
    return key


def _inputs_signature(model: TritonModel) -> tuple[object, ...]:
    return (
        model.max_batch_size > 0,
        tuple((t.name, t.data_type, tuple(t.dims)) for t in model.inputs),
    )


def _check_compatible(models: Sequence[TritonModel], step: str) -> None:
    """Every route gets the same tensors: the models' inputs must agree exactly."""
    first = models[0]
    for other in models[1:]:
        if _inputs_signature(other) == _inputs_signature(first):
            continue
        mine = {t.name: t for t in first.inputs}
        theirs = {t.name: t for t in other.inputs}
        if set(mine) != set(theirs):
            what = f"inputs {sorted(theirs)} are not {first.name!r}'s {sorted(mine)}"
        elif (first.max_batch_size > 0) != (other.max_batch_size > 0):
            what = f"{'does not batch' if other.max_batch_size == 0 else 'batches'} but "
            what += f"{first.name!r} {'batches' if other.max_batch_size == 0 else 'does not'}"
        else:
            name = next(
                n
                for n in mine
                if (mine[n].data_type, mine[n].dims) != (theirs[n].data_type, theirs[n].dims)
            )
            what = (
                f"input {name!r} is {theirs[name].data_type} {list(theirs[name].dims)} but "
                f"{first.name!r}'s is {mine[name].data_type} {list(mine[name].dims)}"
            )
        raise DefinitionError(
            f"routed models take different tensors: model {other.name!r} {what}",
            fix="route only among models with the same inputs (names, data types, dims, batching)",
            field=f"routes[{other.name}]",
            stage=step,
        )


def route(
    server: TritonServing,
    routes: Mapping[str | TritonModel, object],
    *,
    inputs: dict[str, Any],
    default: TritonModel | str | None = None,
    then: Callable[[InferenceResult], object] | None = None,
    name: str | None = None,
    shapes: dict[str, Sequence[int]] | None = None,
    timeout: int | str | None = None,
    retry: Retry | None = None,
    via: Literal["http", "grpc"] = "http",
) -> dict[str, InferenceResult]:
    """Send ``inputs`` to the first model of ``routes`` whose condition holds, else to
    ``default`` (no inference when there is none and no condition holds).

    ``routes`` maps a model (its name on ``server``, or its declaration) to a condition, as
    ``rtflow.when`` takes. Each route is the step ``<name>-<model>`` (``name`` defaults to
    ``route``), an ``rtflow.infer`` with ``shapes``, ``timeout``, ``retry`` and ``via``.
    ``then(answer)`` is called inside each route's branch with that model's answer, to record
    the stages that read it. Returns each route's answer by model name (readable only under
    its own branch). Compile refuses a model the server does not serve, a model of another
    server, the same model twice, a decoupled model (use ``rtflow.generate``) and models whose
    input tensors differ.
    """
    _require_recorder("route()")
    base = name or "route"
    served = _served(server)
    if not isinstance(routes, Mapping) or not routes:
        raise DefinitionError(
            "rtflow.route() has no routes",
            fix='map each model to its condition, e.g. {"small": event.tier == "free"}',
            field="routes",
            stage=base,
        )
    chosen = [(_model(server, served, key, base), as_cond(c)) for key, c in routes.items()]
    fallback = _model(server, served, default, base) if default is not None else None
    models = [m for m, _ in chosen] + ([fallback] if fallback is not None else [])
    names = [m.name for m in models]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DefinitionError(
            f"model {twice[0]!r} is routed to twice",
            fix="give each model one route (merge the conditions with |)",
            field=f"routes[{twice[0]}]",
            stage=base,
        )
    if len(models) < 2:
        raise DefinitionError(
            "rtflow.route() chooses among one model",
            fix="add a route or a default, or call rtflow.infer under rtflow.when",
            field="routes",
            stage=base,
        )
    streaming = [m.name for m in models if m.decoupled]
    if streaming:
        raise DefinitionError(
            f"model {streaming[0]!r} is decoupled (it streams its answer)",
            fix="route among models that answer once; generate with rtflow.generate",
            field=f"routes[{streaming[0]}]",
            stage=base,
        )
    _check_compatible(models, base)
    answers: dict[str, InferenceResult] = {}

    def call(model: TritonModel) -> None:
        answer = infer(
            server,
            model,
            dict(inputs),
            shapes=shapes,
            name=f"{base}-{model.name}",
            timeout=timeout,
            retry=retry,
            via=via,
        )
        answers[model.name] = answer
        if then is not None:
            then(answer)

    def chain(remaining: Sequence[tuple[TritonModel, Any]]) -> None:
        """``when(c1): m1`` then ``otherwise(): when(c2): m2 ...``, the default innermost."""
        (model, condition), rest = remaining[0], remaining[1:]
        with when(condition):
            call(model)
        if rest or fallback is not None:
            with otherwise():
                if rest:
                    chain(rest)
                else:
                    assert fallback is not None
                    call(fallback)

    chain(chosen)
    return answers
