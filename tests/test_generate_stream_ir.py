"""``rtflow.generate`` on the stream plane, compiled: a generate step is never a micro-batched
inference (no ``inference_batch``; the plan makes it a GenerateStep) and
``Stream(generations_in_flight=)`` bounds its concurrency (a positive number, else one line)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from local_pipelines import rag_generate

import rtflow
from rtflow.errors import DefinitionError
from rtflow.pipeline import Pipeline
from rtflow.stages.stream.generate_step import GenerateStep
from rtflow.stages.stream.plan import Plan
from rtflow.stages.stream.steps import InferenceStep


def test_a_generate_step_is_not_batched_and_the_plan_streams_it() -> None:
    pipeline = rag_generate.rag_generate_stream.build()
    assert pipeline.stream is not None
    assert pipeline.stream.inference_batch == (("retrieve-embed", 8),)
    assert pipeline.stream.generations_in_flight == 4
    kinds = {s.task.name: type(s) for s in Plan(pipeline).steps}
    assert kinds["reply"] is GenerateStep
    assert kinds["retrieve-embed"] is InferenceStep
    default = rag_generate.generate_stream.build().stream
    assert default is not None and default.generations_in_flight == 16


def _with_stream(**options: Any) -> Pipeline:
    definition = rag_generate.generate_stream
    stream = replace(rtflow.Stream(image=rag_generate.IMAGE), **options)
    return Pipeline(definition.function, replace(definition.options, stream=stream))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"inference_batch": {"reply": 4}}, "inference_batch names 'reply', not an inference"),
        ({"generations_in_flight": 0}, "0 is not a positive whole number"),
        ({"generations_in_flight": True}, "True is not a positive whole number"),
    ],
)
def test_wrong_generation_settings_are_one_line(options: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message) as caught:
        _with_stream(**options).build()
    assert "\n" not in str(caught.value)
