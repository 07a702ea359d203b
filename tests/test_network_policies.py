"""Zero trust on the network (issue #13): default-deny for a pipeline's pods, then only the
flows its own objects need, derived from their cross-references; the bundle check fails when
a needed flow is not allowed (per environment too)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from compiled import ROOT
from pipelines import namespaced

from rtflow.errors import BundleError
from rtflow.generators import bundle as bundle_module
from rtflow.generators.bundle import Bundle, Manifest
from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.network import AGENT, Flow, Peer
from rtflow.generators.network_check import _open, _Policies, blocked
from rtflow.loader import load_pipelines

Document = dict[str, Any]
TRITON = {
    "app.kubernetes.io/component": "inference-server",
    "app.kubernetes.io/name": "fraud-triton",
}


def fraud() -> Bundle:
    pipelines = [p.build() for p in load_pipelines(str(ROOT / "examples/fraud_detection.py"))[1]]
    return compile_pipelines(pipelines)


def policies(documents: list[Document]) -> list[Document]:
    return [d for d in documents if d["kind"] == "NetworkPolicy"]


def allowed(documents: list[Document], source: Peer, destination: Peer, port: int) -> bool:
    found = policies(documents)
    (namespace,) = {p["metadata"].get("namespace") for p in found}  # the pipeline's one
    flow = Flow("test", source, destination, port, namespace=namespace)
    index = _Policies(found)
    out = index.selecting(source.namespace or namespace, source, "Egress")
    into = index.selecting(destination.namespace or namespace, destination, "Ingress")
    return _open(out, "Egress", destination, flow) and _open(into, "Ingress", source, flow)


@pytest.mark.parametrize(
    "target",
    ["examples/fraud_detection.py", "examples/support_triage.py", "tests/pipelines/namespaced.py"],
)
def test_every_component_is_closed_but_for_what_it_needs(target: str) -> None:
    pipelines = [p.build() for p in load_pipelines(str(ROOT / target))[1]]
    bundle = compile_pipelines(pipelines)
    for env in [None, *sorted({e for e, _ in bundle.rendered})]:
        documents = (
            [m.body for m in bundle.manifests]
            if env is None
            else [m.body for e, m in bundle.rendered if e == env]
        )
        assert blocked(documents) == [], env
        found = policies(documents)
        names = {p["metadata"]["name"] for p in found}
        for pipeline in pipelines:
            assert f"{pipeline.name}-default-deny" in names
            deny = next(
                p for p in found if p["metadata"]["name"] == f"{pipeline.name}-default-deny"
            )
            assert deny["spec"]["ingress"] == [] and deny["spec"]["egress"] == []
        for document in documents:
            selector = _pods_of(document)
            if selector is None:
                continue
            covering = [
                p
                for p in found
                if set(p["spec"]["podSelector"]["matchLabels"].items()) <= set(selector.items())
                and p["spec"]["policyTypes"] == ["Ingress", "Egress"]
            ]
            assert covering, f"{env}: {document['kind']}/{document['metadata']['name']} is open"


def _pods_of(document: Document) -> dict[str, str] | None:
    kind, name = document["kind"], document["metadata"]["name"]
    if kind == "Deployment":
        return dict(document["spec"]["selector"]["matchLabels"])
    if kind == "Sensor":
        return {"sensor-name": name}
    if kind == "EventSource":
        return {"eventsource-name": name}
    if kind == "WorkflowTemplate":
        return dict(document["spec"]["podMetadata"]["labels"])
    return None


def test_triton_is_reachable_only_from_its_callers() -> None:
    documents = [m.body for m in fraud().manifests]
    triton = Peer.pods(TRITON)
    workers = Peer.pods(
        next(
            d["spec"]["selector"]["matchLabels"]
            for d in documents
            if d["kind"] == "Deployment" and d["metadata"]["name"] == "fraud-detection-stream"
        )
    )
    assert allowed(documents, workers, triton, 8001)
    stranger = Peer.pods({"app": "something-else"})
    for port in (8000, 8001, 8002):
        assert not allowed(documents, stranger, triton, port), port
    assert allowed(documents, Peer(None, "monitoring"), triton, 8002)
    assert not allowed(documents, Peer(None, "default"), triton, 8002)
    # The workers reach Triton's gRPC port only, not its HTTP (admin or not) port.
    assert not allowed(documents, workers, triton, 8000)


def test_http_and_grpc_steps_reach_their_server() -> None:
    bundle = compile_pipelines([namespaced.rag.build()])
    documents = [m.body for m in bundle.manifests]
    server = Peer.pods(
        {"app.kubernetes.io/component": "inference-server", "app.kubernetes.io/name": "rag-triton"}
    )
    workflow = Peer.pods({"app.kubernetes.io/component": "stage", "rtflow.dev/pipeline": "rag"})
    assert allowed(documents, Peer.pods(AGENT), server, 8000)  # the http step, run by the agent
    assert allowed(documents, workflow, server, 8001)  # the gRPC client stage
    assert not allowed(documents, workflow, server, 8000)
    webhook = Peer.pods({"eventsource-name": "rag-questions"})
    assert allowed(documents, Peer(), webhook, 12000)  # the webhook takes calls from anywhere


def test_removing_a_needed_flow_fails_the_bundle_check() -> None:
    bundle = fraud()
    manifests = []
    for manifest in bundle.manifests:
        body = copy.deepcopy(manifest.body)
        if body["kind"] == "NetworkPolicy" and body["metadata"]["name"] == "fraud-triton":
            body["spec"]["ingress"] = [
                r for r in body["spec"]["ingress"] if 8001 not in [p["port"] for p in r["ports"]]
            ]
        manifests.append(Manifest(manifest.pipeline, body))
    with pytest.raises(BundleError) as caught:
        bundle_module.check(Bundle(manifests=tuple(manifests)))
    message = str(caught.value)
    assert "Deployment fraud-detection-stream: --triton: ingress" in message
    assert "8001" in message


def test_an_environments_brokers_move_the_policies_with_them() -> None:
    bundle = fraud()
    kind = [m.body for e, m in bundle.rendered if e == "kind"]
    sensor = next(p for p in policies(kind) if p["metadata"]["name"] == "fraud-detection-sensor")
    ports = {p["port"] for rule in sensor["spec"]["egress"] for p in rule["ports"]}
    assert 9093 in ports and 9092 not in ports
    base = [m.body for m in bundle.manifests]
    sensor = next(p for p in policies(base) if p["metadata"]["name"] == "fraud-detection-sensor")
    assert 9092 in {p["port"] for rule in sensor["spec"]["egress"] for p in rule["ports"]}


def test_a_pipeline_declares_what_its_stages_call() -> None:
    import rtflow

    job = rtflow.container("report", image="ghcr.io/acme/report:1.0")

    @rtflow.pipeline(
        name="reporting",
        egress=[
            rtflow.Egress("10.20.0.0/16", ports=[5432]),
            rtflow.Egress("0.0.0.0/0", ports=[443]),
        ],
    )
    def reporting() -> None:
        job()

    documents = [m.body for m in compile_pipelines([reporting.build()]).manifests]
    (workflow,) = [p for p in policies(documents) if p["metadata"]["name"] == "reporting-workflow"]
    rules = workflow["spec"]["egress"]
    assert {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        "ports": [{"port": 5432, "protocol": "TCP"}],
    } in rules
    assert {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    } in rules


@pytest.mark.parametrize(
    ("egress", "field"),
    [
        ("0.0.0.0/0", "egress"),
        (["0.0.0.0/0"], "egress[0]"),
        ([("10.0.0.1/8", 443)], "egress[0]"),
    ],
)
def test_a_wrong_egress_is_one_line(egress: Any, field: str) -> None:
    import rtflow
    from rtflow.errors import DefinitionError

    job = rtflow.container("report", image="ghcr.io/acme/report:1.0")

    @rtflow.pipeline(name="reporting", egress=egress)
    def reporting() -> None:
        job()

    with pytest.raises(DefinitionError) as caught:
        reporting.build()
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        (("10.0.0.1/8", [443]), "egress[0].cidr"),
        (("10.0.0.0/8", [0]), "egress[0].ports"),
        (("10.0.0.0/8", []), "egress[0].ports"),
    ],
)
def test_a_wrong_egress_rule_names_its_field(rule: tuple[str, list[int]], field: str) -> None:
    import rtflow
    from rtflow.errors import DefinitionError

    job = rtflow.container("report", image="ghcr.io/acme/report:1.0")

    @rtflow.pipeline(name="reporting", egress=[rtflow.Egress(rule[0], ports=rule[1])])
    def reporting() -> None:
        job()

    with pytest.raises(DefinitionError) as caught:
        reporting.build()
    assert caught.value.field == field


def test_a_server_in_its_own_namespace_gets_its_policy_there() -> None:
    """A Triton server with ``namespace=`` of its own (tests/local_pipelines/scoring.py: "risk")
    is closed by a policy in that namespace, open to the pipeline's workflow pods by their
    namespace; a policy in the pipeline's namespace would select none of its pods and leave it
    open to every pod of the cluster."""
    from local_pipelines import scoring

    bundle = compile_pipelines([scoring.scoring_grpc.build()])
    documents = [m.body for m in bundle.manifests]
    (server,) = [p for p in policies(documents) if p["metadata"]["name"] == "scoring-triton"]
    assert server["metadata"]["namespace"] == "risk"
    assert {p["metadata"]["namespace"] for p in policies(documents) if p is not server} == {
        "scoring"
    }
    froms = [peer for rule in server["spec"]["ingress"] for peer in rule.get("from", [])]
    stage = {"app.kubernetes.io/component": "stage", "rtflow.dev/pipeline": "scoring-grpc"}
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "scoring"}},
        "podSelector": {"matchLabels": stage},
    } in froms
    workflow = next(p for p in policies(documents) if p["metadata"]["name"].endswith("-workflow"))
    tos = [peer for rule in workflow["spec"]["egress"] for peer in rule.get("to", [])]
    assert any(
        peer.get("namespaceSelector", {}).get("matchLabels")
        == {"kubernetes.io/metadata.name": "risk"}
        for peer in tos
    )
    # The check reads it the same way: without that ingress rule the gRPC step is blocked.
    changed = copy.deepcopy(server)
    changed["spec"]["ingress"] = [
        r for r in changed["spec"]["ingress"] if 8001 not in [p["port"] for p in r["ports"]]
    ]
    problems = blocked([changed if d is server else d for d in documents])
    assert any("ingress" in p and "8001" in p for p in problems), problems


def test_a_canary_controller_reaches_the_triton_another_pipeline_serves() -> None:
    # The controller's pipeline does not serve Triton (the scoring pipeline does), so its
    # policy allows Triton's namespace; compiled together, the bundle check must see that
    # this covers Triton's pods, and Triton must let in only the controller's marked stages.
    # (The bundle check refused this folder before: compile_pipelines raises if it fails.)
    target = ROOT / "examples/model_operations.py"
    bundle = compile_pipelines([p.build() for p in load_pipelines(str(target))[1]])
    documents = [m.body for m in bundle.manifests]
    triton = Peer.pods(
        {
            "app.kubernetes.io/component": "inference-server",
            "app.kubernetes.io/name": "fraud-ops-triton",
        }
    )
    stages = {"app.kubernetes.io/component": "stage"}
    controller = Peer.pods(
        {
            **stages,
            "rtflow.dev/pipeline": "fraud-scorer-canary",
            "rtflow.dev/canary-server": "fraud-ops-triton",
        }
    )
    for port in (8000, 8002):  # the repository API and the metrics
        assert allowed(documents, controller, triton, port), port
    retraining = Peer.pods({**stages, "rtflow.dev/pipeline": "fraud-retrain"})
    unmarked = Peer.pods({**stages, "rtflow.dev/pipeline": "fraud-scorer-canary"})
    for peer in (retraining, unmarked):
        assert not allowed(documents, peer, triton, 8000), peer
