"""Wrong input gets an error, never silent success (issue #12): what a pipeline file does at
import, names YAML readers would take for booleans or numbers, objects too large to store,
values out of range, and credentials written into arguments or URLs."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from compiled import ROOT
from ruamel.yaml import YAML

import rtflow
from rtflow import credentials
from rtflow.errors import DefinitionError
from rtflow.generators import yaml_text
from rtflow.generators.compiler import compile_pipelines

IMAGE = "ghcr.io/acme/tools:1.0"


def compile_file(
    tmp_path: Path, source: str, *, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "pipeline_under_test.py"
    path.write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "compile", str(path), "-o", "-"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def one_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


# -- what the file does at import --------------------------------------------------------------

PIPELINES_OF_ONE_NAME = """
    import rtflow

    @rtflow.stage(image="ghcr.io/acme/tools:1.0")
    def fetch(url: str) -> str:
        return url

    @rtflow.pipeline(name="same")
    def {first}(url: str) -> None:
        fetch(url)

    @rtflow.pipeline(name="same")
    def {second}(url: str) -> None:
        fetch(url)
"""


@pytest.mark.parametrize(("first", "second"), [("one", "two"), ("one", "one")])
def test_two_pipelines_of_one_name_are_an_error(tmp_path: Path, first: str, second: str) -> None:
    # ("one", "one"): the second rebinds the variable; only the registry still sees the first.
    line = one_line(
        compile_file(tmp_path, PIPELINES_OF_ONE_NAME.format(first=first, second=second))
    )
    assert "two pipelines are named 'same'" in line
    assert "name=" in line


def test_a_file_that_exits_at_import_is_an_error(tmp_path: Path) -> None:
    line = one_line(compile_file(tmp_path, "import sys\nimport rtflow\nsys.exit(0)\n"))
    assert "sys.exit(0)" in line and "__main__" in line


def test_an_import_that_never_ends_is_bounded(tmp_path: Path) -> None:
    result = compile_file(
        tmp_path, "import rtflow\nwhile True:\n    pass\n", env={"RTFLOW_IMPORT_TIMEOUT": "1"}
    )
    line = one_line(result)
    assert "took more than 1 s" in line and "RTFLOW_IMPORT_TIMEOUT" in line


def test_an_import_that_swallows_exceptions_is_still_bounded(tmp_path: Path) -> None:
    source = """
        import time
        import rtflow
        while True:
            try:
                time.sleep(10)
            except Exception:
                pass
    """
    line = one_line(compile_file(tmp_path, source, env={"RTFLOW_IMPORT_TIMEOUT": "1"}))
    assert "took more than 1 s" in line


def test_an_interrupt_at_import_is_one_line_and_130(tmp_path: Path) -> None:
    line = one_line(compile_file(tmp_path, "import rtflow\nraise KeyboardInterrupt\n"), code=130)
    assert line == "rtflow: interrupted"


# -- YAML that every reader reads back as written -----------------------------------------------

TRICKY = ["y", "Y", "n", "N", "yes", "no", "on", "off", "true", "null", "~", "1e3", "0o17",
          ".5", "0x1F", "1:20", "=", "-1", "+1", "1_000", "012", ".inf", "NaN"]  # fmt: skip


def test_tricky_strings_read_back_as_strings_in_yaml_1_1_and_1_2() -> None:
    text = yaml_text.dump({"values": TRICKY, **{value: value for value in TRICKY}})
    in_1_1 = yaml.safe_load(text)
    in_1_2 = YAML(typ="safe", pure=True).load(io.StringIO(text))
    for read in (in_1_1, in_1_2):
        assert read["values"] == TRICKY
        assert {k: v for k, v in read.items() if k != "values"} == {v: v for v in TRICKY}


def test_a_stage_and_inputs_named_like_booleans_compile_to_quoted_strings(tmp_path: Path) -> None:
    source = """
        import rtflow

        @rtflow.stage(image="ghcr.io/acme/tools:1.0")
        def y(n: str, on: str) -> str:
            return n

        @rtflow.pipeline(name="yn")
        def yn(n: str = "no", on: str = "off") -> None:
            y(n, on)
    """
    result = compile_file(tmp_path, source)
    assert result.returncode == 0, result.stderr
    for document in YAML(typ="safe", pure=True).load_all(io.StringIO(result.stdout)):
        if document and document.get("kind") == "WorkflowTemplate":
            template = document
    names = [t["name"] for t in template["spec"]["templates"]]
    assert "y" in names
    arguments = [p["name"] for p in template["spec"]["arguments"]["parameters"]]
    assert arguments == ["n", "on"]
    assert "- name: 'n'" in result.stdout and "name: 'y'" in result.stdout


# -- sizes, ranges, values --------------------------------------------------------------------


def test_an_object_larger_than_the_api_server_stores_is_an_error() -> None:
    stages = [rtflow.container(f"step-{i}", image=IMAGE, args=["run", str(i)]) for i in range(6000)]

    @rtflow.pipeline(name="huge")
    def huge() -> None:
        for stage in stages:
            stage()

    with pytest.raises(rtflow.errors.RtflowError) as caught:
        compile_pipelines([huge.build()])
    message = str(caught.value)
    assert "WorkflowTemplate 'huge'" in message and "1.5 MiB" in message
    assert "templateRef" in message


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"cpu": "1e30"}, "larger than Kubernetes can hold"),
        ({"memory": "99999999Ei"}, "larger than Kubernetes can hold"),
    ],
)
def test_quantities_beyond_what_kubernetes_holds(options: dict[str, str], expected: str) -> None:
    heavy = rtflow.container("heavy", image=IMAGE, **options)  # type: ignore[arg-type]

    @rtflow.pipeline(name="heavy")
    def pipe() -> None:
        heavy()

    error = _error(pipe)
    assert expected in str(error)
    assert error.field in {"cpu", "memory"}


def test_a_zero_interval_is_an_error() -> None:
    tick = rtflow.container("tick", image=IMAGE)

    @rtflow.pipeline(name="ticker", triggers=[rtflow.calendar(interval="0s")])
    def ticker() -> None:
        tick()

    error = _error(ticker)
    assert "'0s' is zero" in str(error) and error.field and "interval" in error.field


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_default_is_an_error(value: float) -> None:
    @rtflow.stage(image=IMAGE)
    def use(ratio: float) -> None:
        del ratio

    @rtflow.pipeline(name="ratios")
    def ratios(ratio: float = value) -> None:
        use(ratio)

    assert "not a finite number" in str(_error(ratios))


def _error(pipeline: rtflow.Pipeline) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        pipeline.build()
    assert "\n" not in str(caught.value)
    return caught.value


# -- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--db", "postgres://admin:hunter2@db:5432/x"],
        ["--password", "hunter2"],
        ["--api-key=abc123"],
        ["--client-secret", "s3cr3t"],
    ],
)
def test_credentials_in_arguments_are_an_error(args: list[str]) -> None:
    job = rtflow.container("dump", image=IMAGE, args=args)

    @rtflow.pipeline(name="creds")
    def creds() -> None:
        job()

    error = _error(creds)
    assert error.field == "args" and "Secret" in error.fix


def test_a_password_in_a_url_in_env_is_an_error() -> None:
    query = rtflow.container(
        "query", image=IMAGE, env={"DATABASE_URL": "postgres://admin:hunter2@db/x"}
    )

    @rtflow.pipeline(name="urls")
    def urls() -> None:
        query()

    assert "a URL with a password" in str(_error(urls))


@pytest.mark.parametrize(
    "args",
    [
        ["--password-file", "/var/run/secrets/db/password"],
        ["--password", "$(DB_PASSWORD)"],
        ["--token", "{{inputs.parameters.token}}"],
        ["--auth-mode", "basic"],
        ["--db", "postgres://db:5432/x"],
        ["--db", "postgres://admin:$(DB_PASSWORD)@db/x"],
        ["--verbose", "--tokenize"],
    ],
)
def test_references_to_credentials_are_not_credentials(args: list[str]) -> None:
    assert credentials.argument_credentials(args) == []
