"""Triton ensembles: a pipeline of models inside the server, declared and checked once.

An ensemble is a model with ``platform: "ensemble"`` whose ``config.pbtxt`` holds no model
files but an ``ensemble_scheduling`` section: steps, each naming a served model and mapping
ensemble tensors to its inputs (``input_map``) and its outputs to ensemble tensors
(``output_map``). A request to the ensemble runs the steps as their inputs become ready; a
response leaves when the ensemble outputs are produced. The usual use is an LLM that takes
text: a tokenizer (Python backend) -> the engine (token ids) -> a detokenizer
(:func:`rtflow.gpu.llm_ensemble.tensorrtllm_ensemble`).

:func:`triton_ensemble` checks, when declared, what Triton checks when it loads the ensemble
(``ValidateEnsembleSchedulingConfig`` in core's ``model_config_utils.cc`` and
``ValidateEnsembleConfig`` in ``ensemble_scheduler/ensemble_utils.cc``), so a broken graph
fails compile in one line instead of failing to load on the cluster:

* every step's model is a declared :class:`~rtflow.gpu.models.TritonModel` (not one under a
  canary: a step calls the newest loaded version, during a rollout the candidate), and every
  tensor a step reads is an ensemble input or an output of an *earlier* step (the steps are
  listed in the order data flows, so the graph is a DAG), with the same data type and
  compatible dims (equal, or ``-1`` on either side; a non-batching model's ``[-1, d...]``
  matches a batching one's ``[d...]``);
* each step feeds every required input of its model, maps only inputs and outputs the model
  declares, and takes at least one input and gives at least one output;
* every ensemble output is produced by exactly one step; every ensemble input and every
  tensor a step produces is used (Triton refuses an unused one);
* ``max_batch_size`` is not above any batching step model's;
* decoupled when, and only when, a step model is decoupled (Triton makes such an ensemble
  decoupled itself), and no step reads tensors that come from different decoupled steps, or
  from a decoupled step and the request (Triton cannot pair their responses).

The ensemble's version folder ``1/`` holds no model files; rtflow writes it with an empty
``.gitkeep`` so that Git (and so Argo CD) keeps it. A server serving an ensemble must serve
every step model (:func:`check_served_steps`, called by
:func:`~rtflow.gpu.server.triton_serving`); the ensemble's GPU placement is its step models'.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rtflow.errors import DefinitionError
from rtflow.gpu.model_checks import _problem, _whole
from rtflow.gpu.models import MAX_BATCH_SIZE, TritonModel
from rtflow.gpu.repository import Repository, model_repository
from rtflow.gpu.tensors import Tensor, _tensors
from rtflow.names import check_dns1123_label

__all__ = [
    "ENSEMBLE_PLATFORM",
    "VERSION_PLACEHOLDER",
    "EnsembleStep",
    "check_served_steps",
    "is_ensemble",
    "step_models",
    "triton_ensemble",
]

ENSEMBLE_PLATFORM: Final = "ensemble"
VERSION_PLACEHOLDER: Final = ".gitkeep"
"""The empty file that keeps an ensemble's version folder ``1/`` in Git."""


def _pairs(spec: object, *, model: str, what: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(spec, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in spec.items()
    ):
        raise DefinitionError(
            f"ensemble step of model {model!r}: {what} {spec!r} is not a mapping of tensor names",
            fix=f"give {what}={{'<model tensor>': '<ensemble tensor>'}}",
            field=what,
        )
    return tuple(sorted(spec.items()))


@dataclass(frozen=True, init=False)
class EnsembleStep:
    """One step of an ensemble: ``model`` fed by ``inputs`` (model input -> ensemble tensor)
    and giving ``outputs`` (model output -> ensemble tensor)."""

    model: TritonModel
    input_map: tuple[tuple[str, str], ...]
    """``(model input, ensemble tensor)`` pairs, sorted: Triton's ``input_map``."""
    output_map: tuple[tuple[str, str], ...]
    """``(model output, ensemble tensor)`` pairs, sorted: Triton's ``output_map``."""

    def __init__(
        self, model: TritonModel, inputs: Mapping[str, str], outputs: Mapping[str, str]
    ) -> None:
        named = str(getattr(model, "name", model))
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "input_map", _pairs(inputs, model=named, what="inputs"))
        object.__setattr__(self, "output_map", _pairs(outputs, model=named, what="outputs"))


def is_ensemble(model: TritonModel) -> bool:
    """Whether ``model`` was declared with :func:`triton_ensemble`."""
    return model.platform == ENSEMBLE_PLATFORM


def step_models(*ensembles: TritonModel) -> tuple[TritonModel, ...]:
    """The models the ensembles' steps run, each once, in step order (a nested ensemble's own
    steps after it): what a server serving ``ensembles`` must serve too."""
    found: dict[str, TritonModel] = {}
    for ensemble in ensembles:
        for step in ensemble.ensemble_steps:
            found.setdefault(step.model.name, step.model)
            for inner in step_models(step.model):
                found.setdefault(inner.name, inner)
    return tuple(found.values())


def check_served_steps(server: str, served: Mapping[str, TritonModel]) -> None:
    """A server serving an ensemble serves every step model, as declared (Triton loads an
    ensemble only once its steps' models are loaded)."""
    for ensemble in served.values():
        for model in step_models(ensemble):
            there = served.get(model.name)
            if there is None:
                raise DefinitionError(
                    f"Triton server {server!r}: serves ensemble {ensemble.name!r} but not its "
                    f"step model {model.name!r}",
                    fix=f"add {model.name!r} to models (rtflow.gpu.ensemble.step_models("
                    "ensemble) lists every step model)",
                    field="models",
                )
            if there != model:
                raise DefinitionError(
                    f"Triton server {server!r}: its model {model.name!r} is not the one "
                    f"ensemble {ensemble.name!r} runs (another declaration of that name)",
                    fix="serve the model object the ensemble's step was declared with",
                    field=f"models[{model.name}]",
                )


@dataclass
class _Node:
    """An ensemble tensor as Triton's validation sees it: type, shape and where it is from."""

    data_type: str
    dims: tuple[int, ...]
    batching: bool
    origin: str
    label: int
    """Which decoupled step its responses come from (0: the request itself)."""
    step: int | None = None
    used: bool = False

    @property
    def full_dims(self) -> tuple[int, ...]:
        return ((-1,) if self.batching else ()) + self.dims


def _dims_agree(left: tuple[int, ...], right: tuple[int, ...]) -> bool:
    return len(left) == len(right) and all(
        a == b or -1 in (a, b) for a, b in zip(left, right, strict=True)
    )


def _agree(ensemble: str, tensor: str, have: _Node, want: _Node, field: str) -> None:
    if have.data_type != want.data_type:
        raise DefinitionError(
            _problem(
                ensemble,
                f"tensor {tensor!r} is {have.data_type} as {have.origin} but "
                f"{want.data_type} as {want.origin}",
            ),
            fix="map tensors of one data type (convert in a step model if needed)",
            field=field,
        )
    if not _dims_agree(have.dims, want.dims) and not _dims_agree(have.full_dims, want.full_dims):
        raise DefinitionError(
            _problem(
                ensemble,
                f"tensor {tensor!r} has dims {list(have.full_dims)} as {have.origin} but "
                f"{list(want.full_dims)} as {want.origin}",
            ),
            fix="map tensors of the same shape (-1 matches any size)",
            field=field,
        )


def _node(
    tensor: Tensor, *, batching: bool, origin: str, label: int = 0, reshaped: bool = True
) -> _Node:
    """The ensemble's own tensors count with their reshape; a step model's with its dims."""
    dims = tensor.reshape if reshaped and tensor.reshape is not None else tensor.dims
    return _Node(tensor.data_type, dims, batching, origin, label)


def _steps(ensemble: str, steps: object) -> tuple[EnsembleStep, ...]:
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or not steps:
        raise DefinitionError(
            _problem(ensemble, "an ensemble needs a non-empty list of steps"),
            fix="give steps=[EnsembleStep(model, inputs={...}, outputs={...}), ...]",
            field="steps",
        )
    seen: dict[str, TritonModel] = {}
    for index, step in enumerate(steps):
        field = f"steps[{index}]"
        if not isinstance(step, EnsembleStep):
            raise DefinitionError(
                _problem(ensemble, f"step {index} {step!r} is not an EnsembleStep"),
                fix="give EnsembleStep(model, inputs={...}, outputs={...})",
                field=field,
            )
        model = step.model
        if not isinstance(model, TritonModel):
            raise DefinitionError(
                _problem(ensemble, f"step {index} runs {model!r}, which is not a declared model"),
                fix="declare it with rtflow.gpu.triton_model(...) (or rtflow.gpu.llm)",
                field=f"{field}.model",
            )
        if model.name == ensemble:
            raise DefinitionError(
                _problem(ensemble, f"step {index} runs the ensemble itself"),
                fix="run other models in its steps",
                field=f"{field}.model",
            )
        if model.canary is not None:
            raise DefinitionError(
                _problem(
                    ensemble,
                    f"step {index} runs {model.name!r}, which is rolled out by a canary: a step "
                    "(model_version -1) calls the newest loaded version, during a rollout the "
                    "candidate's",
                ),
                fix="drop canary= from the step model (a canary routes the stream plane's "
                "direct calls by version)",
                field=f"{field}.model",
            )
        if seen.get(model.name, model) != model:
            raise DefinitionError(
                _problem(ensemble, f"two different models named {model.name!r} run in its steps"),
                fix="give each model its own name",
                field=f"{field}.model",
            )
        seen[model.name] = model
        for what, pairs in (("inputs", step.input_map), ("outputs", step.output_map)):
            if not pairs:
                raise DefinitionError(
                    _problem(ensemble, f"step {index} (model {model.name!r}) maps no {what}"),
                    fix=f"map at least one of the model's {what} (Triton requires it)",
                    field=f"{field}.{what}",
                )
        targets = [tensor for _, tensor in step.output_map]
        doubled = sorted({t for t in targets if targets.count(t) > 1})
        if doubled:
            raise DefinitionError(
                _problem(
                    ensemble,
                    f"step {index} (model {model.name!r}) maps two outputs to {doubled[0]!r}",
                ),
                fix="map each output to its own ensemble tensor",
                field=f"{field}.outputs",
            )
    return tuple(steps)


def _batch_size(ensemble: str, value: object, steps: Sequence[EnsembleStep]) -> int:
    batching = [s.model for s in steps if s.model.max_batch_size > 0]
    if value is None:
        return min((m.max_batch_size for m in batching), default=0)
    size = _whole(
        value,
        model=ensemble,
        field="max_batch_size",
        what="max_batch_size",
        lowest=0,
        highest=MAX_BATCH_SIZE,
        fix=f"use 0 (no batch dimension) up to {MAX_BATCH_SIZE}",
    )
    for model in batching:
        if model.max_batch_size < size:
            raise DefinitionError(
                _problem(
                    ensemble,
                    f"max_batch_size {size} is above step model {model.name!r}'s "
                    f"{model.max_batch_size}",
                ),
                fix=f"use max_batch_size={model.max_batch_size} or less (or leave it out: "
                "the smallest of the step models')",
                field="max_batch_size",
            )
    return size


def _walk(
    ensemble: str,
    steps: Sequence[EnsembleStep],
    inputs: Sequence[Tensor],
    outputs: Sequence[Tensor],
    batching: bool,
) -> None:
    """Triton's checks of the data flow, step by step in the order given."""
    ready = {
        t.name: _node(t, batching=batching, origin=f"ensemble input {t.name!r}") for t in inputs
    }
    produced_later = {tensor: i for i, s in enumerate(steps) for _, tensor in s.output_map}
    wanted = {t.name: t for t in outputs}
    decoupled_steps = 0
    for index, step in enumerate(steps):
        model = step.model
        where = f"step {index} (model {model.name!r})"
        field = f"steps[{index}]"
        declared = {t.name: t for t in model.inputs}
        labels: set[int] = set()
        for model_input, tensor in step.input_map:
            if model_input not in declared:
                raise DefinitionError(
                    _problem(ensemble, f"{where} maps input {model_input!r}, which it lacks"),
                    fix=f"map its inputs: {', '.join(declared)}",
                    field=f"{field}.inputs[{model_input}]",
                )
            source = ready.get(tensor)
            if source is None:
                later = produced_later.get(tensor)
                raise DefinitionError(
                    _problem(
                        ensemble,
                        f"{where} reads {tensor!r}, which step {later} produces after it"
                        if later is not None and later >= index
                        else f"{where} reads {tensor!r}, which is neither an ensemble input "
                        "nor an output of an earlier step",
                    ),
                    fix="list the steps in the order data flows (an ensemble is a DAG)"
                    if later is not None and later >= index
                    else f"declare {tensor!r} in inputs, or map an earlier step's output to it",
                    field=f"{field}.inputs[{model_input}]",
                )
            want = _node(
                declared[model_input],
                batching=model.max_batch_size > 0,
                origin=f"input {model_input!r} of {where}",
                reshaped=False,
            )
            _agree(ensemble, tensor, source, want, f"{field}.inputs[{model_input}]")
            source.used = True
            labels.add(source.label)
        fed = {model_input for model_input, _ in step.input_map}
        unfed = [t.name for t in model.inputs if not t.optional and t.name not in fed]
        if unfed:
            raise DefinitionError(
                _problem(ensemble, f"{where} does not feed its input {unfed[0]!r}"),
                fix=f"map it: inputs={{{unfed[0]!r}: '<ensemble tensor>'}} (or declare it "
                "optional in the model)",
                field=f"{field}.inputs",
            )
        if len(labels) > 1:
            raise DefinitionError(
                _problem(
                    ensemble,
                    f"{where} reads tensors that come from different decoupled steps (or from "
                    "a decoupled step and the request)",
                ),
                fix="feed it from one decoupled step's outputs only (Triton cannot pair "
                "responses of different streams)",
                field=f"{field}.inputs",
            )
        label = labels.pop()
        if model.decoupled:
            decoupled_steps += 1
            label = decoupled_steps
        given = {t.name: t for t in model.outputs}
        for model_output, tensor in step.output_map:
            if model_output not in given:
                raise DefinitionError(
                    _problem(ensemble, f"{where} maps output {model_output!r}, which it lacks"),
                    fix=f"map its outputs: {', '.join(given)}",
                    field=f"{field}.outputs[{model_output}]",
                )
            if tensor in ready:
                raise DefinitionError(
                    _problem(
                        ensemble,
                        f"{where} produces {tensor!r}, which is already {ready[tensor].origin}",
                    ),
                    fix="map each ensemble tensor from exactly one step output",
                    field=f"{field}.outputs[{model_output}]",
                )
            node = _node(
                given[model_output],
                batching=model.max_batch_size > 0,
                origin=f"output {model_output!r} of {where}",
                label=label,
                reshaped=False,
            )
            node.step = index
            if tensor in wanted:
                declared_output = _node(
                    wanted[tensor], batching=batching, origin=f"ensemble output {tensor!r}"
                )
                _agree(ensemble, tensor, declared_output, node, f"{field}.outputs[{model_output}]")
            ready[tensor] = node
    for tensor in wanted:
        if tensor not in ready:
            raise DefinitionError(
                _problem(ensemble, f"no step produces ensemble output {tensor!r}"),
                fix=f"map a step's output to it: outputs={{'<model output>': {tensor!r}}}",
                field=f"outputs[{tensor}]",
            )
    for tensor, node in ready.items():
        if node.used or tensor in wanted:
            continue
        if node.step is None:
            raise DefinitionError(
                _problem(ensemble, f"ensemble input {tensor!r} feeds no step"),
                fix="map it to a step's input, or drop it (Triton refuses an unused input)",
                field=f"inputs[{tensor}]",
            )
        raise DefinitionError(
            _problem(
                ensemble,
                f"tensor {tensor!r} ({node.origin}) is read by no later step and is not an "
                "ensemble output",
            ),
            fix=f"declare it in outputs, or drop it from step {node.step}'s outputs (Triton "
            "refuses an unused tensor)",
            field=f"steps[{node.step}].outputs",
        )


def triton_ensemble(
    name: str,
    *,
    steps: Sequence[EnsembleStep],
    inputs: Sequence[Tensor | tuple[str, str, Sequence[int]] | Mapping[str, Any]],
    outputs: Sequence[Tensor | tuple[str, str, Sequence[int]] | Mapping[str, Any]],
    max_batch_size: int | None = None,
    repository: str | os.PathLike[str] | Repository | None = None,
    decoupled: bool | None = None,
) -> TritonModel:
    """Declare a Triton ensemble; every rule is checked here (see the module's docstring).

    Args:
        name: DNS-1123 label, the ensemble's model name.
        steps: the steps in the order data flows:
            ``EnsembleStep(model, inputs={model input: ensemble tensor},
            outputs={model output: ensemble tensor})``.
        inputs, outputs: the ensemble's own tensors (what a request sends and gets back).
        max_batch_size: at most every batching step model's; by default their smallest.
        repository: where its folder (``config.pbtxt``, an empty ``1/``) goes; by default the
            first step model's repository.
        decoupled: left out, it follows the steps (decoupled when a step model is); given,
            it must agree.

    Returns a :class:`~rtflow.gpu.models.TritonModel` (``platform="ensemble"``) that
    ``triton_serving``, ``rtflow.infer`` and ``rtflow.generate`` take like any model; the
    server must serve :func:`step_models` too.
    """
    check_dns1123_label(name, field="name", what="model name")
    chosen = _steps(name, steps)
    ins = _tensors(inputs, model=name, field="inputs")
    outs = _tensors(outputs, model=name, field="outputs")
    clash = sorted({t.name for t in ins} & {t.name for t in outs})
    if clash:
        raise DefinitionError(
            _problem(name, f"{clash[0]!r} is both an input and an output"),
            fix="give inputs and outputs different names",
            field=f"outputs[{clash[0]}]",
        )
    batch = _batch_size(name, max_batch_size, chosen)
    _walk(name, chosen, ins, outs, batch > 0)
    streaming = [s.model.name for s in chosen if s.model.decoupled]
    if decoupled is not None:
        if not isinstance(decoupled, bool):
            raise DefinitionError(
                _problem(name, f"decoupled {decoupled!r} is not a bool"),
                fix="leave it out: it follows the step models",
                field="decoupled",
            )
        if decoupled != bool(streaming):
            raise DefinitionError(
                _problem(
                    name,
                    f"decoupled=False, but step model {streaming[0]!r} is decoupled"
                    if streaming
                    else "decoupled=True, but no step model is decoupled",
                ),
                fix="leave decoupled out: Triton makes an ensemble decoupled exactly when a "
                "step model is",
                field="decoupled",
            )
    return TritonModel(
        name=name,
        inputs=ins,
        outputs=outs,
        repository=chosen[0].model.repository
        if repository is None
        else model_repository(repository),
        platform=ENSEMBLE_PLATFORM,
        max_batch_size=batch,
        decoupled=bool(streaming),
        files=((VERSION_PLACEHOLDER, ""),),
        ensemble_steps=chosen,
    )
