"""A retrieval-augmented pipeline with a conversation: the session's history, the question
embedded on a real Triton (``embed/1/model.py``, a bag-of-words model on CPU) and looked up in
PostgreSQL with pgvector, an answer made from both, the exchange appended to the session.

``answer`` stands in for a generator (a deterministic sentence): what is under test is what
reaches it (the retrieved texts, closest first, and the transcript) and what is kept after.
"""

from __future__ import annotations

import rtflow
from rtflow.gpu.models import triton_model
from rtflow.gpu.server import triton_image, triton_serving
from rtflow.gpu.tensors import Tensor
from rtflow.stages.builtin.kafka_publish import kafka_publish

EMBED = triton_model(
    "embed",
    backend="python",
    max_batch_size=8,
    inputs=[Tensor("text", "TYPE_STRING", (1,))],
    outputs=[Tensor("embedding", "TYPE_FP32", (3,))],
    repository="pvc://triton-models/rag",
    versions={1: "embed/1"},
)
SERVER = triton_serving(
    "rag-triton",
    [EMBED],
    cpu="1",
    memory="1Gi",
    # Pinned, as a cluster should run it (a fictional digest: no registry is reached).
    image=f"{triton_image('24.10')}@sha256:6f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5",
)
DATABASE = rtflow.SecretKey("rag-db", "dsn")
DATABASE_AT = rtflow.Egress("10.20.0.0/16", ports=[5432])
DOCS = rtflow.VectorDatabase(dsn=DATABASE, egress=DATABASE_AT)
SESSIONS = rtflow.SessionDatabase(dsn=DATABASE, egress=DATABASE_AT, max_turns=4)


@rtflow.stage(image="ghcr.io/acme/rag:1.0")
def answer(question: str, context: list[str], transcript: str) -> str:
    earlier = len(transcript.splitlines())
    return f"{question} -> {' | '.join(context)} ({earlier} earlier turns)"


@rtflow.pipeline(name="rag", namespace="rag")
def rag(session: str, question: str) -> None:
    past = rtflow.history(SESSIONS, session)
    found = rtflow.retrieve(SERVER, EMBED, question, store=DOCS, collection="docs", top_k=2)
    reply = answer(question=question, context=found.texts, transcript=past.transcript)
    rtflow.remember(SESSIONS, session, user=question, assistant=reply)


@rtflow.pipeline(name="rag-lookup", namespace="rag-lookup")
def rag_lookup(question: str) -> None:
    """Retrieval alone: no session store, so no session flows."""
    found = rtflow.retrieve(SERVER, EMBED, question, store=DOCS, collection="docs", top_k=2)
    answer(question=question, context=found.texts, transcript="")


@rtflow.pipeline(
    name="rag-stream",
    namespace="rag-stream",
    latency_budget_ms=2_000,
    triggers=[
        rtflow.kafka(
            "questions",
            brokers=["kafka:9092"],
            consumer_group="rag",
            inputs={"session": "body.session", "question": "body.question", "asked": "body.id"},
        )
    ],
    stream=rtflow.Stream(
        # Pinned, as a cluster should run it (a fictional digest: no registry is reached).
        image="ghcr.io/acme/rag/stream:test@sha256:c01144f49a36aa24115b0f3445dc819043b69e4f1eb3ebee62414688401256af",
    ),
)
def rag_stream(session: str, question: str, asked: str) -> None:
    """The same steps on the stream plane, fused in one worker, and the answer published."""
    past = rtflow.history(SESSIONS, session)
    found = rtflow.retrieve(SERVER, EMBED, question, store=DOCS, collection="docs", top_k=2)
    reply = answer(question=question, context=found.texts, transcript=past.transcript)
    # the event's id: a batch retried after a failed commit appends its exchanges once
    rtflow.remember(SESSIONS, session, user=question, assistant=reply, request_id=asked)
    publish = rtflow.configure(kafka_publish, name="publish")
    publish(topic="answers", payload={"session": session, "answer": reply, "ids": found.ids})
