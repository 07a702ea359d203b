"""List and dict literals that hold outputs and inputs (issue 16): they compile to one JSON text
Argo assembles at run time, a ``str`` quoted by Argo's ``toJson``; the local run, the stream
plane and Argo read the same values; what Argo cannot express fails in one line."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from compiled import tasks, workflow_template
from local_pipelines import literals
from test_bad_definitions import compile_file, one_line

import rtflow
from rtflow import ir
from rtflow.errors import DefinitionError
from rtflow.stages import semantics
from rtflow.stages.events import ListSource, MemorySink
from rtflow.stages.local import run_local
from rtflow.stages.stream.plan import Message, Plan
from rtflow.stages.stream.steps import value_getter

IMAGE = "ghcr.io/acme/tools:1.0"

ISSUE_PIPELINE = """
    from typing import Any
    import rtflow

    @rtflow.stage(image="ghcr.io/a/b:1")
    def score(event: dict[str, Any]) -> float:
        return 1.0

    @rtflow.stage(image="ghcr.io/a/b:1")
    def rank(scored: list[float]) -> float:
        return max(scored)

    @rtflow.stage(image="ghcr.io/a/b:1")
    def send(payload: dict[str, Any]) -> None:
        pass

    @rtflow.pipeline(name="lit")
    def lit(event: dict[str, Any], user_id: str = "u") -> None:
        s = score(event)
        rank(scored=[s])
        send(payload={"u": user_id, "s": s})
"""


def test_the_issue_s_literals_compile_where_they_crashed(tmp_path: Path) -> None:
    """Before: ``Object of type Call is not JSON serializable``, a 49-line traceback."""
    result = compile_file(tmp_path, ISSUE_PIPELINE)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "value: '[{{tasks.score.outputs.parameters.result}}]'" in result.stdout
    assert (
        'value: \'{"s":{{tasks.score.outputs.parameters.result}},'
        "\"u\":{{=toJson(workflow.parameters[''user_id''])}}}'" in result.stdout
    )


def test_argo_arguments_paste_json_values_and_quote_text() -> None:
    found = tasks(workflow_template(literals.literals))
    assert found["rank"]["arguments"]["parameters"] == [
        {
            "name": "scored",
            "value": "[{{tasks.score.outputs.parameters.result}},2.0,"
            "{{workflow.parameters.weight}}]",
        }
    ]
    envelope = {p["name"]: p["value"] for p in found["envelope"]["arguments"]["parameters"]}
    assert envelope == {
        "payload": '{"best":{{tasks.rank.outputs.parameters.result}},"nested":{"both":'
        "[{{tasks.score.outputs.parameters.result}},{{workflow.parameters.weight}}],"
        "\"loud\":{{=toJson(tasks['shout'].outputs.parameters['result'])}}},"
        "\"u\":{{=toJson(workflow.parameters['user'])}}}",
        "names": "[{{=toJson(workflow.parameters['user'])}},"
        "{{=toJson(tasks['shout'].outputs.parameters['result'])}},\"plain\"]",
    }
    assert found["envelope"]["depends"] == "rank && score && shout"


def test_the_substituted_text_is_json_whatever_the_text_holds() -> None:
    pipeline = literals.literals.build()
    (payload,) = [v for n, v in pipeline.task("envelope").arguments if n == "payload"]
    user = 'Zoë "<admin>" & \\ \n'
    text = semantics.value_text(
        payload,
        inputs={"user": user, "weight": "3"},
        outputs={"rank": {"result": "2.5"}, "score": {"result": "0.5"}, "shout": {"result": "Ł"}},
        workflow={},
    )
    assert json.loads(text) == {
        "best": 2.5,
        "nested": {"both": [0.5, 3], "loud": "Ł"},
        "u": user,
    }
    assert "\\u003cadmin\\u003e" in text and "\\u0026" in text  # Go's toJson escapes


def test_the_stream_plane_reads_the_literal_as_python_values() -> None:
    value = ir.JsonObject(
        (
            ("a", ir.JsonList((ir.Constant("2.0"), ir.JsonString(ir.PipelineInput("u"))))),
            ("b", ir.Constant('"x"')),
        )
    )

    state: Any = SimpleNamespace(inputs={"u": 'he said "hi"'}, outputs={})
    assert value_getter(value)(state) == {"a": [2.0, 'he said "hi"'], "b": "x"}


def test_the_local_run_assembles_the_literals(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("RTFLOW_TEST_STATE", str(tmp_path))
    out, dead = MemorySink(), MemorySink()
    user = 'ada "the first" <&>'
    run_local(
        literals.literals.build(),
        ListSource([{"event": {"amount": 150}, "user": user}]),
        output=out,
        dead_letter=dead,
        log_dir=Path(os.environ["RTFLOW_TEST_STATE"]) / "logs",
    )
    assert not dead.records, dead.records
    (record,) = out.records
    assert record["outputs"]["rank"]["result"] == 3.0  # max(1.5, 2.0, 3)
    assert record["outputs"]["envelope"]["result"] == {
        "payload": {
            "u": user,
            "best": 3.0,
            "nested": {"loud": user.upper(), "both": [1.5, 3]},
        },
        "names": [user, user.upper(), "plain"],
    }


def test_the_stream_plane_runs_the_literals_and_publishes_them() -> None:
    plan = Plan(literals.literals_stream.build())
    user = 'bob "b" <&>'
    body = json.dumps({"event": {"amount": 50}, "user": user}).encode()
    result = plan.execute([Message("events", 0, 7, body, None, [], 0)])
    (published,) = [json.loads(r.value) for r in result.records if r.topic == "answers"]
    assert published == {
        "answer": {"payload": {"u": user, "best": 2.0}, "names": [user, user.upper()]},
        "who": [user, user.upper()],
        "n": 1,
    }


# -- what cannot compile: one line, pipeline, stage, field, fix ----------------------------------


@rtflow.stage(image=IMAGE)
def words(texts: list[str]) -> int:
    return len(texts)


@rtflow.stage(image=IMAGE)
def number(n: int) -> float:
    return float(n)


@rtflow.stage(image=IMAGE)
def payload_sink(payload: dict[str, Any]) -> None:
    del payload


def error_of(pipeline: rtflow.Pipeline) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        pipeline.build()
    error = caught.value
    assert "\n" not in str(error)
    assert error.pipeline == pipeline.name
    assert error.fix
    return error


def test_a_list_literal_of_the_wrong_item_type_names_both_types() -> None:
    @rtflow.pipeline(name="wrong-items")
    def p(n: int) -> None:
        words(texts=[number(n)])

    error = error_of(p)
    assert (error.stage, error.field) == ("words", "texts")
    assert "is list[str] but it is fed a list[float]" in error.problem


def test_a_list_literal_mixing_types_is_refused_for_a_typed_list() -> None:
    @rtflow.pipeline(name="mixed")
    def p(n: int, name: str) -> None:
        words(texts=[name, number(n)])

    error = error_of(p)
    assert (error.stage, error.field) == ("words", "texts")
    assert "mixes types" in error.problem


def test_the_fan_out_item_cannot_sit_in_a_literal() -> None:
    @rtflow.pipeline(name="item-in-literal")
    def p() -> None:
        rtflow.for_each(["a", "b"], lambda m: words(texts=[m]))

    error = error_of(p)  # the recorder sees the item is not the argument itself
    assert error.field == "for_each"
    assert "without passing it the item" in error.problem


def test_a_dict_literal_with_a_non_string_key_is_refused() -> None:
    @rtflow.pipeline(name="int-key")
    def p(n: int) -> None:
        payload_sink(payload={1: number(n)})

    error = error_of(p)
    assert (error.stage, error.field) == ("payload-sink", "payload")
    assert "JSON keys are strings" in error.problem


def test_nan_in_a_literal_with_an_output_is_refused() -> None:
    @rtflow.pipeline(name="nan")
    def p(n: int) -> None:
        payload_sink(payload={"v": number(n), "bad": math.nan})

    error = error_of(p)
    assert error.field == "payload.bad"
    assert "not a JSON value" in error.problem


def test_a_literal_reading_a_guarded_output_outside_its_when_is_refused() -> None:
    @rtflow.pipeline(name="guarded")
    def p(n: int) -> None:
        with rtflow.when(n > 1):
            v = number(n)
        payload_sink(payload={"v": v})

    error = error_of(p)
    assert (error.stage, error.field) == ("payload-sink", "payload")
    assert "runs only under a `when`" in error.problem


def test_the_cli_refuses_a_literal_it_cannot_express_in_one_line(tmp_path: Path) -> None:
    line = one_line(
        compile_file(
            tmp_path,
            """
            import rtflow

            @rtflow.stage(image="ghcr.io/a/b:1")
            def count(n: int) -> int:
                return n

            @rtflow.stage(image="ghcr.io/a/b:1")
            def send(payload: dict) -> None:
                pass

            @rtflow.pipeline(name="keys")
            def keys(n: int) -> None:
                send(payload={1: count(n)})
            """,
        )
    )
    assert line.startswith("rtflow: error: pipeline 'keys', stage 'send', field 'payload': ")
    assert "JSON keys are strings" in line
