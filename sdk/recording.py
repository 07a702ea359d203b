"""Recording a pipeline function into a graph.

A pipeline function is run once, with placeholders for its inputs; every stage it calls returns a
``Call`` handle instead of running. Handles stand for values that exist only when the pipeline
runs, so they can be passed to other stages (a data dependency), compared (``score > 0.9``) into a
``Cond`` for ``when``, or fanned out over with ``each``. Nothing here checks types or names: the
IR builder does that with the whole graph in view.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from rtflow.errors import DefinitionError, RtflowError

if TYPE_CHECKING:
    from rtflow.gpu.models import TritonModel
    from rtflow.gpu.server import TritonServing
    from rtflow.options import Retry
    from rtflow.stage import StageDef

T = TypeVar("T")
R = TypeVar("R")

_NOT_A_BOOL = ("a value known only when the pipeline runs cannot drive Python's if/and/or/not",)
_NOT_A_BOOL_FIX = "use `with rtflow.when(...)` and combine conditions with &, | and ~"


class Ref:
    """A value that exists only when the pipeline runs: an input, an output, a workflow field."""

    def _compare(self, op: str, other: object) -> Cond:
        return Compare(self, op, other)

    def __gt__(self, other: object) -> Cond:
        return self._compare(">", other)

    def __ge__(self, other: object) -> Cond:
        return self._compare(">=", other)

    def __lt__(self, other: object) -> Cond:
        return self._compare("<", other)

    def __le__(self, other: object) -> Cond:
        return self._compare("<=", other)

    def __eq__(self, other: object) -> Cond:  # type: ignore[override]
        return self._compare("==", other)

    def __ne__(self, other: object) -> Cond:  # type: ignore[override]
        return self._compare("!=", other)

    __hash__ = object.__hash__

    def __and__(self, other: object) -> Cond:
        return All((Truthy(self), as_cond(other)))

    def __or__(self, other: object) -> Cond:
        return Any_((Truthy(self), as_cond(other)))

    def __invert__(self) -> Cond:
        return Negate(Truthy(self))

    def __bool__(self) -> bool:
        raise DefinitionError(_NOT_A_BOOL[0], fix=_NOT_A_BOOL_FIX, field="function")

    def __iter__(self) -> Iterator[Any]:
        raise DefinitionError(
            "a list known only when the pipeline runs cannot be iterated at compile time",
            fix="fan out with rtflow.for_each(items, lambda item: stage(x=item))",
        )


@dataclass(eq=False)
class InputRef(Ref):
    name: str


@dataclass(eq=False)
class OutputRef(Ref):
    call: Call
    output: str


@dataclass(eq=False)
class WorkflowRef(Ref):
    field: str


class _Workflow:
    """Fields of the running Workflow, e.g. ``rtflow.workflow.status`` in an exit handler."""

    @property
    def name(self) -> Any:
        return WorkflowRef("name")

    @property
    def namespace(self) -> Any:
        return WorkflowRef("namespace")

    @property
    def uid(self) -> Any:
        return WorkflowRef("uid")

    @property
    def status(self) -> Any:
        return WorkflowRef("status")

    @property
    def duration(self) -> Any:
        return WorkflowRef("duration")


workflow = _Workflow()


# Conditions


class Cond:
    def __and__(self, other: object) -> Cond:
        return All((self, as_cond(other)))

    def __rand__(self, other: object) -> Cond:
        return All((as_cond(other), self))

    def __or__(self, other: object) -> Cond:
        return Any_((self, as_cond(other)))

    def __ror__(self, other: object) -> Cond:
        return Any_((as_cond(other), self))

    def __invert__(self) -> Cond:
        return Negate(self)

    def __bool__(self) -> bool:
        raise DefinitionError(_NOT_A_BOOL[0], fix=_NOT_A_BOOL_FIX, field="function")


@dataclass(eq=False)
class Compare(Cond):
    left: Ref
    op: str
    right: object


@dataclass(eq=False)
class Truthy(Cond):
    ref: Ref


@dataclass(eq=False)
class All(Cond):
    parts: tuple[Cond, ...]


@dataclass(eq=False)
class Any_(Cond):
    parts: tuple[Cond, ...]


@dataclass(eq=False)
class Negate(Cond):
    part: Cond


def as_cond(value: object) -> Cond:
    if isinstance(value, Cond):
        return value
    if isinstance(value, Ref):
        return Truthy(value)
    raise DefinitionError(
        f"{value!r} is not a condition on a pipeline value",
        fix="write a comparison such as `score > 0.9`, or pass a bool stage output",
        field="when",
    )


# Calls


@dataclass(eq=False)
class Each:
    """Marks the argument a stage is fanned out over."""

    items: object


def for_each(items: Sequence[T], body: Callable[[T], R]) -> list[R]:
    """Run one stage once per element of ``items``, in parallel, and gather its outputs.

    ``items`` is a list, or a list-typed pipeline input or stage output; ``body`` receives the
    current item and makes exactly one stage call with it, e.g.
    ``rtflow.for_each(models, lambda m: review(features=f, model=m))``. Compiles to Argo
    ``withParam``; the result stands for the list of that stage's outputs, one per item.
    """
    recorder = _require_recorder("for_each()")
    marker = Each(items)
    before = recorder.count
    body(marker)  # type: ignore[arg-type]
    made = recorder.made_since(before)
    if len(made) != 1 or not any(v is marker for v in made[0].arguments.values()):
        raise DefinitionError(
            f"the for_each body made {len(made)} stage call(s)"
            + ("" if len(made) != 1 else " without passing it the item"),
            fix="make exactly one stage call and pass it the item, "
            "e.g. lambda m: review(features=f, model=m)",
            field="for_each",
        )
    return made[0]  # type: ignore[return-value]


@dataclass(frozen=True)
class ApprovalDef:
    name: str
    description: str | None
    choices: tuple[str, ...]
    default: str
    approve: str
    timeout: int | str | None = None
    on_timeout: str | None = None


@dataclass(frozen=True, eq=False)
class InferenceDef:
    """A model call on a Triton server; compiles to an Argo ``http`` step (no pod)."""

    server: Any
    model: Any
    name: str | None
    shapes: Any
    timeout: int | str | None
    retry: Any
    via: str = "http"


@dataclass(frozen=True, eq=False)
class HttpDef:
    """A call to any URL; compiles to an Argo ``http`` step (Argo's agent calls, no pod)."""

    url: object
    method: object
    headers: Any
    secret_headers: Any
    timeout: int | str | None
    success_status: Any
    returns: Any
    name: str | None
    retry: Any
    has_body: bool
    json_body: bool


@dataclass(eq=False)
class Call(Ref):
    """One recorded use of a stage; stands for its only output, or ``call.<output>``."""

    definition: StageDef | ApprovalDef | InferenceDef | HttpDef
    arguments: dict[str, object]
    conditions: tuple[Cond, ...]
    on_exit: bool
    index: int
    explicit_after: list[Call] = field(default_factory=list)

    def after(self, *calls: object) -> Call:
        """Run after ``calls`` even though no data flows from them."""
        for c in calls:
            if not isinstance(c, Call):
                raise DefinitionError(
                    f"after() takes stage calls, got {type(c).__name__}",
                    fix="pass the value a stage call returned",
                    stage=self.stage_name,
                    field="after",
                )
            self.explicit_after.append(c)
        return self

    @property
    def stage_name(self) -> str:
        if isinstance(self.definition, ApprovalDef):
            return self.definition.name
        if isinstance(self.definition, InferenceDef):
            return self.definition.name or f"infer-{getattr(self.definition.model, 'name', '?')}"
        if isinstance(self.definition, HttpDef):
            return self.definition.name or "http"
        return self.definition.display_name

    def __getattr__(self, name: str) -> OutputRef:
        if name.startswith("_"):
            raise AttributeError(name)
        return OutputRef(self, name)

    def __repr__(self) -> str:
        return f"<rtflow call {self.stage_name}#{self.index}>"


class ApprovalCall(Call):
    @property
    def approved(self) -> Cond:
        """True when the approver chose to approve."""
        assert isinstance(self.definition, ApprovalDef)
        return Compare(OutputRef(self, "decision"), "==", self.definition.approve)

    @property
    def rejected(self) -> Cond:
        return Negate(self.approved)

    @property
    def decision(self) -> Any:
        return OutputRef(self, "decision")


class InferenceCall(Call):
    """An ``rtflow.infer`` call: stands for the whole KServe v2 answer, and picks one output."""

    def output(self, name: str) -> TensorRef:
        """The flat data of the output tensor ``name`` (typed by its data type), so a stage
        that needs one output does not parse the whole answer."""
        return TensorRef(self, name)


@dataclass(eq=False)
class TensorRef(Ref):
    """One output tensor's flat data of an inference call (``scored.output("risk")``)."""

    call: InferenceCall
    tensor: str


class InferenceResult(dict[str, Any]):
    """What ``rtflow.infer`` stands for, for type checkers: the KServe v2 answer (a dict whose
    ``outputs[i]`` hold ``name``, ``datatype``, ``shape`` and flat ``data``), and
    :meth:`output`. A stage taking ``dict[str, Any]`` accepts it. At record time the value is
    the inference call itself; nothing constructs this class."""

    def output(self, name: str) -> list[Any]:
        """The flat data of the output tensor ``name``: ``list[float]`` for ``TYPE_FP32``,
        ``list[str]`` for ``TYPE_STRING``..."""
        raise TypeError("rtflow.infer(...).output() is only called inside a pipeline function")


@dataclass(frozen=True, eq=False)
class _ClosedWhen:
    """The ``when`` block that just ended: where (the enclosing conditions, exit handler or
    not), after how many calls, and its condition, which an ``otherwise()`` block negates."""

    enclosing: tuple[Cond, ...]
    on_exit: bool
    count: int
    condition: Cond


_NO_WHEN_FIX = (
    "put `with rtflow.otherwise():` right after the `with rtflow.when(...):` block it "
    "completes, at the same indentation, with no stage call between them"
)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.exit_calls: list[Call] = []
        self._conditions: list[Cond] = []
        self._on_exit = False
        self._count = 0
        self._closed_when: _ClosedWhen | None = None

    def call(self, definition: StageDef, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        return self._add(Call, definition, _bind(definition, args, kwargs))

    @property
    def count(self) -> int:
        return self._count

    def made_since(self, count: int) -> list[Call]:
        return [c for c in (*self.calls, *self.exit_calls) if c.index > count]

    def approval(self, definition: ApprovalDef) -> ApprovalCall:
        made = self._add(ApprovalCall, definition, {})
        assert isinstance(made, ApprovalCall)
        return made

    def inference(self, definition: InferenceDef, inputs: dict[str, object]) -> Call:
        return self._add(InferenceCall, definition, inputs)

    def http(self, definition: HttpDef, arguments: dict[str, object]) -> Call:
        return self._add(Call, definition, arguments)

    def _add(
        self,
        cls: type[Call],
        definition: StageDef | ApprovalDef | InferenceDef | HttpDef,
        arguments: dict[str, object],
    ) -> Call:
        self._count += 1
        made = cls(
            definition=definition,
            arguments=arguments,
            conditions=tuple(self._conditions),
            on_exit=self._on_exit,
            index=self._count,
        )
        (self.exit_calls if self._on_exit else self.calls).append(made)
        return made

    @contextmanager
    def when(self, condition: Cond) -> Iterator[None]:
        self._conditions.append(condition)
        try:
            yield
        finally:
            self._conditions.pop()
        self._closed_when = _ClosedWhen(
            tuple(self._conditions), self._on_exit, self._count, condition
        )

    @contextmanager
    def otherwise(self) -> Iterator[None]:
        """The block of the ``when`` that just ended, negated (each ``otherwise`` completes
        exactly one ``when``: the last one closed at its own level)."""
        closed, self._closed_when = self._closed_when, None
        here = tuple(self._conditions)
        if (
            closed is None
            or closed.on_exit != self._on_exit
            or len(closed.enclosing) != len(here)
            or any(a is not b for a, b in zip(closed.enclosing, here, strict=True))
        ):
            raise DefinitionError(
                "otherwise() does not follow a `with rtflow.when(...)` block at its level",
                fix=_NO_WHEN_FIX,
                field="otherwise",
            )
        if closed.count != self._count:
            between = self.made_since(closed.count)
            raise DefinitionError(
                f"a stage is called between the `when` block and its otherwise() "
                f"({', '.join(c.stage_name for c in between)})",
                fix=_NO_WHEN_FIX,
                stage=between[0].stage_name,
                field="otherwise",
            )
        self._conditions.append(Negate(closed.condition))
        try:
            yield
        finally:
            self._conditions.pop()
            self._closed_when = None

    @contextmanager
    def exit_handler(self) -> Iterator[None]:
        if self._on_exit:
            raise DefinitionError(
                "on_exit() blocks cannot nest", fix="use one `with rtflow.on_exit():` block"
            )
        saved, self._conditions = self._conditions, []
        self._on_exit = True
        try:
            yield
        finally:
            self._on_exit = False
            self._conditions = saved


def _bind(definition: StageDef, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, object]:
    if definition.function is not None:
        try:
            bound = inspect.signature(definition.function).bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise DefinitionError(
                f"cannot call it with these arguments ({exc})",
                fix="pass each input once, by the parameter names of the function",
                stage=definition.display_name,
                field="arguments",
            ) from None
        return dict(bound.arguments)
    if args:
        raise DefinitionError(
            "container stages take keyword arguments only",
            fix=f"call it as {definition.display_name}(name=value, ...)",
            stage=definition.display_name,
            field="arguments",
        )
    return dict(kwargs)


_current: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
    "rtflow_recorder", default=None
)


def current_recorder() -> Recorder | None:
    return _current.get()


@contextmanager
def recording() -> Iterator[Recorder]:
    recorder = Recorder()
    token = _current.set(recorder)
    try:
        yield recorder
    finally:
        _current.reset(token)


def _require_recorder(what: str) -> Recorder:
    recorder = current_recorder()
    if recorder is None:
        raise RtflowError(f"rtflow.{what} can only be used inside a pipeline function")
    return recorder


@contextmanager
def when(condition: object) -> Iterator[None]:
    """Run the stages called in this block only when ``condition`` holds at run time."""
    recorder = _require_recorder("when()")
    with recorder.when(as_cond(condition)):
        yield


@contextmanager
def otherwise() -> Iterator[None]:
    """Run the stages called in this block only when the ``when`` block just before it did not
    run: ``with rtflow.when(c): a()`` then ``with rtflow.otherwise(): b()`` runs ``b`` under
    ``~c`` (Argo's ``when: !(c)``). It must directly follow that ``when`` block, at the same
    indentation (no stage call between); a chain is a nested pair (``otherwise`` holding a
    ``when`` and its own ``otherwise``), not an ``elif``.

    Why a second block and not ``when(...).otherwise()``: the ``with`` block is Python's
    only way to scope the calls, and one block per branch reads like the ``if``/``else`` it
    stands for; the negated condition is the same object ``~c`` would make, so what it
    compiles to, how ``rtflow run --local`` and the stream plane decide it, and which outputs
    a stage may read (those of its own branch) are exactly ``when(~c)``'s.
    """
    recorder = _require_recorder("otherwise()")
    with recorder.otherwise():
        yield


@contextmanager
def on_exit() -> Iterator[None]:
    """Stages called in this block run after the pipeline ends, whatever its outcome."""
    recorder = _require_recorder("on_exit()")
    with recorder.exit_handler():
        yield


def approval(
    name: str,
    *,
    description: str | None = None,
    choices: Sequence[str] = ("approve", "reject"),
    default: str | None = None,
    timeout: int | str | None = None,
    on_timeout: str | None = None,
    after: Sequence[object] = (),
) -> ApprovalCall:
    """A human decision (Argo ``suspend``): the workflow waits until someone chooses.

    Resume with ``argo resume`` / the UI, supplying ``decision``; gate later stages with
    ``with rtflow.when(call.approved):``. The first choice means approve; the default is the last.
    ``timeout`` (seconds or '30m') bounds the wait (Argo's ``suspend.duration``): when it
    passes with no decision, the decision is ``on_timeout`` (the default when not given),
    which is then also the decision of ``argo resume`` alone and of a skipped approval.
    """
    recorder = _require_recorder("approval()")
    choice_list = tuple(choices)
    made = recorder.approval(
        ApprovalDef(
            name=name,
            description=description,
            choices=choice_list,
            default=default if default is not None else (choice_list[-1] if choice_list else ""),
            approve=choice_list[0] if choice_list else "",
            timeout=timeout,
            on_timeout=on_timeout,
        )
    )
    made.after(*after)
    return made


def infer(
    server: TritonServing,
    model: TritonModel | str,
    inputs: dict[str, Any],
    *,
    shapes: dict[str, Sequence[int]] | None = None,
    name: str | None = None,
    timeout: int | str | None = None,
    retry: Retry | None = None,
    via: Literal["http", "grpc"] = "http",
) -> InferenceResult:
    """Call ``model`` on the Triton ``server`` with ``inputs`` (tensor name -> flat list).

    Compiles to an Argo ``http`` step against Triton's KServe v2 REST endpoint: no pod per call.
    The result stands for the KServe v2 response (a dict: ``outputs[i].data``);
    ``result.output("risk")`` for one output's flat data, typed. ``timeout``: the
    pipeline's ``default_timeout``, else 10 s. Shapes come from
    the model's dims (with a batch of one when it batches); give ``shapes`` for -1 dims.
    ``via="grpc"`` compiles instead to a container step running the built-in Triton client stage
    (gRPC, binary tensors): a pod per call, but no JSON for large tensors.
    """
    recorder = _require_recorder("infer()")
    definition = InferenceDef(server, model, name, dict(shapes or {}), timeout, retry, via)
    # Typed as what it stands for, the KServe v2 response, so a stage that reads it is checked
    # against dict[str, Any] by mypy (at record time it is a handle to the step's output).
    return cast(InferenceResult, recorder.inference(definition, dict(inputs)))
