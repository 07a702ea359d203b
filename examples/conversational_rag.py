"""Conversational RAG: answer a customer's chat message from the handbook, streamed.

Each chat message (a Kafka topic keyed by session) is answered on the stream plane: the
session's history is read, the question is embedded by a Triton model and looked up in
PostgreSQL with pgvector (the connection string in a Secret), a prompt is written from the
nearest documents and the transcript, a decoupled LLM on Triton streams the answer (time to
first token measured), the exchange is appended to the session, and the answer is published
in the worker's Kafka transaction. An answer the handbook barely supports is handed to the
workflow plane: a person reviews it (or the review times out and it is escalated anyway), and
an escalation is posted to the helpdesk's API (an Argo http step with a Secret header, no pod);
otherwise the answer is only recorded as reviewed.

The two models are CPU stand-ins here (examples/models/rag-embedder, rag-generator); in a
cluster the generator is a vLLM model on GPUs (``rtflow.gpu.llm.vllm_model``), called the same
way.

Compile:  rtflow compile examples/conversational_rag.py -o manifests
Run here: python examples/local/rag_database.py -- rtflow run --local \
              examples/conversational_rag.py --plane workflow \
              --events examples/local/rag_questions.jsonl \
              --stand-ins examples/local/rag_stand_ins.py --auto-approve
"""

from __future__ import annotations

from typing import Any, NamedTuple

import rtflow
from rtflow.gpu import InstanceGroup, Tensor, triton_model, triton_serving
from rtflow.gpu.server import triton_image
from rtflow.stages.builtin.kafka_publish import kafka_publish

REGISTRY = "ghcr.io/acme/assistant"
BROKERS = ["kafka-0.kafka.svc:9092"]

EMBEDDER = triton_model(
    "rag-embedder",
    backend="python",
    max_batch_size=16,
    inputs=[Tensor("text", "TYPE_STRING", (1,))],
    outputs=[Tensor("embedding", "TYPE_FP32", (32,))],
    instance_groups=[InstanceGroup(count=2, kind="KIND_CPU")],
    repository="pvc://triton-models/assistant",
    versions={1: "models/rag-embedder/1"},
)
GENERATOR = triton_model(
    "rag-generator",
    backend="python",
    max_batch_size=0,
    decoupled=True,  # one request, a response per token
    inputs=[Tensor("text_input", "TYPE_STRING", (1,)), Tensor("max_tokens", "TYPE_INT32", (1,))],
    outputs=[Tensor("text_output", "TYPE_STRING", (1,))],
    instance_groups=[InstanceGroup(count=1, kind="KIND_CPU")],
    repository="pvc://triton-models/assistant",
    versions={1: "models/rag-generator/1"},
    parameters={"delay_ms": 10},
)
# Images by digest, as a cluster should run them (fictional digests: nothing is pulled here).
TRITON_IMAGE = (
    f"{triton_image('24.10')}@sha256:"
    "8f9b085a4c26463c7378ea1cd1ea9efa854395eb0dca31f93294fe5b49962829"
)
STREAM_IMAGE = (
    f"{REGISTRY}/rag-stream:1.0.0@sha256:"
    "e64248e0437cc7c8f469c5382cee250fa639489ac08e764370fa2f168a24a001"
)
SERVER = triton_serving(
    "assistant-triton", [EMBEDDER, GENERATOR], cpu="2", memory="2Gi", image=TRITON_IMAGE
)

# One PostgreSQL with pgvector holds the handbook's vectors and the sessions; its libpq
# connection string (password included) is the Secret's key, mounted as a file.
DATABASE = rtflow.SecretKey("assistant-db", "dsn")
DATABASE_AT = rtflow.Egress("10.20.0.0/16", ports=[5432])
HANDBOOK = rtflow.VectorDatabase(dsn=DATABASE, egress=DATABASE_AT)
SESSIONS = rtflow.SessionDatabase(dsn=DATABASE, egress=DATABASE_AT, max_turns=12)
HELPDESK = "https://helpdesk.example.com/api/v2/escalations"

messages = rtflow.kafka(
    "chat-messages",
    brokers=BROKERS,
    consumer_group="assistant",
    inputs={"session": "body.session", "question": "body.question", "message_id": "body.id"},
    payload_schema={"session": str, "question": str, "id": str},
)


class Reply(NamedTuple):
    text: str
    confidence: float
    ttft_ms: float


@rtflow.stage(image=f"{REGISTRY}/rag:1.0.0", cpu="250m", memory="256Mi")
def build_prompt(question: str, context: list[str], transcript: str) -> str:
    """The generator's prompt: the nearest documents, the conversation so far, the question."""
    documents = "\n".join(f"- {text}" for text in context) or "- (nothing found)"
    return f"Context:\n{documents}\nHistory:\n{transcript}\nQuestion: {question}"


@rtflow.stage(image=f"{REGISTRY}/rag:1.0.0", cpu="250m", memory="256Mi")
def finish(generated: dict[str, Any], scores: list[float]) -> Reply:
    """The streamed answer, with how well the handbook supports it (the nearest document's
    cosine similarity) and its time to first token."""
    return Reply(
        text=str(generated["text"]),
        confidence=round(max(scores, default=0.0), 4),
        ttft_ms=float(generated["ttft_ms"]),
    )


@rtflow.stage(image=f"{REGISTRY}/rag:1.0.0", cpu="250m", memory="256Mi")
def record_review(session: str, decision: str) -> str:
    """The reviewer kept the answer: noted for the weekly handbook review."""
    return f"session {session}: answer kept ({decision})"


publish = rtflow.configure(kafka_publish, name="publish-answer")


@rtflow.pipeline(
    name="conversational-rag",
    namespace="assistant",
    latency_budget_ms=2_000,
    default_timeout="30s",
    triggers=[messages],
    stream=rtflow.Stream(
        transaction_interval_ms=50,
        max_wait_ms=10,
        generations_in_flight=32,
        partitions=6,
        image=STREAM_IMAGE,
    ),
)
def conversational_rag(
    session: str, question: str, message_id: str, escalate_below: float = 0.45
) -> None:
    past = rtflow.history(SESSIONS, session)
    found = rtflow.retrieve(
        SERVER, EMBEDDER, question, store=HANDBOOK, collection="handbook", top_k=3
    )
    prompt = build_prompt(question=question, context=found.texts, transcript=past.transcript)
    generated = rtflow.generate(SERVER, GENERATOR, prompt, max_tokens=48, timeout="20s")
    reply = finish(generated, found.scores)
    rtflow.remember(SESSIONS, session, user=question, assistant=reply.text, request_id=message_id)
    publish(
        topic="chat-answers",
        key_field="session",
        payload={
            "session": session,
            "id": message_id,
            "answer": reply.text,
            "sources": found.ids,
            "confidence": reply.confidence,
        },
    )
    with rtflow.when(reply.confidence < escalate_below):
        review = rtflow.approval(
            "review-answer", timeout="15m", on_timeout="approve", after=[reply]
        )
        with rtflow.when(review.approved):
            rtflow.http(
                HELPDESK,
                method="POST",
                json={"session": session, "question": question, "answer": reply.text},
                secret_headers={"Authorization": rtflow.SecretKey("helpdesk-api", "bearer")},
                success_status=range(200, 300),
                name="escalate",
            )
        with rtflow.otherwise():
            record_review(session=session, decision=review.decision)
