"""rtflow lint: clean on what compile writes, precise on what a hand edit breaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from compiled import PIPELINES, ROOT
from components import component_missing

from rtflow.verify import argocd_schema
from rtflow.verify.lint import lint_paths


def rtflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", *args], cwd=ROOT, capture_output=True, text=True
    )


def compiled(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    result = rtflow(
        "compile", "examples/fraud_detection.py", "examples/support_triage.py", "-o", str(out)
    )
    assert result.returncode == 0, result.stderr
    return out


def edit(path: Path, change: object) -> None:
    document = yaml.safe_load(path.read_text())
    change(document)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def test_compiled_examples_are_clean(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    report = lint_paths([out], real_linters=False)
    assert report.ok, report.human()
    # Every object as written (the two pipelines' objects and their Argo CD Applications), and
    # each of the 4 overlays' builds (what the overlays deploy: every object again).
    written = [
        d
        for f in out.rglob("*.yaml")
        for d in yaml.safe_load_all(f.read_text())
        if isinstance(d, dict) and "kind" in d and d["kind"] != "Kustomization"
    ]
    overlays = sorted(out.glob("*/overlays/*"))
    assert len(overlays) == 4
    try:
        from rtflow.verify.kustomize import KustomizeUnavailable, kustomize_build

        built = sum(len(kustomize_build(overlay)) for overlay in overlays)
    except KustomizeUnavailable as exc:
        component_missing(str(exc))
    assert built > len(written) // 2
    assert report.checked == len(written) + built
    result = rtflow("lint", str(tmp_path / "out"), "--no-real-linters")
    assert result.returncode == 0
    assert result.stdout.endswith(f"{report.checked} object(s), clean\n")


def test_an_unknown_field_is_found_with_its_path(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    path = out / "fraud-detection/base/workflowtemplate-fraud-detection.yaml"
    edit(path, lambda d: d["spec"]["templates"][3]["container"].update(imagePullPolcy="Always"))
    report = lint_paths([out], real_linters=False)
    (finding,) = report.findings
    assert finding.rule == "structure"
    assert finding.field == "spec.templates[3].container.imagePullPolcy"
    assert finding.object == "WorkflowTemplate/fraud-detection"
    assert finding.file == str(path)


def test_a_wrong_type_is_found(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    path = out / "fraud-detection/base/workflowtemplate-fraud-detection.yaml"
    edit(path, lambda d: d["spec"].update(parallelism="lots"))
    (finding,) = lint_paths([out], real_linters=False).findings
    assert finding.field == "spec.parallelism"


def test_security_regressions_are_found(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    path = out / "support-triage/base/workflowtemplate-support-triage.yaml"

    def weaken(d: dict) -> None:  # type: ignore[type-arg]
        container = d["spec"]["templates"][2]["container"]
        del container["resources"]["limits"]["memory"]
        container["securityContext"]["readOnlyRootFilesystem"] = False
        container["env"] = [{"name": "DB_PASSWORD", "value": "hunter2"}]

    edit(path, weaken)
    findings = {
        (f.rule, f.field.rsplit(".", 1)[-1]) for f in lint_paths([out], real_linters=False).findings
    }
    assert ("security", "memory") in findings
    assert ("security", "readOnlyRootFilesystem") in findings
    assert ("security", "env[0]") in findings


def test_a_credential_file_path_is_not_a_credential_but_a_path_outside_mounts_is(
    tmp_path: Path,
) -> None:
    out = compiled(tmp_path)
    path = out / "fraud-detection/base/deployment-fraud-detection-stream.yaml"
    assert lint_paths([out], real_linters=False).ok  # the mounted SASL password file: clean

    def move(d: dict) -> None:  # type: ignore[type-arg]
        (container,) = d["spec"]["template"]["spec"]["containers"]
        for entry in container["env"]:
            if entry["name"] == "KAFKA_SASL_PASSWORD_FILE":
                entry["value"] = "/var/run/secrets/rtflow/kafka/../../../../etc/password"

    edit(path, move)
    (finding,) = lint_paths([out], real_linters=False).findings
    assert finding.rule == "security" and "KAFKA_SASL_PASSWORD_FILE" in finding.message


def test_lint_and_compile_share_what_a_credential_is(tmp_path: Path) -> None:
    """rtflow.credentials is the one definition: a URL with a password and a password flag,
    which compile refuses in a definition, are findings in hand-edited manifests too."""
    out = compiled(tmp_path)
    path = out / "fraud-detection/base/deployment-fraud-detection-stream.yaml"

    def leak(d: dict) -> None:  # type: ignore[type-arg]
        (container,) = d["spec"]["template"]["spec"]["containers"]
        container["env"].append({"name": "DATABASE_URL", "value": "postgres://u:hunter2@db/x"})
        container["args"] = [*container.get("args", []), "--password", "hunter2"]

    edit(path, leak)
    messages = [f.message for f in lint_paths([out], real_linters=False).findings]
    assert any("DATABASE_URL holds a URL with a password" in m for m in messages), messages
    assert any("flag --password is given a credential" in m for m in messages), messages


def test_a_core_object_is_checked_strictly(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    path = out / "fraud-detection/base/rolebinding-fraud-detection-sensor.yaml"
    edit(path, lambda d: d["roleRef"].update(kindd="Role"))
    findings = lint_paths([out], real_linters=False).findings
    assert [f.rule for f in findings] == ["structure"]
    assert findings[0].object == "RoleBinding/fraud-detection-sensor"


def test_cross_resource_breaks_are_found(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    (out / "fraud-detection/base/eventsource-fraud-detection-handoff.yaml").unlink()
    path = out / "support-triage/base/sensor-support-triage.yaml"
    edit(
        path,
        lambda d: d["spec"]["triggers"][0]["template"]["k8s"]["parameters"][0].update(
            dest="spec.arguments.parameters.9.value"
        ),
    )
    report = lint_paths([out], real_linters=False)
    messages = [f.message for f in report.findings]
    # The Sensor is rtflow's, compiled with its EventSources: one missing is a finding, not the
    # warning a hand-written Sensor whose EventSources are not linted gets.
    assert (
        "EventSource 'fraud-detection-handoff' is not among the linted objects, and rtflow "
        "compiles it with the Sensor (pipeline 'fraud-detection'): is its file missing?"
    ) in messages
    assert report.warnings == []
    assert any("parameters.9.value" in m for m in messages)


def test_json_output_and_exit_codes(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    path = out / "fraud-detection/base/workflowtemplate-fraud-detection.yaml"
    edit(path, lambda d: d["spec"].update(podGc={"strategy": "OnPodSuccess"}))
    result = rtflow("lint", str(out), "--output", "json", "--no-real-linters")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["findings"][0]["field"] == "spec.podGc"
    missing = rtflow("lint", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert "no such file or folder" in missing.stderr


def test_a_bad_argo_cd_application_is_found(tmp_path: Path) -> None:
    try:
        argocd_schema.schema_path("Application")
    except argocd_schema.ArgoCDSchemaUnavailable as exc:
        component_missing(str(exc))
    out = tmp_path / "out"
    result = rtflow("compile", str(PIPELINES / "with_environments.py"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert lint_paths([out], real_linters=False).ok
    path = out / "argocd/application-scoring-dev.yaml"

    def break_it(d: dict) -> None:  # type: ignore[type-arg]
        d["spec"]["syncPolicy"]["automatic"] = d["spec"]["syncPolicy"].pop("automated")
        d["spec"]["revisionHistoryLimit"] = "ten"

    edit(path, break_it)
    result = rtflow("lint", str(out), "--output", "json", "--no-real-linters")
    assert result.returncode == 1, result.stderr
    findings = [
        (f["rule"], f["file"], f["object"], f["field"], f["message"])
        for f in json.loads(result.stdout)["findings"]
    ]
    assert findings == [
        (
            "structure",
            str(path),
            "Application/scoring-dev",
            "spec.revisionHistoryLimit",
            "'ten' is not of type 'integer'",
        ),
        (
            "structure",
            str(path),
            "Application/scoring-dev",
            "spec.syncPolicy.automatic",
            "unknown field",
        ),
    ]


def test_without_the_argo_cd_schema_lint_says_what_it_skipped(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = rtflow("compile", str(PIPELINES / "with_environments.py"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "lint", str(out), "--no-real-linters"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "RTFLOW_ARGOCD_SCHEMAS": str(tmp_path / "nowhere")},
    )
    assert result.returncode == 0, result.stderr
    (skipped,) = [line for line in result.stdout.splitlines() if "argo-cd-schema" in line]
    assert skipped.startswith("skipped: argo-cd-schema: 2 object(s) not checked")
    assert "Application/scoring-dev, Application/scoring-prod" in skipped
    assert "tools/provision.sh" in skipped


def test_an_overlay_that_undoes_a_default_is_found_in_its_build(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    overlay = out / "fraud-detection/overlays/prod"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    kustomization["patches"] = [
        {
            "path": "weaken.yaml",
            "target": {"kind": "Deployment", "name": "fraud-triton"},
        }
    ]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    (overlay / "weaken.yaml").write_text(
        yaml.safe_dump(
            [
                {
                    "op": "replace",
                    "path": "/spec/template/spec/containers/0/securityContext/"
                    "readOnlyRootFilesystem",
                    "value": False,
                }
            ]
        )
    )
    report = lint_paths([out], real_linters=False)
    if any("kustomize" in s for s in report.skipped):
        component_missing("; ".join(report.skipped))
    (finding,) = report.findings
    assert finding.rule == "security"
    assert finding.file == f"{overlay} (kustomize build)"
    assert finding.object == "Deployment/fraud-triton"
    assert finding.field.endswith("readOnlyRootFilesystem")
    # A base problem shows once, where it is written, not once per overlay build as well.
    edit(
        out / "fraud-detection/base/workflowtemplate-fraud-detection.yaml",
        lambda d: d["spec"].update(parallelism="lots"),
    )
    fields = [f.field for f in lint_paths([out], real_linters=False).findings]
    assert fields.count("spec.parallelism") == 1


def test_an_overlay_that_does_not_build_is_a_finding(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    overlay = out / "support-triage/overlays/staging"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    kustomization["resources"] = ["../../base", "../../missing.yaml"]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    report = lint_paths([out], real_linters=False)
    if any("kustomize" in s for s in report.skipped):
        component_missing("; ".join(report.skipped))
    (finding,) = report.findings
    assert finding.rule == "overlay" and finding.file == str(overlay)
    assert "missing.yaml" in finding.message
