"""The canary controller's stages: load a candidate version, judge it, promote or roll it back.

:func:`rtflow.canary_rollout` chains them into a pipeline (an Argo Workflow per candidate; see
:mod:`rtflow.canary_controller` for why a workflow); each is an ordinary built-in stage, so the
same functions run in the workflow's pods and in ``rtflow run --local``.

Where they reach, from the environment (set by :func:`rtflow.canary_rollout`; a local run
overrides them with ``--stage-env``): ``TRITON_HTTP_URL`` (Triton's HTTP port: the repository
API loads and unloads versions), ``TRITON_METRICS_URL`` (its Prometheus metrics,
``.../metrics``: each version's successes, failures and time), ``KAFKA_BROKERS`` (the state
topic) and ``TRITON_ADMIN_KEY`` (from the server's ``admin_key`` Secret: rtflow's Triton opens
its repository API only to the holder of that header, :mod:`rtflow.gpu.admin_api`).

Triton's repository API loads a model with a configuration given in the request
(``POST /v2/repository/models/<m>/load`` with ``{"parameters": {"config": "<ModelConfig as
JSON>"}}``, Triton's *model repository extension*): the model's current configuration
(``GET /v2/models/<m>/config``) with its ``version_policy`` replaced by ``{"specific":
{"versions": [...]}}``. Triton loads the added version next to the served one and unloads a
dropped one after its requests in flight, so a load never interrupts the stable version.

Every load keeps the **declared** stable version (the one the compiled declaration names,
``declared_stable``) loaded, whatever the state says: the workflow plane calls it by number,
and after a promotion it is the only version a restarted Triton pod loads, until the
declaration is moved to the promoted version (the promoted state's ``finish`` says how).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import rtflow
from rtflow.stages.builtin import image
from rtflow.stages.rollout_state import (
    STATS_PREFIX,
    RolloutState,
    p99_ms,
    read_topic,
    stats_delta,
    write_state,
)
from rtflow.stages.runtime import BadInput

MAX_WINDOWS = 10
"""Windows an analysis waits for ``min_requests`` before it calls the candidate inconclusive."""
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_SAMPLE = re.compile(r"^(nv_inference_request_(?:success|failure|duration_us))\{([^}]*)\}\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
log = logging.getLogger(__name__)
_RETRY = rtflow.Retry(limit=3, policy="Always", backoff=rtflow.Backoff("2s", 2, "30s"))


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise BadInput(f"${name} is not set (rtflow.canary_rollout sets it)")
    return value.rstrip("/")


def _call(method: str, url: str, body: Mapping[str, Any] | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    key = os.environ.get("TRITON_ADMIN_KEY", "")
    if key:
        headers["triton-admin-key"] = key
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with _OPENER.open(request, timeout=120) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def load_versions(http_url: str, model: str, versions: Sequence[int]) -> None:
    """Have Triton serve exactly ``versions`` of ``model`` (see the module's docstring) and
    wait until each is ready."""
    status, text = _call("GET", f"{http_url}/v2/models/{model}/config")
    if status != 200:
        raise ConnectionError(f"Triton's config of {model!r}: {status} {text[:300]!r}")
    config = json.loads(text)
    config["version_policy"] = {"specific": {"versions": [int(v) for v in versions]}}
    status, text = _call(
        "POST",
        f"{http_url}/v2/repository/models/{model}/load",
        {"parameters": {"config": json.dumps(config)}},
    )
    if status != 200:
        raise ConnectionError(f"Triton could not load {model!r} {list(versions)}: {text[:500]!r}")
    for version in versions:
        ready, _ = _call("GET", f"{http_url}/v2/models/{model}/versions/{version}/ready")
        if ready != 200:
            raise ConnectionError(f"{model!r} version {version} is not ready after its load")


def triton_counts(metrics_url: str, model: str) -> dict[int, dict[str, float]]:
    """Triton's own cumulative counts per version of ``model``: ``success`` and ``failure``
    (requests) and ``duration_us`` (their total time), from its metrics endpoint."""
    with _OPENER.open(metrics_url, timeout=30) as response:
        text = response.read().decode()
    counts: dict[int, dict[str, float]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match[2]))
        if labels.get("model") != model or not labels.get("version", "").isdigit():
            continue
        kind = match[1].removeprefix("nv_inference_request_")
        entry = counts.setdefault(int(labels["version"]), {})
        entry[kind] = entry.get(kind, 0.0) + float(match[3])
    return counts


def _state(brokers: str, topic: str, model: str) -> RolloutState | None:
    value = read_topic(brokers, topic).get(model)
    return None if value is None else RolloutState.from_json(value)


def _stats(brokers: str, topic: str, model: str) -> dict[str, Any]:
    prefix = f"{STATS_PREFIX}{model}/"
    return {k: v for k, v in read_topic(brokers, topic).items() if k.startswith(prefix)}


class Begun(NamedTuple):
    stable: int
    candidate: int
    share: int


@rtflow.stage(name="canary-begin", image=image("canary"), retry=_RETRY, timeout="10m")
def canary_begin(model: str, version: int, declared_stable: int, policy: dict[str, Any]) -> Begun:
    """Load ``version`` beside the stable one and give it the first step's share."""
    brokers, topic = _env("KAFKA_BROKERS"), str(policy["topic"])
    state = _state(brokers, topic, model) or RolloutState(model, declared_stable)
    if version == state.stable:
        raise BadInput(f"version {version} of {model!r} is already the stable version")
    if state.phase == "canary" and state.candidate not in (None, version):
        raise BadInput(f"{model!r} is rolling out version {state.candidate}: one at a time")
    load_versions(_env("TRITON_HTTP_URL"), model, sorted({declared_stable, state.stable, version}))
    share = int(policy["steps"][0])
    write_state(
        brokers,
        topic,
        RolloutState(model, state.stable, version, share, "canary", 0, "", time.time()),
    )
    return Begun(state.stable, version, share)


@rtflow.stage(name="canary-shift", image=image("canary"), retry=_RETRY, timeout="5m")
def canary_shift(model: str, stable: int, candidate: int, step: int, policy: dict[str, Any]) -> int:
    """Give the candidate the share of step ``step`` (after the previous step passed)."""
    share = int(policy["steps"][step])
    write_state(
        _env("KAFKA_BROKERS"),
        str(policy["topic"]),
        RolloutState(model, stable, candidate, share, "canary", step, "", time.time()),
    )
    return share


class Verdict(NamedTuple):
    verdict: str
    reason: str


def judge(
    policy: Mapping[str, Any],
    share: int,
    triton: Mapping[str, float],
    rows: int,
    errors: int,
    p99: float | None,
) -> Verdict:
    """The verdict over one analysis: Triton's request counts of the candidate (``success``,
    ``failure`` and ``duration_us`` deltas) and the stream workers' rows, errors and p99."""
    ok, failed = int(triton.get("success", 0)), int(triton.get("failure", 0))
    requests = ok + failed
    seen = max(requests, rows)
    if seen < int(policy["min_requests"]):
        return Verdict(
            "fail",
            f"inconclusive at {share}%: {seen} requests, fewer than min_requests "
            f"{policy['min_requests']}",
        )
    limit = float(policy["max_error_rate"])
    triton_rate = failed / requests if requests else 0.0
    stream_rate = errors / rows if rows else 0.0
    where = (
        f"Triton: {failed} of {requests} requests failed; "
        f"stream workers: {errors} of {rows} rows failed"
    )
    if max(triton_rate, stream_rate) > limit:
        rate = max(triton_rate, stream_rate)
        return Verdict("fail", f"error rate {rate:.1%} above {limit:.1%} at {share}% ({where})")
    average = triton.get("duration_us", 0.0) / requests / 1000.0 if requests else 0.0
    latency = f"p99 {p99:.1f} ms" if p99 is not None else "no stream latency"
    if policy.get("max_p99_ms") is not None and p99 is not None and p99 > policy["max_p99_ms"]:
        return Verdict("fail", f"{latency} above {policy['max_p99_ms']:g} ms at {share}% ({where})")
    return Verdict(
        "pass",
        f"error rate {max(triton_rate, stream_rate):.1%} at {share}%, {latency}, "
        f"Triton average {average:.1f} ms ({where})",
    )


@rtflow.stage(name="canary-analyze", image=image("canary"), timeout="1h")
def canary_analyze(
    model: str, stable: int, candidate: int, share: int, policy: dict[str, Any]
) -> Verdict:
    """Watch the candidate for a window (more, up to 10, until it served ``min_requests``):
    Triton's own metrics of the version and the stream workers' counts; pass or fail."""
    brokers, topic = _env("KAFKA_BROKERS"), str(policy["topic"])
    metrics = _env("TRITON_METRICS_URL")
    window = float(policy["window_seconds"])
    triton_before = triton_counts(metrics, model).get(candidate, {})
    stats_before = _stats(brokers, topic, model)
    verdict = Verdict("fail", "no window ran")
    for _ in range(MAX_WINDOWS):
        time.sleep(window)
        state = _state(brokers, topic, model)
        if state is None or state.phase != "canary" or state.candidate != candidate:
            return Verdict("fail", f"the rollout state changed meanwhile: {state}")
        now = triton_counts(metrics, model).get(candidate, {})
        triton = {k: now.get(k, 0.0) - triton_before.get(k, 0.0) for k in now}
        stream = stats_delta(stats_before, _stats(brokers, topic, model), candidate)
        verdict = judge(policy, share, triton, stream.rows, stream.errors, p99_ms(stream))
        if not verdict.reason.startswith("inconclusive"):
            return verdict
    return verdict


def finish_promotion(model: str, promoted: int, declared_stable: int) -> str:
    """What to change in Git after ``promoted`` became the stable version (empty: nothing,
    the declaration already names it)."""
    if promoted == declared_stable:
        return ""
    return (
        f"declare {model} with versions=[{promoted}] (stable {promoted}; a "
        f"VersionPolicy.specific names {promoted}) and recompile: until then the workflow plane "
        f"calls the declared version {declared_stable}, kept loaded beside {promoted}, and a "
        f"restarted Triton loads only {declared_stable} (the stream workers fall back to it)"
    )


class Promoted(NamedTuple):
    stable: int
    finish: str


@rtflow.stage(name="canary-promote", image=image("canary"), retry=_RETRY, timeout="10m")
def canary_promote(
    model: str, stable: int, candidate: int, declared_stable: int, policy: dict[str, Any]
) -> Promoted:
    """The candidate becomes the stable version; Triton serves it beside the declared stable
    version (the workflow plane's), and the output says what to change in Git to finish."""
    finish = finish_promotion(model, candidate, declared_stable)
    dropped = sorted({stable} - {candidate, declared_stable})
    reason = f"version {candidate} passed every step" + (
        f"; version {dropped[0]} unloaded" if dropped else ""
    )
    if candidate != declared_stable:
        reason += f"; the declared version {declared_stable} stays loaded"
    write_state(
        _env("KAFKA_BROKERS"),
        str(policy["topic"]),
        RolloutState(model, candidate, None, 0, "promoted", len(policy["steps"]), reason,
                     time.time(), finish),
    )  # fmt: skip
    load_versions(_env("TRITON_HTTP_URL"), model, sorted({declared_stable, candidate}))
    if finish:
        log.warning("%s promoted to version %d; to finish: %s", model, candidate, finish)
    return Promoted(candidate, finish)


@rtflow.stage(name="canary-roll-back", image=image("canary"), retry=_RETRY, timeout="10m")
def canary_roll_back(
    model: str,
    stable: int,
    candidate: int,
    declared_stable: int,
    reason: str,
    policy: dict[str, Any],
) -> str:
    """Every event back to the stable version at once (the state), then the candidate
    unloaded."""
    write_state(
        _env("KAFKA_BROKERS"),
        str(policy["topic"]),
        RolloutState(model, stable, candidate, 0, "rolled-back", 0, reason, time.time()),
    )
    load_versions(_env("TRITON_HTTP_URL"), model, sorted({declared_stable, stable}))
    return reason


@rtflow.stage(name="canary-settle", image=image("canary"), retry=_RETRY, timeout="10m")
def canary_settle(
    model: str, version: int, declared_stable: int, status: str, policy: dict[str, Any]
) -> str:
    """The workflow's exit handler: a rollout that ended without a verdict (stopped with ``argo
    stop``, a step failed past its retries, the deadline) still has its candidate on a share of
    traffic; roll it back. After a promotion or a roll back it does nothing."""
    brokers, topic = _env("KAFKA_BROKERS"), str(policy["topic"])
    state = _state(brokers, topic, model)
    if state is None or state.phase != "canary" or state.candidate != version:
        return f"nothing to settle ({state.phase if state else 'no state'})"
    reason = f"the rollout of version {version} ended without a verdict (workflow {status})"
    write_state(
        brokers,
        topic,
        RolloutState(model, state.stable, version, 0, "rolled-back", state.step, reason,
                     time.time()),
    )  # fmt: skip
    load_versions(_env("TRITON_HTTP_URL"), model, sorted({declared_stable, state.stable}))
    return reason
