"""rtflow lint reads any file it is given: a bad file is one finding (its path and why), the
other files are still linted, and nothing ends in a traceback (rtflow.verify.loading)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from compiled import ROOT
from components import component_missing

from rtflow.verify import loading
from rtflow.verify.lint import UsageError, lint_paths

CONFIG_MAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
"""
# A ConfigMap with an unknown field: a finding that shows the other files are still linted.
BROKEN_CONFIG_MAP = CONFIG_MAP.replace("\ndata:", "\ndta:")


def rtflow(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", *args], cwd=cwd, capture_output=True, text=True
    )


def parse_findings(folder: Path) -> dict[str, str]:
    report = lint_paths([folder], real_linters=False)
    return {Path(f.file).name: f.message for f in report.findings if f.rule == "parse"}


def with_a_broken_neighbour(tmp_path: Path, name: str, data: bytes) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / name).write_bytes(data)
    (folder / "configmap.yaml").write_text(BROKEN_CONFIG_MAP)
    return folder


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("name: café\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 on line 1"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff", "a binary file"),
        (b"[" * 100_000 + b"]" * 100_000, "exceeded maximum nesting depth"),
        (b"a: {" * 50_000 + b"}" * 50_000, "exceeded maximum nesting depth"),
        (b"key: [unclosed\n", "not YAML: while parsing a flow sequence"),
        (b"when: 2024-13-45\n", "not YAML: ValueError: month must be in 1..12"),
        (b"a: &a [*a]\n", "holds a node that contains itself"),
    ],
    ids=["latin-1", "binary", "deep-list", "deep-map", "not-yaml", "bad-date", "recursive"],
)
def test_a_bad_file_is_one_line_and_the_others_are_linted(
    tmp_path: Path, data: bytes, says: str
) -> None:
    folder = with_a_broken_neighbour(tmp_path, "bad.yaml", data)
    result = rtflow("lint", str(folder), "--no-real-linters")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = [x for x in result.stdout.splitlines() if "bad.yaml" in x]
    assert line.startswith(f"{folder / 'bad.yaml'}: ") and line.endswith("[parse]")
    assert says in line, line
    # The other file was linted: its unknown field is found.
    assert any(
        x.startswith(f"{folder / 'configmap.yaml'}: ConfigMap/settings")
        for x in result.stdout.splitlines()
    )


def test_a_billion_laughs_file_is_refused_not_expanded(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (tmp_path / "laughs.yaml").write_text("\n".join(lines) + "\nkind: ConfigMap\n")
    messages = parse_findings(tmp_path)
    assert "expands to over 1,000,000 nodes" in messages["laughs.yaml"]
    # A few aliases are fine (a cron schedule's "*/5" is not one either).
    (tmp_path / "laughs.yaml").write_text(
        CONFIG_MAP + "  base: &base x\n  copy: *base\n  cron: '*/5 * * * *'\n"
    )
    assert lint_paths([tmp_path], real_linters=False).ok


def test_without_libyaml_the_pure_loader_reads_the_same(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """PyYAML built without libyaml: the loader is built over the pure-Python one, reads the
    same objects, and its RecursionError on deep nesting is a finding."""
    (tmp_path / "deep.yaml").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    (tmp_path / "ok.yaml").write_text(CONFIG_MAP + "  comparator: =\n")
    with_libyaml = loading.read_documents(tmp_path / "ok.yaml")
    monkeypatch.setattr(loading, "ManifestLoader", loading.loader_for(yaml.SafeLoader))
    assert not issubclass(loading.ManifestLoader, yaml.CSafeLoader)
    assert loading.read_documents(tmp_path / "ok.yaml") == with_libyaml
    messages = parse_findings(tmp_path)
    assert list(messages) == ["deep.yaml"]
    assert "nested too deeply to read" in messages["deep.yaml"]


def test_the_c_loader_is_used_when_pyyaml_has_libyaml() -> None:
    assert yaml.__with_libyaml__, "this PyYAML has no libyaml: lint is ten times slower"
    assert issubclass(loading.ManifestLoader, yaml.CSafeLoader)


def test_an_oversize_file_is_a_finding_without_being_read(tmp_path: Path) -> None:
    big = tmp_path / "huge.yaml"
    with big.open("wb") as handle:  # sparse: the size is real, nothing is written
        handle.truncate(loading.MAX_FILE_MB * 1024 * 1024 + 1)
    (tmp_path / "ok.yaml").write_text(CONFIG_MAP)
    result = rtflow("lint", str(tmp_path), "--no-real-linters")
    assert result.returncode == 1
    (line,) = [x for x in result.stdout.splitlines() if "huge.yaml" in x]
    assert f"over the {loading.MAX_FILE_MB} MiB limit of lint" in line
    assert "RTFLOW_LINT_MAX_FILE_MB" in line


def test_the_size_limit_can_be_changed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(CONFIG_MAP)
    monkeypatch.setenv(loading.MAX_FILE_ENV, "0.00001")  # about 10 bytes
    assert "77 bytes, over the" in parse_findings(tmp_path)["ok.yaml"]
    monkeypatch.setenv(loading.MAX_FILE_ENV, "lots")
    with pytest.raises(UsageError, match="RTFLOW_LINT_MAX_FILE_MB='lots' is not a number"):
        lint_paths([tmp_path], real_linters=False)


def test_dev_null_and_a_fifo_are_read_not_missing(tmp_path: Path) -> None:
    # /dev/null holds nothing: no manifests, said so (exit 2), not "no such file".
    result = rtflow("lint", "/dev/null", "--no-real-linters")
    assert result.returncode == 2
    assert "no manifests found in /dev/null" in result.stderr
    assert "no such file" not in result.stderr
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(BROKEN_CONFIG_MAP))
    writer.start()
    try:
        result = rtflow("lint", str(fifo), "--no-real-linters")
    finally:
        writer.join(timeout=30)
    assert result.returncode == 1, result.stderr
    assert f"{fifo}: ConfigMap/settings: dta: unknown field [structure]" in result.stdout


def test_the_real_linters_see_what_a_pipe_gave(tmp_path: Path) -> None:
    """A pipe is read once, by lint: the real linters get its objects in a scratch file, and
    their findings name the pipe."""
    from rtflow.verify.argo_linters import LinterUnavailable, find_argo_lint

    try:
        find_argo_lint()
    except LinterUnavailable as exc:
        component_missing(str(exc))
    broken = ROOT / "tests/integration/fixtures/argo/invalid/dag-unknown-dependency.yaml"
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(broken.read_text()))
    writer.start()
    try:
        result = rtflow("lint", str(fifo))
    finally:
        writer.join(timeout=30)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = [x for x in result.stdout.splitlines() if x.endswith("[argo-lint]")]
    assert line.startswith(f'{fifo}: in "rtflow-fixture-bad-dependency" (WorkflowTemplate)')
    assert "invalid dependency scoer" in line and "rtflow-lint-" not in result.stdout


def test_a_fifo_inside_a_folder_is_reported_not_waited_for(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "ok.yaml").write_text(CONFIG_MAP)
    assert "not a regular file" in parse_findings(tmp_path)["pipe.yaml"]


@pytest.mark.parametrize("content", [None, {"notes.txt": "hello"}, {"k.yaml": "# nothing\n"}])
def test_a_folder_without_manifests_is_a_usage_error(
    tmp_path: Path, content: dict[str, str] | None
) -> None:
    for name, text in (content or {}).items():
        (tmp_path / name).write_text(text)
    result = rtflow("lint", str(tmp_path), "--no-real-linters")
    assert result.returncode == 2
    assert f"no manifests found in {tmp_path}" in result.stderr
    assert result.stdout == ""


def test_what_kustomize_prints_is_read(tmp_path: Path) -> None:
    """kustomize prints a Sensor filter's comparator "=" bare: YAML 1.2's string "=", which
    YAML 1.1 loaders read as the unconstructible !!value. rtflow's own overlay, built by the
    real kustomize, with such a filter in its Sensor, lints clean."""
    out = tmp_path / "out"
    compile_result = rtflow("compile", "examples/support_triage.py", "-o", str(out))
    assert compile_result.returncode == 0, compile_result.stderr
    sensor_file = out / "support-triage/base/sensor-support-triage.yaml"
    sensor = yaml.safe_load(sensor_file.read_text())
    sensor["spec"]["dependencies"][0]["filters"] = {
        "data": [{"path": "body.action", "type": "string", "comparator": "=", "value": ["new"]}]
    }
    sensor_file.write_text(yaml.safe_dump(sensor, sort_keys=False))
    from rtflow.verify.kustomize import KustomizeUnavailable, kustomize_command

    try:
        command = kustomize_command()
    except KustomizeUnavailable as exc:
        component_missing(str(exc))
    built = subprocess.run(
        [*command, str(out / "support-triage/overlays/prod")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "comparator: =\n" in built  # bare, as the issue saw it
    with pytest.raises(yaml.constructor.ConstructorError):
        list(yaml.safe_load_all(built))
    printed = tmp_path / "built.yaml"
    printed.write_text(built)
    report = lint_paths([printed], real_linters=False)
    assert report.ok, report.human()
    assert report.checked > 5
    (document,) = [d for d in loading.read_documents(printed) if d["kind"] == "Sensor"]
    assert document["spec"]["dependencies"][0]["filters"]["data"][0]["comparator"] == "="


# YAML whose values or errors come from PyYAML's own constructors: the fast path of
# ManifestLoader must give exactly what PyYAML's safe loader gives.
ODD_YAML = [
    "a: 1\nb: [1, 2.5, true, null, ~, '3', 0o17, 0x1f, .inf]\nc: {d: 2024-01-02}\n",
    "e: 2024-01-02T03:04:05Z\nf: 2024-13-45\n",
    "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\nmore:\n  <<: [*b, {z: 1}]\n",
    "list: &l [a, b]\nagain: *l\nscalar: &s text\ncopy: *s\n",
    "? [a, b]\n: c\n",
    "m: {? {a: 1} : b}\n",
    "!!omap [a: 1, b: 2]\n",
    "!!set {a, b}\n",
    "pairs: !!pairs [a: 1, a: 2]\n",
    "bin: !!binary aGVsbG8=\n",
    "1: one\nnull: two\ntrue: three\n3.5: four\n",
    "dup: 1\ndup: 2\n",
    "comparator: =\n= : x\n",
    "x: !custom 1\n",
    "k: !!str 1\nj: !!int '7'\nn: !!null ''\n",
    "--- \n--- a\n--- [1]\n...\n",
    "",
    "a: &a [*a]\n",
    "key: [unclosed\n",
]


class _Reference(yaml.SafeLoader):
    pass


_Reference.add_constructor("tag:yaml.org,2002:value", loading._value_as_string)


@pytest.fixture(params=["libyaml", "pure"])
def manifest_loader(request: pytest.FixtureRequest) -> type:
    if request.param == "pure":
        return loading.loader_for(yaml.SafeLoader)
    return loading.ManifestLoader


def _outcome(text: str, loader: type) -> tuple[str, str]:
    try:
        return "loaded", repr(list(yaml.load_all(text, Loader=loader)))
    except Exception as exc:
        return type(exc).__name__, str(exc).splitlines()[0]


@pytest.mark.parametrize("text", ODD_YAML)
def test_the_fast_constructor_gives_what_pyyaml_gives(text: str, manifest_loader: type) -> None:
    assert _outcome(text, manifest_loader) == _outcome(text, _Reference)


def test_the_fast_constructor_keeps_anchored_nodes_one_object() -> None:
    (document,) = yaml.load_all("a: &x {k: v}\nb: *x\n", Loader=loading.ManifestLoader)
    assert document["a"] is document["b"]


MALFORMED = """\
apiVersion: v1
kind: ConfigMap
metadata: just-a-string
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec: [1, 2]
---
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata: {name: w}
spec: {templates: [{name: a, container: x}]}
---
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: s, labels: x}
spec: {dependencies: [x, {name: d, eventSourceName: 5}], template: [1], triggers: x}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: [1]
spec: 7
---
kind: 5
"""


def test_a_malformed_object_is_a_finding_on_it_never_a_traceback(tmp_path: Path) -> None:
    """Each check meets lists where maps belong, numbers where names belong: what it cannot
    read is a finding on that object (or, for the checks over every object, one line)."""
    (tmp_path / "malformed.yaml").write_text(MALFORMED)
    result = rtflow("lint", str(tmp_path), "--no-real-linters")
    assert result.returncode == 1
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("rtflow lint: 6 object(s), "), result.stdout
    for label in ("ConfigMap/None", "Deployment/d", "WorkflowTemplate/w", "Sensor/s"):
        assert any(f"malformed.yaml: {label}: " in line for line in lines), label
    assert f"{tmp_path / 'malformed.yaml'}: 5/None: apiVersion and kind must both be given" in (
        result.stdout
    )
    assert (
        "Deployment/d: could not be checked (AttributeError: 'list' object has no attribute "
        "'get'); is the object malformed here? [security]"
    ) in result.stdout


def test_the_items_of_a_kubectl_list_are_each_checked(tmp_path: Path) -> None:
    items = [yaml.safe_load(CONFIG_MAP), yaml.safe_load(BROKEN_CONFIG_MAP)]
    items[1]["metadata"]["name"] = "other"
    (tmp_path / "list.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items})
    )
    report = lint_paths([tmp_path], real_linters=False)
    assert report.checked == 2
    assert [(f.object, f.field, f.message) for f in report.findings] == [
        ("ConfigMap/other", "dta", "unknown field")
    ]


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text(CONFIG_MAP)
    report = lint_paths(
        [tmp_path, tmp_path / "settings.yaml", f"{tmp_path}/../{tmp_path.name}"],
        real_linters=False,
    )
    assert report.ok, report.human()
    assert report.checked == 1
