"""A stage's credentials (rtflow.Secret) reach it as files by default (issue #13): a read-only
projected volume of its own template, ``<ENV>_FILE`` holding the path; ``as_env=True`` keeps the
``secretKeyRef`` variable. The function-stage runtime turns the files back into variables, so a
stage reading ``os.environ`` works either way; lint accepts what compile writes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from compiled import PIPELINES, ROOT, templates, workflow_template

import rtflow
from rtflow.errors import DefinitionError
from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import write_folder
from rtflow.loader import load_pipelines
from rtflow.stages import contract, secret_files
from rtflow.verify.lint import lint_paths

IMAGE = "ghcr.io/acme/tools:1.0"


def _pipeline(*secrets: rtflow.Secret, env: dict[str, str] | None = None) -> Any:
    call_api = rtflow.container(
        "call-api", image=IMAGE, args=["{n}"], inputs={"n": int}, secrets=secrets, env=env or {}
    )
    plain = rtflow.container("plain", image=IMAGE, args=["{n}"], inputs={"n": int})

    @rtflow.pipeline(name="creds")
    def creds(n: int) -> None:
        plain(n=n).after(call_api(n=n))

    return creds


def test_a_secret_is_a_read_only_file_of_its_own_template_by_default() -> None:
    pipeline = _pipeline(
        rtflow.Secret(env="API_TOKEN", secret="api", key="token"),
        rtflow.Secret(env="API_TOKEN_COPY", secret="api", key="token"),  # one file, two names
        rtflow.Secret(env="DB_PASSWORD", secret="db", key="password"),
    )
    by_name = templates(workflow_template(pipeline))
    template = by_name["call-api"]
    container = template["container"]
    env = {e["name"]: e for e in container["env"]}
    assert not any("valueFrom" in e for e in env.values())  # no value in the pod's environment
    assert env["API_TOKEN_FILE"]["value"] == "/var/run/secrets/rtflow/api/token"
    assert env["API_TOKEN_COPY_FILE"]["value"] == "/var/run/secrets/rtflow/api/token"
    (volume,) = template["volumes"]
    assert volume["projected"]["defaultMode"] == 0o440
    files = {
        f"{contract.SECRETS_DIR}/{item['path']}": (source["secret"]["name"], item["key"])
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    assert files == {
        "/var/run/secrets/rtflow/api/token": ("api", "token"),
        "/var/run/secrets/rtflow/db/password": ("db", "password"),
    }
    assert {e["value"] for e in env.values()} == set(files)
    assert {
        "name": volume["name"],
        "mountPath": contract.SECRETS_DIR,
        "readOnly": True,
    } in container["volumeMounts"]
    # Least privilege: a stage without credentials mounts none, and the workflow has none.
    assert "volumes" not in by_name["plain"]
    assert all(m["name"] != volume["name"] for m in by_name["plain"]["container"]["volumeMounts"])


def test_as_env_is_the_explicit_environment_variable() -> None:
    pipeline = _pipeline(rtflow.Secret(env="API_TOKEN", secret="api", key="token", as_env=True))
    template = templates(workflow_template(pipeline))["call-api"]
    assert template["container"]["env"] == [
        {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
    ]
    assert "volumes" not in template


@pytest.mark.parametrize(
    ("secrets", "env", "message"),
    [
        (
            [rtflow.Secret(env="API_TOKEN", secret="api", key="token")],
            {"API_TOKEN_FILE": "/etc/token"},
            "API_TOKEN_FILE is set twice (env.API_TOKEN_FILE and secrets.API_TOKEN)",
        ),
        (
            [
                rtflow.Secret(env="A_FILE", secret="a", key="k", as_env=True),
                rtflow.Secret(env="A", secret="a", key="k"),
            ],
            {},
            "A_FILE is set twice (secrets.A_FILE and secrets.A)",
        ),
        (
            [rtflow.Secret(env="API_TOKEN", secret="api", key="token")],
            {"API_TOKEN": "x"},
            "API_TOKEN looks like a credential",
        ),
        ([rtflow.Secret(env="A", secret="a", key="..data")], {}, "not a valid Secret data key"),
        ([rtflow.Secret(env="A", secret="a", key="k", as_env="yes")], {}, "as_env must be"),  # type: ignore[arg-type]
    ],
)
def test_credential_mistakes_are_one_line_errors(
    secrets: list[rtflow.Secret], env: dict[str, str], message: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        _pipeline(*secrets, env=env).build()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_runtime_reads_only_the_files_rtflow_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(contract, "SECRETS_DIR", str(tmp_path / "secrets"))
    (tmp_path / "secrets/api").mkdir(parents=True)
    (tmp_path / "secrets/api/token").write_bytes(b"t0ken\n")  # kept, as secretKeyRef keeps it
    (tmp_path / "log").write_text("not a credential")
    environ = {
        "API_TOKEN_FILE": str(tmp_path / "secrets/api/token"),
        "SET_FILE": str(tmp_path / "secrets/api/token"),
        "SET": "explicit",
        "LOG_FILE": str(tmp_path / "log"),
        "ESCAPE_FILE": f"{tmp_path}/secrets/../log",
    }
    assert secret_files.load(environ) == ["API_TOKEN"]
    assert environ["API_TOKEN"] == "t0ken\n"
    assert environ["SET"] == "explicit"
    assert "LOG" not in environ and "ESCAPE" not in environ


def test_a_function_stage_sees_its_file_credential_as_a_variable(tmp_path: Path) -> None:
    """The compiled command line and env, run by the real runtime: the stage's module reads
    os.environ["API_TOKEN"] at import and in the call (only the mount's place moved)."""
    (tmp_path / "creds_stage.py").write_text(
        textwrap.dedent(
            f"""
            import os
            import rtflow

            AT_IMPORT = os.environ.get("API_TOKEN")

            @rtflow.stage(
                image={IMAGE!r}, secrets=[rtflow.Secret(env="API_TOKEN", secret="api", key="token")]
            )
            def whoami(n: int) -> str:
                return f"{{AT_IMPORT}}|{{os.environ['API_TOKEN']}}|{{n}}"

            @rtflow.pipeline(name="creds")
            def creds(n: int) -> None:
                whoami(n)
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import creds_stage  # type: ignore[import-not-found]

        template = templates(workflow_template(creds_stage.creds))["whoami"]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("creds_stage", None)
    mounted = tmp_path / "mnt"
    (mounted / "api").mkdir(parents=True)
    (mounted / "api/token").write_text("s3cret")
    container = template["container"]
    env = {
        e["name"]: e["value"].replace(contract.SECRETS_DIR, str(mounted)) for e in container["env"]
    }
    args = [
        a.replace("{{inputs.parameters.n}}", "7").replace(
            contract.OUTPUTS_DIR, str(tmp_path / "out")
        )
        for a in container["args"]
    ]
    patch = (
        "import sys; from rtflow.stages import contract; "
        f"contract.SECRETS_DIR = {str(mounted)!r}; "
        "from rtflow.stages.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", patch, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            **{k: v for k, v in os.environ.items() if k != "API_TOKEN"},
            **env,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        },
        timeout=60,
    )
    assert result.returncode == contract.EXIT_OK, result.stderr
    assert (tmp_path / "out/result").read_text() == "s3cret|s3cret|7"
    assert "s3cret" not in result.stderr  # never logged


TARGETS = [
    ROOT / "examples/fraud_detection.py",
    ROOT / "examples/support_triage.py",
    *sorted(p for p in PIPELINES.glob("*.py") if "@rtflow.pipeline" in p.read_text()),
]


def test_lint_accepts_every_credential_compile_writes(tmp_path: Path) -> None:
    """By construction: the path a variable holds is under a mount of its own container, so
    rtflow.credentials (lint's rule) takes it for a reference; moved out, it is a finding."""
    loaded = []
    for target in TARGETS:
        try:
            loaded += [p.build() for p in load_pipelines(str(target))[1]]
        except DefinitionError:
            continue  # the fixtures of definition errors
    write_folder(compile_pipelines(loaded), tmp_path / "out")
    report = lint_paths([tmp_path / "out"], real_linters=False)
    assert not [f for f in report.findings if f.rule == "security"], report.human()
    path = tmp_path / "out/fraud-detection/base/workflowtemplate-fraud-detection.yaml"
    document = yaml.safe_load(path.read_text())
    (block,) = [t for t in document["spec"]["templates"] if t["name"] == "block-card"]
    assert {e["name"] for e in block["container"]["env"]} == {"CARD_API_TOKEN_FILE"}
    block["container"]["volumeMounts"] = [
        m for m in block["container"]["volumeMounts"] if m["mountPath"] != contract.SECRETS_DIR
    ]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    findings = [f for f in lint_paths([tmp_path / "out"], real_linters=False).findings]
    assert [f.rule for f in findings] == ["security"], [f.message for f in findings]
    assert "CARD_API_TOKEN_FILE looks like a credential" in findings[0].message


@pytest.mark.parametrize(
    "repository",
    [
        {"uri": "gs://acme-models/triton", "secret": "gcs-reader"},
        {"uri": "s3://acme-models/triton", "secret": "s3-reader"},
        {
            "uri": "s3://acme-models/triton",
            "secret": "s3-reader",
            "secret_keys": {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"},
        },
    ],
    ids=["gcs-file", "s3-file", "s3-env-asked-for"],
)
def test_lint_accepts_a_cloud_repositorys_credentials_as_compiled(
    repository: dict[str, Any], tmp_path: Path
) -> None:
    """The issue's case: a gs:// repository made compile emit GOOGLE_APPLICATION_CREDENTIALS,
    a path, that lint then flagged as an inline credential."""
    from rtflow.gpu.models import triton_model
    from rtflow.gpu.repository import model_repository
    from rtflow.gpu.server import triton_serving
    from rtflow.gpu.tensors import Tensor

    uri = repository.pop("uri")
    model = triton_model(
        "ranker",
        backend="python",
        inputs=[Tensor("x", "TYPE_FP32", (3,))],
        outputs=[Tensor("y", "TYPE_FP32", (1,))],
        max_batch_size=8,
        repository=model_repository(uri, **repository),
        versions=[1],
    )
    server = triton_serving("cloud-triton", [model])

    @rtflow.pipeline(name="cloud", namespace="cloud")
    def cloud(x: list[float]) -> None:
        rtflow.infer(server, model, {"x": x})

    write_folder(compile_pipelines([cloud.build()]), tmp_path)
    report = lint_paths([tmp_path], real_linters=False)
    assert report.ok, report.human()
    deployment = yaml.safe_load((tmp_path / "cloud/deployment-cloud-triton.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "TRITON_CLOUD_CREDENTIAL_PATH"):
        if name in env:
            assert any(env[name]["value"].startswith(f"{m}/") for m in mounts)


def test_a_stream_worker_loads_its_stages_file_credentials_before_their_modules(
    tmp_path: Path,
) -> None:
    """The compiled worker Deployment's env, run by the real worker entry point: a hot-path
    stage's module reads os.environ["API_TOKEN"] at import, as it can on the workflow plane
    (the module stops the worker right after, so no broker is needed)."""
    seen = tmp_path / "seen"
    (tmp_path / "stream_creds.py").write_text(
        textwrap.dedent(
            f"""
            import os
            import rtflow

            SEEN = os.environ.get("SEEN_AT_IMPORT")
            if SEEN:
                with open(SEEN, "w") as out:
                    out.write(os.environ.get("API_TOKEN", "<unset>"))
                raise SystemExit(0)

            orders = rtflow.kafka("orders", brokers=["kafka:9092"], consumer_group="creds",
                                  inputs={{"n": "body.n"}})

            @rtflow.stage(
                image={IMAGE!r}, secrets=[rtflow.Secret(env="API_TOKEN", secret="api", key="token")]
            )
            def whoami(n: int) -> str:
                return os.environ["API_TOKEN"]

            @rtflow.pipeline(name="stream-creds", triggers=[orders],
                             stream=rtflow.Stream(image={IMAGE!r}))
            def stream_creds(n: int) -> None:
                whoami(n)
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        _, pipelines = load_pipelines(str(tmp_path / "stream_creds.py"))
        bundle = compile_pipelines([p.build() for p in pipelines])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("stream_creds", None)
    from rtflow.generators.writers import render_stream

    (worker,) = [
        d
        for d in yaml.safe_load_all(render_stream(bundle))
        if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-stream")
    ]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    command = [*container["command"], *container["args"]]
    assert command[:4] == ["python", "-m", "rtflow.stages", "stream"], command
    mounted = tmp_path / "mnt"
    env = {
        e["name"]: e["value"].replace(contract.SECRETS_DIR, str(mounted))
        for e in container.get("env", [])
        if "value" in e
    }
    assert env["API_TOKEN_FILE"].startswith(str(mounted)), env
    token = Path(env["API_TOKEN_FILE"])
    token.parent.mkdir(parents=True)
    token.write_text("s3cret")
    patch = (
        "import sys; from rtflow.stages import contract; "
        f"contract.SECRETS_DIR = {str(mounted)!r}; "
        "from rtflow.stages.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", patch, *command[3:], "--brokers", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            **{k: v for k, v in os.environ.items() if k != "API_TOKEN"},
            **env,
            "SEEN_AT_IMPORT": str(seen),
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        },
        timeout=60,
    )
    assert seen.read_text() == "s3cret", result.stderr
