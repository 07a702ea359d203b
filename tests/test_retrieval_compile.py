"""What retrieval and conversations compile to, and the definitions that cannot compile.

The store stages are ordinary function templates with the store's Secret key mounted as a file
(``RTFLOW_*_STORE_DSN_FILE``, never the value); the embedding is an http step whose output the
retrieve stage reads through a pick; the pipeline's pods may reach the database (one egress
rule, only when a stage uses a store), on the workflow plane and in the stream workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from compiled import ROOT, compile_docs, tasks, templates, workflow_template
from local_pipelines import rag, text

import rtflow
from rtflow.errors import DefinitionError
from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import render_stream
from rtflow.stages import contract

DB_RULE = {
    "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
    "ports": [{"port": 5432, "protocol": "TCP"}],
}


def _database_rules(docs: list[dict[str, Any]], policy: str) -> list[Any]:
    (found,) = [d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == policy]
    return [e for e in found["spec"]["egress"] if "ipBlock" in json.dumps(e)]


def test_the_store_stages_mount_the_secret_as_a_file_and_read_the_embedding() -> None:
    doc = workflow_template(rag.rag)
    by_name = templates(doc)
    for stage, variable in (
        ("retrieve", "RTFLOW_VECTOR_STORE_DSN"),
        ("history", "RTFLOW_SESSION_STORE_DSN"),
        ("remember", "RTFLOW_SESSION_STORE_DSN"),
    ):
        container = by_name[stage]["container"]
        assert container["image"] == "ghcr.io/rtflow/retrieval:0.1.0"
        env = {e["name"]: e for e in container["env"]}
        assert env[f"{variable}_FILE"] == {
            "name": f"{variable}_FILE",
            "value": contract.secret_path("rag-db", "dsn"),
        }
        assert variable not in env  # the value is never in the pod's environment
        (volume,) = by_name[stage]["volumes"]
        (source,) = volume["projected"]["sources"]
        assert source["secret"] == {
            "name": "rag-db",
            "items": [{"key": "dsn", "path": "rag-db/dsn"}],
        }
    assert "http" in by_name["retrieve-embed"]
    dag = tasks(doc)
    arguments = {p["name"]: p["value"] for p in dag["retrieve"]["arguments"]["parameters"]}
    assert "tasks['retrieve-embed'].outputs.result" in arguments["embedding"]
    assert ".name == 'embedding'" in arguments["embedding"]
    assert arguments["collection"] == "docs"
    assert arguments["top_k"] == "2"
    answer_args = {p["name"]: p["value"] for p in dag["answer"]["arguments"]["parameters"]}
    assert answer_args["context"] == "{{tasks.retrieve.outputs.parameters.texts}}"
    assert answer_args["transcript"] == "{{tasks.history.outputs.parameters.transcript}}"


def test_the_database_flow_is_opened_only_where_a_store_is_used() -> None:
    assert _database_rules(compile_docs(rag.rag), "rag-workflow") == [
        DB_RULE
    ]  # two stores, one rule
    assert _database_rules(compile_docs(rag.rag_lookup), "rag-lookup-workflow") == [DB_RULE]
    assert _database_rules(compile_docs(text.text_http), "text-http-workflow") == []


def test_a_flow_the_pipeline_declares_too_is_not_repeated() -> None:
    store = rtflow.VectorDatabase(dsn=DB, egress=rtflow.Egress("10.20.0.0/16", ports=[5432]))

    @rtflow.pipeline(name="declares-it", egress=[rtflow.Egress("10.20.0.0/16", ports=[5432])])
    def declares_it(question: str) -> None:
        found = rtflow.retrieve(rag.SERVER, rag.EMBED, question, store=store, collection="docs")
        use(found.texts)

    assert _database_rules(compile_docs(declares_it), "declares-it-workflow") == [DB_RULE]


def test_the_stream_workers_mount_the_secret_and_reach_the_database() -> None:
    docs = compile_docs(rag.rag_stream)
    assert _database_rules(docs, "rag-stream-stream") == [DB_RULE]
    (worker,) = [
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "rag-stream-stream"
    ]
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    path = "/var/run/secrets/rtflow/stages/rag-db/dsn"
    assert env["RTFLOW_VECTOR_STORE_DSN_FILE"] == env["RTFLOW_SESSION_STORE_DSN_FILE"] == path
    assert not {"RTFLOW_VECTOR_STORE_DSN", "RTFLOW_SESSION_STORE_DSN"} & set(env)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["stage-credentials"] == {
        "name": "stage-credentials",
        "mountPath": "/var/run/secrets/rtflow/stages",
        "readOnly": True,
    }
    (volume,) = [v for v in pod["volumes"] if v["name"] == "stage-credentials"]
    assert volume["projected"]["sources"] == [
        {"secret": {"name": "rag-db", "items": [{"key": "dsn", "path": "rag-db/dsn"}]}}
    ]


def test_the_output_is_byte_for_byte_the_same_each_time() -> None:
    def render() -> list[str]:
        return [render_stream(compile_pipelines([p.build()])) for p in (rag.rag, rag.rag_stream)]

    assert render() == render()


DB = rtflow.SecretKey("db", "dsn")
AT = rtflow.Egress("10.0.0.0/8", ports=[5432])


@rtflow.stage(image="ghcr.io/acme/rag:1.0")
def use(value: list[str]) -> None:
    pass


def _pipeline(body: Callable[[str], None]) -> rtflow.Pipeline:
    @rtflow.pipeline(name="bad-rag")
    def bad_rag(question: str) -> None:
        body(question)
        use([question])

    return bad_rag


def _retrieve(**overrides: Any) -> Callable[[str], None]:
    def body(question: str) -> None:
        options: dict[str, Any] = {
            "store": rtflow.VectorDatabase(dsn=DB, egress=AT),
            "collection": "docs",
            **overrides,
        }
        rtflow.retrieve(rag.SERVER, rag.EMBED, question, **options)

    return body


TWO_OUTPUTS = rtflow.gpu.triton_model(
    "embed2",
    backend="python",
    max_batch_size=8,
    inputs=[rtflow.gpu.Tensor("text", "TYPE_STRING", (1,))],
    outputs=[
        rtflow.gpu.Tensor("dense", "TYPE_FP32", (3,)),
        rtflow.gpu.Tensor("sparse", "TYPE_FP32", (3,)),
    ],
    repository="pvc://m/embed2",
    versions=[1],
)
TWO_SERVER = rtflow.gpu.triton_serving("two-triton", [TWO_OUTPUTS], cpu="1", memory="1Gi")


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (_retrieve(collection="Docs; DROP TABLE x"), "collection", "is not a table name"),
        (_retrieve(top_k=0), "top_k", "is not a count of documents"),
        (_retrieve(top_k=True), "top_k", "is not a count of documents"),
        (_retrieve(where={"lang": 1}), "where", "not a mapping of str to str"),
        (_retrieve(store="postgres://u:p@db/x"), "store", "not rtflow.VectorDatabase"),
        (
            _retrieve(store=rtflow.VectorDatabase(dsn="postgres://u:p@db/x", egress=AT)),  # type: ignore[arg-type]
            "store.dsn",
            "not a key of a Secret",
        ),
        (
            _retrieve(store=rtflow.VectorDatabase(dsn=DB, egress=rtflow.Egress("db.internal"))),
            "store.egress",
            "is not an address block",
        ),
        (
            _retrieve(store=rtflow.VectorDatabase(dsn=DB, egress=AT, metric="dot")),
            "store.metric",
            "is not one of cosine, l2, inner_product",
        ),
        (_retrieve(embedding_output="vector"), "embedding_output", "has no output 'vector'"),
        (
            lambda q: rtflow.retrieve(
                rag.SERVER,
                "embed",
                q,
                store=rtflow.VectorDatabase(dsn=DB, egress=AT),
                collection="docs",
            ),
            "model",
            "not a model declaration",
        ),
        (
            lambda q: rtflow.history(rtflow.SessionDatabase(dsn=DB, egress=AT, max_turns=1), q),
            "store.max_turns",
            "cannot hold an exchange",
        ),
        (
            lambda q: rtflow.history(rtflow.SessionDatabase(dsn=DB, egress=AT, prefix="a-b"), q),
            "store.prefix",
            "is not a table name",
        ),
    ],
)
def test_a_bad_definition_is_one_line_naming_the_field(
    body: Callable[[str], None], field: str, says: str
) -> None:
    with pytest.raises(DefinitionError) as raised:
        _pipeline(body).build()
    error = raised.value
    assert (error.pipeline, error.field) == ("bad-rag", field)
    assert says in error.problem
    assert error.fix
    assert "\n" not in str(error)


def test_a_model_with_several_outputs_must_name_the_embedding() -> None:
    def body(question: str) -> None:
        store = rtflow.VectorDatabase(dsn=DB, egress=AT)
        rtflow.retrieve(TWO_SERVER, TWO_OUTPUTS, question, store=store, collection="docs")

    with pytest.raises(DefinitionError, match="has 2 outputs") as raised:
        _pipeline(body).build()
    assert raised.value.field == "embedding_output"
    assert "dense, sparse" in raised.value.fix

    def named(question: str) -> None:
        store = rtflow.VectorDatabase(dsn=DB, egress=AT)
        rtflow.retrieve(
            TWO_SERVER,
            TWO_OUTPUTS,
            question,
            store=store,
            collection="docs",
            embedding_output="dense",
        )

    assert _pipeline(named).build().task("retrieve")


def test_rtflow_compile_exits_2_with_one_line(tmp_path: Path) -> None:
    source = tmp_path / "bad_rag.py"
    source.write_text(
        textwrap.dedent(
            """
            import rtflow
            from local_pipelines.rag import EMBED, SERVER

            DOCS = rtflow.VectorDatabase(
                dsn=rtflow.SecretKey("db", "dsn"), egress=rtflow.Egress("10.0.0.0/8", ports=[5432])
            )

            @rtflow.pipeline(name="bad-rag")
            def bad_rag(question: str) -> None:
                rtflow.retrieve(SERVER, EMBED, question, store=DOCS, collection="docs", top_k=0)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "compile", str(source), "-o", "-"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "tests"), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "bad-rag" in lines[0] and "top_k" in lines[0] and "retrieve" in lines[0]
