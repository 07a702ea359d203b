"""The conversational RAG example's database loader embeds the handbook itself
(examples/local/rag_database.py: no Triton is running yet when it loads), while questions are
embedded by the example's rag-embedder model on Triton. Retrieval is only right if the two are
the same function: checked here against the real model, on every handbook entry and question."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import local_triton_for

from rtflow.loader import load_pipelines

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "examples" / "local"


def _loader() -> Any:
    spec = importlib.util.spec_from_file_location("rag_database", LOCAL / "rag_database.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    _, pipelines = load_pipelines(str(ROOT / "examples" / "conversational_rag.py"))
    pipeline = pipelines[0].build()  # every pipeline of the example calls the same server
    with local_triton_for(pipeline, tmp_path_factory.mktemp("triton")) as server:
        yield server


def test_the_loader_embeds_as_the_model_does(triton: Any) -> None:
    import numpy as np
    import tritonclient.grpc as grpcclient

    loader = _loader()
    lines = (LOCAL / "rag_questions.jsonl").read_text().splitlines()
    questions = [json.loads(line)["question"] for line in lines]
    texts = [text for _, text in loader.HANDBOOK] + questions
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        for text in texts:
            tensor = grpcclient.InferInput("text", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
            answer = client.infer("rag-embedder", [tensor]).as_numpy("embedding")[0]
            assert np.allclose(answer, loader.embed(text), atol=1e-6), text
    finally:
        client.close()
