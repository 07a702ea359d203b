"""rtflow lint: clean on what compile writes, precise on what a hand edit breaks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from compiled import ROOT

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
    report = lint_paths([compiled(tmp_path)], real_linters=False)
    assert report.ok, report.human()
    assert report.checked == 24  # 27 YAML files, 3 of them kustomization.yaml
    result = rtflow("lint", str(tmp_path / "out"), "--no-real-linters")
    assert result.returncode == 0
    assert result.stdout.endswith("24 object(s), clean\n")


def test_an_unknown_field_is_found_with_its_path(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    path = out / "fraud-detection/workflowtemplate-fraud-detection.yaml"
    edit(path, lambda d: d["spec"]["templates"][3]["container"].update(imagePullPolcy="Always"))
    report = lint_paths([out], real_linters=False)
    (finding,) = report.findings
    assert finding.rule == "structure"
    assert finding.field == "spec.templates[3].container.imagePullPolcy"
    assert finding.object == "WorkflowTemplate/fraud-detection"
    assert finding.file == str(path)


def test_a_wrong_type_is_found(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    path = out / "fraud-detection/workflowtemplate-fraud-detection.yaml"
    edit(path, lambda d: d["spec"].update(parallelism="lots"))
    (finding,) = lint_paths([out], real_linters=False).findings
    assert finding.field == "spec.parallelism"


def test_security_regressions_are_found(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    path = out / "support-triage/workflowtemplate-support-triage.yaml"

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


def test_a_core_object_is_checked_strictly(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    path = out / "fraud-detection/rolebinding-fraud-detection-sensor.yaml"
    edit(path, lambda d: d["roleRef"].update(kindd="Role"))
    findings = lint_paths([out], real_linters=False).findings
    assert [f.rule for f in findings] == ["structure"]
    assert findings[0].object == "RoleBinding/fraud-detection-sensor"


def test_cross_resource_breaks_are_found(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    (out / "fraud-detection/eventsource-fraud-detection-transactions.yaml").unlink()
    path = out / "support-triage/sensor-support-triage.yaml"
    edit(
        path,
        lambda d: d["spec"]["triggers"][0]["template"]["k8s"]["parameters"][0].update(
            dest="spec.arguments.parameters.9.value"
        ),
    )
    messages = [f.message for f in lint_paths([out], real_linters=False).findings]
    assert any("'fraud-detection-transactions', which is not generated" in m for m in messages)
    assert any("parameters.9.value" in m for m in messages)


def test_json_output_and_exit_codes(tmp_path: Path) -> None:
    out = compiled(tmp_path)
    path = out / "fraud-detection/workflowtemplate-fraud-detection.yaml"
    edit(path, lambda d: d["spec"].update(podGc={"strategy": "OnPodSuccess"}))
    result = rtflow("lint", str(out), "--output", "json", "--no-real-linters")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["findings"][0]["field"] == "spec.podGc"
    missing = rtflow("lint", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert "no such file or folder" in missing.stderr
