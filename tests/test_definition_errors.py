"""Every wrong definition fails at build time with one line: pipeline, stage, field, fix."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

import rtflow
from rtflow.errors import DefinitionError

IMAGE = "ghcr.io/acme/tools:1.0"


def error_of(pipeline: rtflow.Pipeline) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        pipeline.build()
    error = caught.value
    assert "\n" not in str(error), "an error is one line"
    assert error.pipeline == pipeline.name
    return error


@rtflow.stage(image=IMAGE)
def source(n: int) -> float:
    return float(n)


@rtflow.stage(image=IMAGE)
def sink(value: float) -> None:
    del value


@rtflow.stage(image=IMAGE)
def text_sink(text: str) -> None:
    del text


@rtflow.stage(image=IMAGE)
def wants_int(k: int) -> None:
    del k


@rtflow.stage(image=IMAGE)
def label(n: int) -> str:
    return str(n)


@rtflow.stage
def imageless(x: int) -> int:
    return x


class Pair(NamedTuple):
    left: int
    right: int


@rtflow.stage(image=IMAGE)
def split(n: int) -> Pair:
    return Pair(n, n)


def test_pipeline_name_not_dns1123_offers_the_fixed_name() -> None:
    @rtflow.pipeline(name="Fraud_Detection")
    def p(n: int) -> None:
        sink(source(n))

    error = error_of(p)
    assert error.field == "name"
    assert "'fraud-detection'" in error.fix
    assert str(error).startswith("pipeline 'Fraud_Detection', field 'name': ")


def test_stage_name_not_dns1123_names_the_stage_and_offers_a_fix() -> None:
    bad = rtflow.container("Score.Model!", image=IMAGE)

    @rtflow.pipeline(name="p")
    def p() -> None:
        bad()

    error = error_of(p)
    assert (error.stage, error.field) == ("Score.Model!", "name")
    assert "'score-model'" in error.fix


def test_name_longer_than_63_is_refused() -> None:
    @rtflow.pipeline(name="a" * 64)
    def p(n: int) -> None:
        sink(source(n))

    error = error_of(p)
    assert "63" in error.problem
    assert len(error.fix.split("'")[1]) == 63


def test_duplicate_stage_names() -> None:
    first = rtflow.container("publish", image=IMAGE)
    second = rtflow.container("publish", image="ghcr.io/acme/other:2.0")

    @rtflow.pipeline(name="p")
    def p() -> None:
        first()
        second()

    error = error_of(p)
    assert (error.stage, error.field) == ("publish", "name")
    assert "two different stages" in error.problem


def test_a_cycle_through_after_names_the_stages() -> None:
    a = rtflow.container("a", image=IMAGE)
    b = rtflow.container("b", image=IMAGE)

    @rtflow.pipeline(name="p")
    def p() -> None:
        first = a()
        second = b().after(first)
        first.after(second)

    error = error_of(p)
    assert error.field == "after"
    assert "a, b" in error.problem and "cycle" in error.problem


def test_an_input_nothing_provides() -> None:
    @rtflow.pipeline(name="p")
    def p() -> None:
        sink()

    error = error_of(p)
    assert (error.stage, error.field) == ("sink", "value")
    assert "not provided" in error.problem
    assert "value=" in error.fix


def test_an_output_type_that_does_not_match_the_input() -> None:
    @rtflow.pipeline(name="p")
    def p(n: int) -> None:
        text_sink(source(n))  # type: ignore[arg-type]

    error = error_of(p)
    assert (error.stage, error.field) == ("text-sink", "text")
    assert "str" in error.problem and "float" in error.problem
    assert "'result' of 'source'" in error.problem


def test_int_feeds_float_but_not_the_reverse() -> None:
    @rtflow.pipeline(name="widening")
    def ok(n: int) -> None:
        sink(n)  # int -> float is fine

    ok.build()

    @rtflow.pipeline(name="narrowing")
    def bad(x: float) -> None:
        wants_int(x)  # type: ignore[arg-type]

    assert error_of(bad).field == "k"


def test_a_missing_image() -> None:
    @rtflow.pipeline(name="p")
    def p(x: int) -> None:
        imageless(x)

    error = error_of(p)
    assert (error.stage, error.field) == ("imageless", "image")
    assert "default_image" in error.fix


def test_default_image_fills_a_missing_image() -> None:
    @rtflow.pipeline(name="p", default_image="ghcr.io/acme/base:1")
    def p(x: int) -> None:
        imageless(x)

    assert p.build().stage("imageless").image == "ghcr.io/acme/base:1"


@pytest.mark.parametrize(
    ("field", "value", "suggestion"),
    [
        ("memory", "512MB", "'512Mi'"),
        ("memory", "2 GB", "'2Gi'"),
        ("memory", "100m", "'100Mi'"),
        ("cpu", "0.5 cores", "'500m'"),
        ("cpu", "-1", "'500m'"),
        ("cpu", "lots", "'500m'"),
    ],
)
def test_a_malformed_quantity(field: str, value: str, suggestion: str) -> None:
    bad = rtflow.container("worker", image=IMAGE, **{field: value})  # type: ignore[arg-type]

    @rtflow.pipeline(name="p")
    def p() -> None:
        bad()

    error = error_of(p)
    assert (error.stage, error.field) == ("worker", field)
    assert suggestion in error.fix


def test_a_limit_below_its_request() -> None:
    bad = rtflow.container("worker", image=IMAGE, memory="1Gi", memory_limit="512Mi")

    @rtflow.pipeline(name="p")
    def p() -> None:
        bad()

    error = error_of(p)
    assert error.field == "memory_limit"
    assert "below the request" in error.problem


def test_an_unknown_retry_policy_suggests_the_spelling() -> None:
    bad = rtflow.container("worker", image=IMAGE, retry=rtflow.Retry(policy="on_error"))

    @rtflow.pipeline(name="p")
    def p() -> None:
        bad()

    error = error_of(p)
    assert error.field == "retry.policy"
    assert "did you mean 'OnError'" in error.fix
    assert "OnTransientError" in error.fix


def test_a_bad_backoff_duration() -> None:
    bad = rtflow.container(
        "worker", image=IMAGE, retry=rtflow.Retry(backoff=rtflow.Backoff(duration="5 seconds"))
    )

    @rtflow.pipeline(name="p")
    def p() -> None:
        bad()

    assert error_of(p).field == "retry.backoff.duration"


def test_a_credential_given_inline_is_refused() -> None:
    bad = rtflow.container("worker", image=IMAGE, env={"DB_PASSWORD": "hunter2"})

    @rtflow.pipeline(name="p")
    def p() -> None:
        bad()

    error = error_of(p)
    assert error.field == "env.DB_PASSWORD"
    assert "rtflow.Secret(env='DB_PASSWORD'" in error.fix


def test_an_unannotated_input() -> None:
    @rtflow.stage(image=IMAGE)
    def loose(x) -> None:  # type: ignore[no-untyped-def]
        del x

    @rtflow.pipeline(name="p")
    def p() -> None:
        loose(1)

    error = error_of(p)
    assert (error.stage, error.field) == ("loose", "x")
    assert "annotate" in error.fix


def test_an_unknown_argument() -> None:
    bad = rtflow.container("worker", image=IMAGE, inputs={"n": int})

    @rtflow.pipeline(name="p")
    def p() -> None:
        bad(n=1, m=2)

    error = error_of(p)
    assert (error.stage, error.field) == ("worker", "m")


def test_an_unknown_output() -> None:
    @rtflow.pipeline(name="p")
    def p(n: int) -> None:
        sink(split(n).middle)

    error = error_of(p)
    assert "no output 'middle'" in error.problem
    assert "left, right" in error.fix


def test_a_call_with_several_outputs_cannot_stand_for_one() -> None:
    @rtflow.pipeline(name="p")
    def p(n: int) -> None:
        sink(split(n))  # type: ignore[arg-type]

    assert "2 outputs" in error_of(p).problem


def test_reading_a_conditional_output_outside_its_branch() -> None:
    @rtflow.pipeline(name="p")
    def p(n: int) -> None:
        value = source(n)
        with rtflow.when(value > 1):
            late = source(n)
        sink(late)

    error = error_of(p)
    assert error.field == "value"
    assert "same `with rtflow.when" in error.fix


def test_python_if_on_a_runtime_value_is_explained() -> None:
    @rtflow.pipeline(name="p")
    def p(n: int) -> None:
        if source(n) > 0.5:
            sink(1.0)

    error = error_of(p)
    assert "rtflow.when" in error.fix


def test_ordering_a_string_is_refused() -> None:
    @rtflow.pipeline(name="p")
    def p(n: int) -> None:
        with rtflow.when(label(n) > "b"):
            sink(1.0)

    assert "needs numbers" in error_of(p).problem


def test_workflow_status_outside_the_exit_handler() -> None:
    @rtflow.pipeline(name="p")
    def p() -> None:
        text_sink(rtflow.workflow.status)

    assert "exit handler" in error_of(p).problem


def test_the_exit_handler_cannot_read_main_outputs() -> None:
    @rtflow.pipeline(name="p")
    def p(n: int) -> None:
        text = label(n)
        with rtflow.on_exit():
            text_sink(text)

    assert "exit handler" in error_of(p).problem


def test_nested_functions_cannot_be_imported_by_the_runtime() -> None:
    def make() -> Any:
        @rtflow.stage(image=IMAGE)
        def inner(n: int) -> int:
            return n

        return inner

    inner = make()

    @rtflow.pipeline(name="p")
    def p(n: int) -> None:
        inner(n)

    error = error_of(p)
    assert error.field == "function"
    assert "top level" in error.fix


def test_a_reserved_stage_name() -> None:
    bad = rtflow.container("main", image=IMAGE)

    @rtflow.pipeline(name="p")
    def p() -> None:
        bad()

    assert "reserved" in error_of(p).problem


def test_a_pipeline_without_stages() -> None:
    @rtflow.pipeline(name="empty")
    def p() -> None:
        pass

    assert "calls no stage" in error_of(p).problem


def test_an_exception_in_the_pipeline_function_is_reported_not_raised() -> None:
    @rtflow.pipeline(name="p")
    def p(n: int) -> None:
        sink(source(n) + 1)  # type: ignore[operator]

    error = error_of(p)
    assert error.field == "function" and "TypeError" in error.problem


def test_for_each_body_must_make_one_call_with_the_item() -> None:
    @rtflow.pipeline(name="p")
    def p() -> None:
        rtflow.for_each([1, 2], lambda n: sink(2.0))

    assert "without passing it the item" in error_of(p).problem


def test_for_each_items_must_fit_the_input() -> None:
    @rtflow.pipeline(name="p")
    def p() -> None:
        rtflow.for_each(["a", "b"], lambda s: sink(s))  # type: ignore[arg-type]

    error = error_of(p)
    assert (error.stage, error.field) == ("sink", "value")


def test_approval_choices_must_be_distinct() -> None:
    @rtflow.pipeline(name="p")
    def p(n: int) -> None:
        rtflow.approval("sign-off", choices=("yes", "yes")).after(source(n))

    assert error_of(p).field == "choices"


def test_unknown_pod_gc_strategy() -> None:
    @rtflow.pipeline(name="p", pod_gc="Never")
    def p(n: int) -> None:
        sink(source(n))

    assert error_of(p).field == "pod_gc"


def test_bad_labels_and_annotations() -> None:
    @rtflow.pipeline(name="p", labels={"team": "risk and fraud"})
    def p(n: int) -> None:
        sink(source(n))

    assert error_of(p).field == "labels.team"

    bad = rtflow.container("worker", image=IMAGE, annotations={"bad key!": "x"})

    @rtflow.pipeline(name="q")
    def q() -> None:
        bad()

    assert error_of(q).field == "annotations.bad key!"


def test_a_container_placeholder_that_is_not_an_input() -> None:
    bad = rtflow.container("worker", image=IMAGE, args=["--n", "{count}"], inputs={"n": int})

    @rtflow.pipeline(name="p")
    def p() -> None:
        bad(n=1)

    error = error_of(p)
    assert error.field == "args"
    assert "{n}" in error.fix


def test_error_from_build_knows_the_stage_even_for_task_rules() -> None:
    @rtflow.pipeline(name="p")
    def p() -> None:
        sink(value="not a float")  # type: ignore[arg-type]

    error = error_of(p)
    assert str(error).startswith("pipeline 'p', stage 'sink', field 'value': ")
