"""``rtflow.canary`` and ``rtflow.canary_rollout`` without a cluster: the policy's checks, the
stream plane's share split, the stats arithmetic and verdict, and the compiled controller."""

from __future__ import annotations

from typing import Any

import pytest
import strict_schema
from compiled import compile_docs, tasks
from local_pipelines import canary_rollout, routing

import rtflow
from rtflow.errors import DefinitionError
from rtflow.gpu.addresses import infer_url
from rtflow.gpu.config import render_config
from rtflow.gpu.models import VersionPolicy, triton_model
from rtflow.gpu.tensors import Tensor
from rtflow.stages.builtin.canary import judge
from rtflow.stages.rollout_state import (
    LATENCY_BOUNDS,
    RolloutState,
    VersionStats,
    p99_ms,
    stats_delta,
)
from rtflow.stages.stream.batch import Message
from rtflow.stages.stream.rollout import SHARE_POINTS, VersionRouter, share_point


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"steps": (50, 10, 100)}, "steps", "do not strictly increase"),
        ({"steps": (10, 50)}, "steps", "the last step is 50, not 100"),
        ({"steps": (0, 100)}, "steps", "not a whole percent"),
        ({"steps": ()}, "steps", "not a sequence"),
        ({"window": "soon"}, "window", "not a positive duration"),
        ({"window": "0s"}, "window", "not a positive duration"),
        ({"min_requests": 0}, "min_requests", "positive whole number"),
        ({"max_error_rate": 1.5}, "max_error_rate", "fraction in [0, 1)"),
        ({"max_p99_ms": -3}, "max_p99_ms", "positive number"),
        ({"topic": "no spaces"}, "topic", "not a Kafka topic name"),
    ],
)
def test_a_bad_policy_is_a_one_line_error_naming_the_field_and_the_fix(
    kwargs: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        rtflow.canary(**kwargs)
    assert caught.value.field == field and words in caught.value.problem, caught.value.line()
    assert caught.value.fix and "\n" not in caught.value.line()


def test_the_policy_keeps_what_it_was_given() -> None:
    policy = rtflow.canary((5, 25, 100), window="1m30s", min_requests=50, max_p99_ms=40)
    assert (policy.steps, policy.window_seconds, policy.min_requests) == ((5, 25, 100), 90.0, 50)
    assert policy.as_json()["max_p99_ms"] == 40.0 and policy.topic == "rtflow-rollouts"


def _model(**kwargs: Any) -> Any:
    return triton_model(
        "m",
        backend="python",
        inputs=[Tensor("x", "TYPE_FP32", (1,))],
        outputs=[Tensor("y", "TYPE_FP32", (1,))],
        repository="pvc://models/m",
        canary=rtflow.canary(),
        **kwargs,
    )


def test_a_model_under_canary_compiles_to_its_stable_version_alone() -> None:
    assert _model(versions=[1, 2, 4]).version_policy == VersionPolicy.specific(4)
    pinned = canary_rollout.SCORER
    assert pinned.version_policy == VersionPolicy.specific(1)
    assert "version_policy: { specific: { versions: [ 1 ] } }" in render_config(pinned)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({}, "versions"), ({"versions": [1, 2], "version_policy": VersionPolicy.specific(1, 2)},
                        "version_policy")],
)  # fmt: skip
def test_a_canary_needs_numbered_versions_and_one_stable(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        _model(**kwargs)
    assert caught.value.field == field


def test_a_streaming_model_cannot_be_rolled_out_by_a_canary() -> None:
    with pytest.raises(DefinitionError) as caught:
        _model(versions=[1], decoupled=True)
    assert caught.value.field == "canary" and "decoupled" in caught.value.problem


def _router(state: RolloutState) -> VersionRouter:
    router = VersionRouter("127.0.0.1:1", canary_rollout.SCORER, stage="score", batch=8)
    router.follow(state)
    return router


def test_the_share_split_is_deterministic_and_close_to_the_share() -> None:
    router = _router(RolloutState("canary-scorer", 1, 2, 10, "canary"))
    messages = [
        Message("payments", p, o, b"{}", None, [], 0) for p in range(4) for o in range(2500)
    ]
    chosen = [router.version_of(m) for m in messages]
    assert abs(chosen.count(2) - 1000) < 100  # 10% of 10,000, within 1 point
    assert chosen == [router.version_of(m) for m in messages]  # the same event, the same version
    assert all(0 <= share_point("t", 0, o) < SHARE_POINTS for o in range(100))
    # past the canary (rolled back or promoted) every event goes to the stable version
    router.follow(RolloutState("canary-scorer", 1, 2, 10, "rolled-back"))
    assert {router.version_of(m) for m in messages} == {1}


def _stats(rows: int, errors: int, fast: int) -> dict[str, Any]:
    stats = VersionStats()
    for index in range(rows):
        stats.observe(1, 1 if index < errors else 0, 0.001 if index < fast else 0.2)
    return stats.as_json()


def test_the_stats_difference_takes_a_restarted_worker_s_counts_as_new() -> None:
    before = {"stats/m/a": {"versions": {"2": _stats(10, 1, 10)}},
              "stats/m/b": {"versions": {"2": _stats(50, 0, 50)}}}  # fmt: skip
    after = {
        "stats/m/a": {"versions": {"2": _stats(30, 3, 30)}},  # 20 rows, 2 errors more
        "stats/m/b": {"versions": {"2": _stats(4, 4, 4)}},  # restarted: 4 rows since, all new
        "stats/m/c": {"versions": {"2": _stats(6, 0, 6), "1": _stats(9, 9, 9)}},  # started
    }
    delta = stats_delta(before, after, 2)
    assert (delta.rows, delta.errors) == (20 + 4 + 6, 2 + 4 + 0)
    assert delta.buckets[-1] == 30
    assert stats_delta(after, after, 2).rows == 0


def test_p99_is_interpolated_in_its_bucket_as_prometheus_does() -> None:
    stats = VersionStats.from_json(_stats(100, 0, 50))  # 50 at 1 ms, 50 at 200 ms
    p99 = p99_ms(stats)
    assert p99 is not None and LATENCY_BOUNDS[-5] * 1000 < p99 <= 250.0
    assert p99_ms(VersionStats()) is None


def test_the_verdict_names_the_error_rate_the_latency_or_the_lack_of_requests() -> None:
    policy = rtflow.canary(min_requests=10, max_error_rate=0.05, max_p99_ms=50).as_json()
    failing = judge(policy, 20, {"success": 0, "failure": 12}, 40, 40, 3.0)
    assert failing.verdict == "fail" and "error rate 100.0% above 5.0%" in failing.reason
    slow = judge(policy, 20, {"success": 12}, 40, 0, 80.0)
    assert slow.verdict == "fail" and "p99 80.0 ms above 50 ms" in slow.reason
    few = judge(policy, 20, {"success": 3}, 4, 0, 3.0)
    assert few.verdict == "fail" and few.reason.startswith("inconclusive")
    assert judge(policy, 20, {"success": 12, "duration_us": 1200}, 40, 1, 3.0).verdict == "pass"


def test_the_controller_is_a_when_otherwise_per_step_and_passes_the_strict_schemas() -> None:
    docs = compile_docs(canary_rollout.controller)
    (template,) = [d for d in docs if d["kind"] == "WorkflowTemplate"]
    steps = tasks(template)
    assert set(steps) == {"canary-begin", "canary-analyze", "canary-shift", "canary-analyze-2",
                          "canary-promote", "canary-roll-back", "canary-roll-back-2"}  # fmt: skip
    passed = "'{{tasks.canary-analyze.outputs.parameters.verdict}}' == 'pass'"
    assert steps["canary-shift"]["when"] == passed
    assert steps["canary-roll-back-2"]["when"] == f"!({passed})"
    # stopped or failed without a verdict: the exit handler settles the rollout
    exit_handler = tasks(template, template["spec"]["onExit"])
    assert set(exit_handler) == {"canary-settle"}
    for document in docs:
        assert strict_schema.errors_any(document) == [], document["kind"]


def test_the_triton_policy_lets_the_controller_in_and_the_controller_out() -> None:
    docs = compile_docs(canary_rollout.canary_stream)
    (triton,) = [
        d for d in docs if d["kind"] == "NetworkPolicy" and "triton" in d["metadata"]["name"]
    ]
    allowed = [
        (r["from"][0].get("podSelector", {}).get("matchLabels"), [p["port"] for p in r["ports"]])
        for r in triton["spec"]["ingress"]
    ]
    assert ({"rtflow.dev/canary-server": "canary-triton"}, [8000, 8002]) in allowed
    controller = compile_docs(canary_rollout.controller)
    (workflow,) = [d for d in controller if d["kind"] == "NetworkPolicy"
                   and d["metadata"]["name"].endswith("-workflow")]  # fmt: skip
    ports = {p["port"] for rule in workflow["spec"]["egress"] for p in rule["ports"]}
    assert {8000, 8002, 9092} <= ports


def test_a_rollout_needs_a_model_under_canary_and_the_server_s_admin_key() -> None:
    with pytest.raises(DefinitionError) as caught:
        rtflow.canary_rollout(routing.SERVER, "small", brokers=["kafka:9092"])
    assert caught.value.field == "model" and "no canary policy" in caught.value.problem
    with pytest.raises(DefinitionError) as caught:
        rtflow.canary_rollout(canary_rollout.SERVER, "other", brokers=["kafka:9092"])
    assert caught.value.field == "model"


def test_the_workflow_plane_calls_the_declared_stable_version_by_number() -> None:
    """Unversioned, Triton would answer with the highest version loaded: during a rollout the
    candidate, for all of the workflow plane's traffic."""
    from rtflow.generators.bundle import _INFER_URL

    docs = compile_docs(canary_rollout.canary_workflow)
    (template,) = [d for d in docs if d["kind"] == "WorkflowTemplate"]
    (step,) = [t for t in template["spec"]["templates"] if "http" in t]
    url = step["http"]["url"]
    assert url == "http://canary-triton:8000/v2/models/canary-scorer/versions/1/infer"
    match = _INFER_URL.match(url)  # the bundle's check of the step's Service and model holds
    assert match is not None and match.groups() == ("canary-triton", "canary-scorer")
    for document in docs:
        assert strict_schema.errors_any(document) == [], document["kind"]
    # the gRPC client stage asks for the same version
    grpc = compile_docs(canary_rollout.canary_workflow_grpc)
    (template,) = [d for d in grpc if d["kind"] == "WorkflowTemplate"]
    (score,) = [t for t in template["spec"]["templates"] if t["name"] == "score"]
    defaults = {p["name"]: p.get("default") for p in score["inputs"]["parameters"]}
    assert defaults["model_version"] == "1" and defaults["model"] == "canary-scorer"
    # a model without canary= is still called unversioned: its own version policy decides
    assert "/versions/" not in infer_url(routing.SERVER, "small", namespace="routing")


class _Fake:
    """A version's batcher: answers with its version, or Triton's NOT_FOUND for it."""

    def __init__(self, version: int, served: set[int]) -> None:
        self.version, self.served, self.calls = version, served, 0

    def infer(self, rows: Any) -> list[Any]:
        from rtflow.stages.stream.triton import VersionNotFound

        self.calls += 1
        if self.version not in self.served:
            raise VersionNotFound(
                f"[StatusCode.NOT_FOUND] Request for unknown model: 'canary-scorer' version "
                f"{self.version} is not found"
            )
        return [{"version": self.version} for _ in rows]


def test_a_stable_version_triton_does_not_have_falls_back_to_the_declared_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a promotion a restarted Triton loads only the compiled (declared) version: the
    rows go to it, counted, with one warning per state, instead of stalling the partition."""
    router = _router(RolloutState("canary-scorer", 3, None, 0, "promoted"))
    fakes = {v: _Fake(v, served={1}) for v in (1, 2, 3)}
    router.batcher = fakes.__getitem__  # type: ignore[method-assign, assignment]
    missing: list[tuple[int, int]] = []
    router.unavailable = lambda version, rows: missing.append((version, rows))
    messages = [Message("payments", 0, o, b"{}", None, [], 0) for o in range(4)]
    with caplog.at_level("WARNING", logger="rtflow.stream"):
        for _ in range(3):
            assert router.infer_routed([{}] * 4, messages) == [{"version": 1}] * 4
    assert missing == [(3, 4)] * 3
    assert fakes[3].calls == 1  # not asked again for a while (RECHECK_SECONDS)
    warnings = [r for r in caplog.records if "does not serve version 3" in r.getMessage()]
    assert len(warnings) == 1 and "declared stable version 1" in warnings[0].getMessage()
    # a new state: asked again (and warned again when still missing)
    router.follow(RolloutState("canary-scorer", 3, None, 0, "promoted", reason="again"))
    with caplog.at_level("WARNING", logger="rtflow.stream"):
        assert router.infer_routed([{}], messages[:1]) == [{"version": 1}]
    assert fakes[3].calls == 2
    assert len([r for r in caplog.records if "does not serve version 3" in r.getMessage()]) == 2
    # once Triton has it, it answers
    fakes[3].served.add(3)
    router.follow(RolloutState("canary-scorer", 3, None, 0, "promoted", reason="loaded"))
    assert router.infer_routed([{}], messages[:1]) == [{"version": 3}]


def test_the_promotion_says_what_to_change_in_git() -> None:
    from rtflow.stages.builtin.canary import finish_promotion

    assert finish_promotion("fraud-scorer", 3, 1).startswith(
        "declare fraud-scorer with versions=[3] (stable 3"
    )
    assert "and recompile" in finish_promotion("fraud-scorer", 3, 1)
    assert finish_promotion("fraud-scorer", 1, 1) == ""  # the declaration already names it
