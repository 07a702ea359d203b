"""Both planes give an event's JSON value to a typed input the same way (docs/triggers.md,
"From an event's value to a typed input"): the same events go through the stream plane's
worker plan and through the workflow plane's path (the Sensor's filters and parameter texts,
then the stage runtime that decodes them in the Workflow's pod; the local run's admission of
the same texts), and each event has one outcome on all of them: processed with the same value,
dead-lettered with the same reason, or filtered.

The Sensor's side is rtflow.stages.event_values, read from Argo Events v1.9.11 and gjson
v1.19.0 and pinned against the real Sensor by tests/integration/test_events_typed_inputs.py.
"""

from __future__ import annotations

import json
from typing import Any

import plane_agreement_pipeline as typed
import pytest

from rtflow.param_types import decode
from rtflow.stages import runtime, semantics
from rtflow.stages.event_values import argo_text, converter, filter_float, number_text
from rtflow.stages.stream.plan import Message, Plan

STREAMED = typed.streamed.build()
WORKFLOW = typed.workflow.build()
PLAN = Plan(STREAMED)
ECHO = runtime.Prepared(typed.echo.function)
BASE: dict[str, Any] = {
    "level": 11, "live": True, "region": "7", "text": "t", "count": 1, "ratio": 0.5,
    "flag": False, "record": {"a": 1}, "items": [1], "numbers": [1, 2],
}  # fmt: skip
ABSENT = object()

Outcome = tuple[str, Any]

# (field, the value the event carries, what every plane makes of it)
CASES: list[tuple[str, Any, Outcome]] = [
    # a number, a boolean, null, an object into a str input: the text the Sensor gives
    ("text", 7, ("text", "7")),
    ("text", 7.0, ("text", "7")),  # gjson's shortest decimal, not Python's "7.0"
    ("text", 7.5, ("text", "7.5")),
    ("text", 1e21, ("text", "1000000000000000000000")),  # no exponent
    ("text", -0.0, ("text", "-0")),
    ("text", 12345678901234567890, ("text", "12345678901234567890")),  # digits as written
    ("text", True, ("text", "true")),
    ("text", None, ("text", "null")),  # indistinguishable from the string "null"
    ("text", {"b": 1, "a": "<x> & y"}, ("text", '{"b":1,"a":"\\u003cx\\u003e \\u0026 y"}')),
    ("text", [1, "é", 2.5], ("text", '[1,"é",2.5]')),
    ("text", ABSENT, ("dead", "the event has no 'body.text' (input 'text')")),
    # into an int: the text read as JSON of the type
    ("count", "7", ("count", 7)),
    ("count", 7.0, ("count", 7)),
    ("count", 1e3, ("count", 1000)),
    ("count", 7.5, ("dead", "input 'count': '7.5' is not a int")),
    ("count", True, ("dead", "input 'count': 'true' is not a int")),
    ("count", None, ("dead", "input 'count': 'null' is not a int")),
    ("count", "seven", ("dead", "input 'count': 'seven' is not JSON for a int")),
    ("count", [7], ("dead", "input 'count': '[7]' is not a int")),
    # into a float: an integer is a float, a string holding one too
    ("ratio", 7, ("ratio", 7.0)),
    ("ratio", "7.5", ("ratio", 7.5)),
    ("ratio", "NaN", ("dead", "input 'ratio': 'NaN' is not a float")),
    ("ratio", False, ("dead", "input 'ratio': 'false' is not a float")),
    # into a bool
    ("flag", "true", ("flag", True)),
    ("flag", 1, ("dead", "input 'flag': '1' is not a bool")),
    # into a dict or a list: the JSON, or a string holding it
    ("record", '{"a": 1}', ("record", {"a": 1})),
    ("record", [1], ("dead", "input 'record': '[1]' is not a dict")),
    ("record", "x", ("dead", "input 'record': 'x' is not JSON for a dict")),
    ("items", "[1, 2]", ("items", [1, 2])),
    ("items", {"a": 1}, ("dead", "input 'items': '{\"a\":1}' is not a list")),
    ("numbers", [1, 2.0], ("dead", "input 'numbers': '[1,2.0]' is not a list[int]")),
    ("numbers", ["1"], ("dead", "input 'numbers': '[\"1\"]' is not a list[int]")),
    # a mapping's default: when the field is absent, not when it is null
    ("limit", ABSENT, ("limit", 3)),
    ("limit", 5, ("limit", 5)),
    ("limit", None, ("dead", "input 'limit': 'null' is not a int")),
    # data filters coerce as gjson does: a string's number, "true"/"1", a number's text
    ("level", "11", ("level", "passes")),
    ("level", "abc", ("filtered", None)),  # a string that is no number is 0
    ("level", None, ("filtered", None)),
    ("level", ABSENT, ("filtered", None)),
    ("live", "true", ("live", "passes")),
    ("live", "1", ("live", "passes")),
    ("live", 1, ("live", "passes")),
    ("live", "yes", ("filtered", None)),
    ("live", 0, ("filtered", None)),
    ("region", 7, ("region", "passes")),
    ("region", 7.0, ("region", "passes")),  # its text is "7"
    ("region", "77", ("filtered", None)),  # anchored
]


def body_of(field: str, value: Any, event_id: str) -> dict[str, Any]:
    body = {**BASE, "id": event_id}
    if value is ABSENT:
        body.pop(field, None)
    else:
        body[field] = value
    return body


def outcome_of(field: str, stage_value: dict[str, Any] | None) -> Outcome:
    """What a processed event's stage saw for ``field`` (the filters' fields are not inputs)."""
    assert stage_value is not None
    if field in ("level", "live", "region"):
        return (field, "passes")
    return (field, stage_value[field])


def stream_outcome(field: str, body: dict[str, Any]) -> Outcome:
    message = Message(typed.TOPIC, 0, 1, json.dumps(body).encode(), b"k", [], 0)
    result = PLAN.execute([message])
    if result.filtered:
        return ("filtered", None)
    (record,) = result.records
    if result.dead_lettered:
        headers = dict(record.headers)
        assert headers["rtflow-reason"] == b"payload"
        return ("dead", headers["rtflow-error"].decode())
    return outcome_of(field, json.loads(record.value)["outputs"]["echo"]["result"])


def sensor_texts(body: dict[str, Any]) -> dict[str, str] | str:
    """The Workflow's parameters as the real Sensor sets them (``getValueByKey``), or why it
    creates none: a mapped field the event lacks, with no default."""
    (trigger,) = WORKFLOW.triggers
    texts: dict[str, str] = {}
    for mapping in trigger.inputs:
        assert mapping.path is not None
        found, value = semantics.lookup({"body": body}, mapping.path)
        if found:
            texts[mapping.input] = argo_text(value)
        elif mapping.default is not None:
            texts[mapping.input] = mapping.default
        else:
            return f"the event has no {mapping.path!r} (input {mapping.input!r})"
    return texts


def workflow_outcome(field: str, body: dict[str, Any]) -> Outcome:
    """The Sensor's filter and texts, then the stage runtime in the Workflow's pod."""
    (trigger,) = WORKFLOW.triggers
    if not semantics.trigger_passes(trigger, body, None):
        return ("filtered", None)
    texts = sensor_texts(body)
    if isinstance(texts, str):
        return ("dead", texts)
    outcome = ECHO.invoke(texts)
    if outcome.status != "ok":
        assert outcome.status == "bad_input", outcome
        return ("dead", outcome.error)
    return outcome_of(field, decode(outcome.outputs["result"], ECHO.output_type))  # type: ignore[arg-type]


def local_outcome(field: str, body: dict[str, Any]) -> Outcome:
    """``rtflow run --local --plane workflow``: its admission (the Sensor's texts, checked by the
    pipeline's types), then the same runtime."""
    (trigger,) = WORKFLOW.triggers
    if not semantics.trigger_passes(trigger, body, None):
        return ("filtered", None)
    try:
        texts = semantics.event_inputs(WORKFLOW, body)
    except semantics.PayloadError as exc:
        return ("dead", str(exc))
    outcome = ECHO.invoke(texts)
    assert outcome.status == "ok", outcome
    return outcome_of(field, decode(outcome.outputs["result"], ECHO.output_type))  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value", "expected"), CASES)
def test_both_planes_give_an_event_value_the_same_outcome(
    field: str, value: Any, expected: Outcome
) -> None:
    body = body_of(field, value, "e-1")
    streamed = stream_outcome(field, body)
    assert streamed == expected
    assert workflow_outcome(field, body) == expected
    assert local_outcome(field, body) == expected
    if expected[0] not in ("dead", "filtered"):
        # the same Python type too (7 and 7.0 compare equal)
        got = streamed[1]
        assert type(got) is type(expected[1]), (got, expected)


def test_a_value_of_the_type_itself_passes_unchanged_and_as_through_the_text() -> None:
    """The converter's one-class-check fast path gives what the text path gives."""
    from rtflow.param_types import ParamType, list_of

    samples = [0, -3, 2**70, 0.5, 1e300, -0.0, True, False, "x", "", {"a": [1, {"b": None}]},
               [1, 2.5, "a"], [], [1, 2], None]  # fmt: skip
    types = [ParamType("str"), ParamType("int"), ParamType("float"), ParamType("bool"),
             ParamType("dict"), ParamType("list"), list_of(ParamType("int")),
             list_of(ParamType("float"))]  # fmt: skip
    for param_type in types:
        convert = converter(param_type)
        for value in samples:
            try:
                expected: Any = decode(argo_text(value), param_type)
            except ValueError as exc:
                with pytest.raises(ValueError) as raised:
                    convert(value)
                assert str(raised.value) == str(exc)
                continue
            got = convert(value)
            assert got == expected and type(got) is type(expected), (param_type, value, got)


@pytest.mark.parametrize(
    ("value", "text"),
    [(7.0, "7"), (0.1, "0.1"), (1.5e-7, "0.00000015"), (1e21, "1000000000000000000000"),
     (123456789.125, "123456789.125"), (-2.5e-3, "-0.0025"), (2**53 + 1, "9007199254740993")],
)  # fmt: skip
def test_numbers_read_as_go_formats_them(value: float, text: str) -> None:
    """strconv.FormatFloat(f, 'f', -1, 64) for a non-integer JSON number, the digits for one."""
    assert number_text(value) == text


@pytest.mark.parametrize(
    ("value", "number"),
    [("5", 5.0), ("-1.5e2", -150.0), (".5", 0.5), ("5.", 5.0), ("abc", 0.0), ("", 0.0),
     (" 5", 0.0), ("1_000", 0.0), (True, 1.0), (False, 0.0), (None, 0.0), ({"a": 1}, 0.0)],
)  # fmt: skip
def test_a_number_filter_reads_values_as_gjson_float(value: Any, number: float) -> None:
    """strconv.ParseFloat takes no spaces and no underscores (Python's float() takes both)."""
    assert filter_float(value) == number


def test_the_stream_plane_admits_events_no_slower_with_conversions() -> None:
    """Per-input conversion is resolved once per plan: a typed event costs a class check per
    input. A loose bound (the measured cost is ~7 µs per event for the whole plan, docs)."""
    import time

    messages = [
        Message(typed.TOPIC, 0, i, json.dumps({**BASE, "id": f"e-{i}"}).encode(), b"k", [], 0)
        for i in range(256)
    ]
    assert PLAN.execute(messages).processed == 256
    started = time.process_time()
    for _ in range(20):
        PLAN.execute(messages)
    per_event = (time.process_time() - started) / (20 * 256)
    assert per_event < 200e-6, per_event


def test_the_payload_schema_is_the_stream_planes_admission_check_only() -> None:
    """The one difference left on purpose: the compiled Sensor carries nothing of the schema
    (the workflow plane starts the run), the stream plane dead-letters a declared field that
    does not convert to its type by the same rule, and admits one that does."""
    from rtflow.generators.compiler import compile_pipelines

    pipeline = typed.workflow_orders.build()
    (sensor,) = [
        dict(m.body) for m in compile_pipelines([pipeline]).manifests if m.body["kind"] == "Sensor"
    ]
    assert "total" not in json.dumps(sensor) and "filters" not in json.dumps(sensor)
    assert semantics.event_inputs(pipeline, {"total": "many", "kind": 1}) == {
        "order": '{"total":"many","kind":1}'
    }
    plan = Plan(typed.streamed_orders.build())
    messages = [
        Message(typed.TOPIC, 0, i, json.dumps(body).encode(), b"k", [], 0)
        for i, body in enumerate(
            [
                {"total": "many", "kind": "sale"},
                {"total": "7.5", "kind": 7},
                {"total": 3, "kind": "sale"},
            ]
        )
    ]
    result = plan.execute(messages)
    assert (result.processed, result.dead_lettered) == (2, {"payload": 1})
    (dead,) = [r for r in result.records if r.value == messages[0].value]
    assert dict(dead.headers)["rtflow-error"] == b"body.total is str, declared float"
