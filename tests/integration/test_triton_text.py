"""Text tensors end to end against a real Triton (the nvidia-pytriton wheel's, on CPU).

The model (tests/local_pipelines/shout/1/model.py, a Python-backend model) takes TYPE_STRING
and answers TYPE_STRING (the text upper-cased) and INT64 (its length in characters). Every path
rtflow has to Triton sends it text and reads text back: the KServe v2 JSON body (what the Argo
http step sends), the gRPC client, the built-in gRPC client stage, the stream plane's batcher,
and pipelines run with ``rtflow run --local``'s executor, where a ``str`` from the event (or a
stage's ``str`` output in a list literal) feeds the tensor and a downstream stage reads the text.

The messages hold what pasting text into JSON would break: quotes, a backslash, a newline,
``<>&`` (which Argo's toJson escapes as Go does) and non-ASCII characters.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import local_triton_for
from local_pipelines import text

from rtflow.errors import DefinitionError
from rtflow.gpu.client import TritonGrpcClient
from rtflow.gpu.kserve import encode_request, infer_path, infer_request, parse_infer_response
from rtflow.gpu.triton_server import TritonServer
from rtflow.stages.builtin.triton_client import triton_infer
from rtflow.stages.events import Event, ListSource, MemorySink
from rtflow.stages.local import run_local
from rtflow.stages.stream.plan import Message, Plan
from rtflow.stages.stream.triton import Rejected, TritonBatcher

pytestmark = pytest.mark.integration

MESSAGES = [
    "hello",
    'she said "hi" \\ then left',
    "line one\nline two\ttabbed",
    "a < b && c > d",
    "straße café — ünïcödé 日本",
    "",
]


def shouted(message: str) -> tuple[str, int]:
    return message.upper(), len(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    folder = tmp_path_factory.mktemp("triton")
    with local_triton_for(text.text_http.build(), folder) as srv:
        yield srv


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with _OPENER.open(request, timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read()


def test_kserve_json_body_sends_and_reads_text(server: TritonServer) -> None:
    body = encode_request(infer_request(text.SHOUT, {"text": [[m] for m in MESSAGES]}))
    status, answer = post(server.http_url + infer_path(text.SHOUT), body)
    assert status == 200, answer
    outputs = parse_infer_response(text.SHOUT, answer)
    assert outputs["upper"].datatype == "BYTES"
    assert outputs["upper"].shape == (len(MESSAGES), 1)
    got = list(zip(outputs["upper"].data, outputs["length"].data, strict=True))
    assert got == [shouted(m) for m in MESSAGES]


def test_kserve_json_body_refuses_numbers_for_text() -> None:
    with pytest.raises(DefinitionError, match=r"input 'text' is BYTES, but holds 5"):
        infer_request(text.SHOUT, {"text": [[5]]})


def test_grpc_client_sends_and_reads_text(server: TritonServer) -> None:
    with TritonGrpcClient(server.grpc_url, text.SHOUT, timeout_seconds=10) as client:
        outputs = client.infer({"text": [[m] for m in MESSAGES]})
        # bytes are accepted on the way in (UTF-8), text comes back as str, never bytes
        raw = client.infer({"text": [[b"bytes in"]]})
        with pytest.raises(DefinitionError, match=r"input 'text' is BYTES but holds 5 \(int\)"):
            client.prepare({"text": [[5]]})  # tritonclient alone would send "5"
    assert outputs["upper"].shape == (len(MESSAGES), 1)
    assert outputs["upper"].reshape(-1).tolist() == [m.upper() for m in MESSAGES]
    assert outputs["length"].reshape(-1).tolist() == [len(m) for m in MESSAGES]
    assert raw["upper"].reshape(-1).tolist() == ["BYTES IN"]


def test_builtin_grpc_client_stage_answers_text_like_the_json_path(server: TritonServer) -> None:
    answer = triton_infer(server.grpc_url, text.SHOUT.name, {"text": [MESSAGES[1]]})
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["upper"] == {
        "name": "upper",
        "datatype": "BYTES",
        "shape": [1, 1],
        "data": [MESSAGES[1].upper()],
    }
    assert outputs["length"]["data"] == [len(MESSAGES[1])]


def test_stream_plane_batcher_sends_text_and_rejects_numbers(server: TritonServer) -> None:
    batcher = TritonBatcher(server.grpc_url, text.SHOUT, batch=4, in_flight=2, timeout_seconds=10)
    try:
        rows: list[dict[str, Any]] = [{"text": [m]} for m in MESSAGES]
        rows.insert(2, {"text": [7]})
        answers = batcher.infer(rows)
    finally:
        batcher.close()
    rejected = answers.pop(2)
    assert isinstance(rejected, Rejected) and "is BYTES but holds 7" in rejected.reason
    for message, answer in zip(MESSAGES, answers, strict=True):
        assert not isinstance(answer, Rejected), answer
        outputs = {o["name"]: o for o in answer["outputs"]}
        assert outputs["upper"] == {
            "name": "upper",
            "datatype": "BYTES",
            "shape": [1, 1],
            "data": [message.upper()],
        }
        assert outputs["length"]["data"] == [len(message)]


@pytest.mark.parametrize(
    "pipeline",
    [text.text_http, text.text_grpc],
    ids=["http-str-input", "grpc-list-literal"],
)
def test_a_str_from_the_event_reaches_the_model_and_a_stage_reads_the_text(
    pipeline: Any, server: TritonServer, tmp_path: Path
) -> None:
    out, dead = MemorySink(), MemorySink()
    summary = run_local(
        pipeline.build(),
        ListSource([{"message": m} for m in MESSAGES]),
        output=out,
        dead_letter=dead,
        max_in_flight=4,
        triton=server,
        log_dir=tmp_path / "logs",
    )
    assert summary.failed == 0, dead.records
    by_event = {r["event"]: r["outputs"]["read-back"]["result"] for r in out.records}
    for index, message in enumerate(MESSAGES):
        upper, length = shouted(message)
        assert by_event[f"event:{index}"] == {"sent": message, "upper": upper, "length": length}


def test_a_stage_s_str_output_in_a_list_literal_reaches_the_model(
    server: TritonServer, tmp_path: Path
) -> None:
    out, dead = MemorySink(), MemorySink()
    names = ['Ada "the first"', "<script>&amp;", "Zoë"]
    run_local(
        text.text_output.build(),
        [Event(f"e{i}", {"name": n}) for i, n in enumerate(names)],
        output=out,
        dead_letter=dead,
        triton=server,
        log_dir=tmp_path / "logs",
    )
    assert not dead.records, dead.records
    got = sorted(r["outputs"]["read-back"]["result"]["upper"] for r in out.records)
    assert got == sorted(f'HELLO "{n.upper()}"' for n in names)


def test_the_stream_plane_sends_the_event_s_text_and_publishes_what_a_stage_read(
    server: TritonServer,
) -> None:
    pipeline = text.text_stream.build()
    plan = Plan(pipeline)
    plan.bind_triton({text.SERVER.name: server.grpc_url})
    messages = [
        Message("messages", 0, offset, json.dumps({"message": m}).encode(), None, [], 0)
        for offset, m in enumerate(MESSAGES)
    ]
    # 5 reaches a str input as the text "5", as the Sensor renders it (docs/triggers.md);
    # an event without the mapped field starts nothing on either plane: a dead letter here
    messages.append(Message("messages", 0, 98, json.dumps({"message": 5}).encode(), None, [], 0))
    messages.append(Message("messages", 0, 99, json.dumps({"other": "x"}).encode(), None, [], 0))
    result = plan.execute(messages)
    published = [json.loads(r.value) for r in result.records if r.topic == "shouted"]
    assert published == [
        {
            "answer": {"sent": m, "upper": m.upper(), "length": len(m)},
            "message": m,
            "tags": [m],
            "upper": [m.upper()],
        }
        for m in [*MESSAGES, "5"]
    ]
    assert result.dead_lettered == {"payload": 1}, result.dead_lettered  # the missing field


@pytest.mark.parametrize("pipeline", [text.text_pick, text.text_pick_grpc], ids=["http", "grpc"])
def test_a_stage_reads_picked_outputs_typed_without_parsing_the_answer(
    pipeline: Any, server: TritonServer, tmp_path: Path
) -> None:
    out, dead = MemorySink(), MemorySink()
    run_local(
        pipeline.build(),
        ListSource([{"message": m} for m in MESSAGES]),
        output=out,
        dead_letter=dead,
        max_in_flight=4,
        triton=server,
        log_dir=tmp_path / "logs",
    )
    assert not dead.records, dead.records
    by_event = {r["event"]: r["outputs"]["summary"]["result"] for r in out.records}
    for index, m in enumerate(MESSAGES):
        assert by_event[f"event:{index}"] == f"{m!r} -> {m.upper()!r} ({len(m)} characters)"


def test_rtflow_run_local_streams_text_from_a_real_broker_to_the_published_answer(
    server: TritonServer, kafka_broker: Any, tmp_path: Path
) -> None:
    """The stream plane for real: JSON events through a Kafka broker, a worker process, the
    real Triton over gRPC, the downstream stage, the publish; read back read_committed."""
    from stream_harness import read_committed

    from rtflow.stream_layout import stream_topics

    pipeline = text.text_stream.build()
    kafka_broker.create_topics(*stream_topics(pipeline))
    events = tmp_path / "events.jsonl"
    sent = [f"{m} #{i}" for i, m in enumerate(MESSAGES * 4)]
    lines = [json.dumps({"message": m}) for m in sent] + [json.dumps({"other": 5})]
    events.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "run", "--local",
         f"{Path(text.__file__)}:text_stream", "--events", str(events),
         "--kafka-brokers", kafka_broker.bootstrap_servers,
         "--triton-grpc-url", server.grpc_url, "--log-dir", str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads([ln for ln in done.stderr.splitlines() if ln.startswith("{")][-1])
    assert (summary["fed"], summary["processed"], summary["dead_lettered"]) == (
        len(sent) + 1,
        len(sent),
        1,  # no "message": the event does not fit the trigger's mapping
    )
    found = read_committed(kafka_broker.bootstrap_servers, "shouted", expected=len(sent))
    published = sorted((json.loads(r.value) for r in found), key=lambda p: sent.index(p["message"]))
    assert published == [
        {
            "answer": {"sent": m, "upper": m.upper(), "length": len(m)},
            "message": m,
            "tags": [m],
            "upper": [m.upper()],
        }
        for m in sent
    ]
