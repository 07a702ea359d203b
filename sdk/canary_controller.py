"""``rtflow.canary_rollout``: the controller of a canary rollout, as an ordinary rtflow pipeline.

``rtflow.canary_rollout(server, "fraud-scorer", brokers=["kafka:9092"])`` returns a
:class:`~rtflow.Pipeline` triggered by the topic ``<model>-candidates``: an event ``{"version":
3}`` starts one rollout of version 3 of a model declared with ``canary=rtflow.canary(...)``
(:mod:`rtflow.canary_policy`). Its stages are built-ins (:mod:`rtflow.stages.builtin.canary`):

``begin`` (Triton loads the candidate beside the stable version; the candidate gets
``steps[0]`` percent) -> ``analyze`` (a window of Triton's own per-version metrics and the
stream workers' per-version counts: pass or fail, with the reason) -> under ``rtflow.when(pass)``
the next step's ``shift`` and its ``analyze``, and so on; after the last step, ``promote``;
under ``rtflow.otherwise()`` of every analysis, ``roll_back`` (share 0, the candidate unloaded);
and, as the workflow's exit handler, ``settle``: a rollout that ended without a verdict (stopped,
a step failed for good) is rolled back too, so no candidate keeps a share unwatched.

**Why an Argo Workflow drives it.**

* *Argo Rollouts* canaries a Deployment's pods (a ReplicaSet per revision, traffic split by
  replica count or a mesh). A model version is not a pod: it is a version inside one Triton
  server, chosen per request by the request's ``model_version``. Rollouts could only split it
  with a second Triton Deployment per version behind a service mesh, would restart Triton to
  change version, and cannot see the stream plane's Kafka traffic at all.
* *The stream runtime alone* sees only its own worker's events: deciding in every worker would
  let workers disagree (one promotes, another rolls back), and a rollout hidden in worker logs
  is invisible to the people who must watch it.
* *An Argo Workflow* is durable (the controller resumes it after a restart), visible (each step,
  verdict and reason in the Argo UI), retried per step, cancellable (``argo stop``), and the
  retraining workflow starts it by producing one event. It runs only while a rollout runs.

The split itself is applied where the traffic is: the stream workers read the rollout state
from a compacted topic (:mod:`rtflow.stages.rollout_state`) and route each event by a hash of
its source (:mod:`rtflow.stages.stream.rollout`). Because the result is a Pipeline, compile,
the strict schemas, ``rtflow lint``, ``argo lint`` and ``rtflow run --local`` apply unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rtflow.errors import DefinitionError
from rtflow.names import check_dns1123_label

__all__ = ["canary_rollout"]


def _model(server: Any, model: Any) -> Any:
    from rtflow.gpu.models import TritonModel

    models = getattr(server, "models", None)
    if not isinstance(models, tuple) or not all(isinstance(m, TritonModel) for m in models):
        raise DefinitionError(
            f"rtflow.canary_rollout() needs a Triton server, got {type(server).__name__}",
            fix="pass the triton_serving(...) that serves the model",
            field="server",
        )
    name = model.name if isinstance(model, TritonModel) else model
    found = [m for m in models if m.name == name]
    if not found:
        raise DefinitionError(
            f"server {server.name!r} does not serve model {name!r}",
            fix=f"roll out one of {', '.join(m.name for m in models)}",
            field="model",
        )
    if found[0].canary is None:
        raise DefinitionError(
            f"model {name!r} has no canary policy",
            fix="declare it with triton_model(..., canary=rtflow.canary(...))",
            field="model",
        )
    return found[0]


def canary_rollout(
    server: Any,
    model: Any,
    *,
    brokers: Sequence[str],
    name: str | None = None,
    namespace: str | None = None,
    image: str | None = None,
    candidates_topic: str | None = None,
) -> Any:
    """The controller pipeline of ``model``'s canary rollouts (see the module's docstring).

    Args:
        server: the ``triton_serving(...)`` serving the model; it needs ``admin_key`` (Triton's
            repository API is closed to anyone without it, :mod:`rtflow.gpu.admin_api`).
        model: the model (a name or its declaration), declared with ``canary=``.
        brokers: the Kafka brokers of the trigger and of the state topic.
        name: the pipeline's name (default ``<model>-canary``).
        namespace: where it runs (default the server's).
        image: the controller stages' image (default rtflow's ``canary`` built-in image).
        candidates_topic: the trigger's topic (default ``<model>-candidates``); an event's
            body is ``{"version": N}``.
    """
    import rtflow
    from rtflow.gpu.addresses import service_url
    from rtflow.gpu.server import HTTP_PORT, METRICS_PORT
    from rtflow.gpu.server_pod import CANARY_LABEL
    from rtflow.stages.builtin import canary as stages

    declared = _model(server, model)
    if getattr(server, "admin_key", None) is None:
        raise DefinitionError(
            f"server {server.name!r} has no admin_key: the rollout cannot load versions",
            fix="give triton_serving(..., admin_key=rtflow.SecretKey(secret, key))",
            field="server",
        )
    if isinstance(brokers, str) or not brokers:
        raise DefinitionError(
            f"brokers {brokers!r} is not a list of brokers",
            fix="give brokers=['kafka:9092']",
            field="brokers",
        )
    pipeline_name = name or f"{declared.name}-canary"
    check_dns1123_label(pipeline_name, field="name", what="pipeline name")
    policy = declared.canary.as_json()
    steps = list(policy["steps"])
    stable = int(declared.version_policy.versions[0])
    http = service_url(server, namespace=namespace)
    env = {
        "TRITON_HTTP_URL": http,
        "TRITON_METRICS_URL": http.replace(f":{HTTP_PORT}", f":{METRICS_PORT}") + "/metrics",
        "KAFKA_BROKERS": ",".join(brokers),
    }
    key = server.admin_key
    secrets = [rtflow.Secret("TRITON_ADMIN_KEY", key.secret, key.key)]
    analyze_timeout = f"{int(policy['window_seconds'] * (stages.MAX_WINDOWS + 1)) + 300}s"

    # the label Triton's NetworkPolicy lets in (rtflow.gpu.server_pod.CANARY_LABEL)
    marked = {CANARY_LABEL: server.name}

    def configured(stage: Any, **options: Any) -> Any:
        return rtflow.configure(
            stage, env=env, secrets=secrets, image=image, labels=marked, **options
        )

    begin = configured(stages.canary_begin)
    analyze = configured(stages.canary_analyze, timeout=analyze_timeout)
    shift = configured(stages.canary_shift)
    promote = configured(stages.canary_promote)
    roll_back = configured(stages.canary_roll_back)
    settle = configured(stages.canary_settle)
    model_name = declared.name

    def level(step: int, share: Any, begun: Any) -> None:
        """One step's analysis; on pass the next step (nested), on fail the roll back: a
        ``when``/``otherwise`` per step, so a failure rolls back at once and the UI shows at
        which step."""
        verdict = analyze(model=model_name, stable=begun.stable, candidate=begun.candidate,
                          share=share, policy=policy)  # fmt: skip
        with rtflow.when(verdict.verdict == "pass"):
            if step + 1 == len(steps):
                promote(model=model_name, stable=begun.stable, candidate=begun.candidate,
                        declared_stable=stable, policy=policy)  # fmt: skip
            else:
                moved = shift(model=model_name, stable=begun.stable, candidate=begun.candidate,
                              step=step + 1, policy=policy)  # fmt: skip
                level(step + 1, moved, begun)
        with rtflow.otherwise():
            roll_back(model=model_name, stable=begun.stable, candidate=begun.candidate,
                      declared_stable=stable, reason=verdict.reason, policy=policy)  # fmt: skip

    def rollout(version: int) -> None:
        begun = begin(model=model_name, version=version, declared_stable=stable, policy=policy)
        level(0, begun.share, begun)
        with rtflow.on_exit():  # stopped or failed without a verdict: roll the candidate back
            settle(model=model_name, version=version, declared_stable=stable,
                   status=rtflow.workflow.status, policy=policy)  # fmt: skip

    rollout.__annotations__ = {"version": int, "return": None}
    topic = candidates_topic or f"{model_name}-candidates"
    return rtflow.pipeline(
        name=pipeline_name,
        namespace=namespace or server.namespace,
        triggers=[
            rtflow.kafka(
                topic,
                brokers=list(brokers),
                consumer_group=pipeline_name,
                inputs={"version": "body.version"},
            )
        ],
    )(rollout)
