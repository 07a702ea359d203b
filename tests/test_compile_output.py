"""Compile never destroys what it did not write (issue #12): the output folder's record, links,
files in the way, a failing write, and ``-o`` that is not a folder."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from compiled import PIPELINES, ROOT

from rtflow.generators.output_folder import RECORD, read_record

TWO = str(PIPELINES / "two_pipelines.py")

VARIANT = textwrap.dedent(
    """
    import os

    import rtflow

    @rtflow.stage(image="ghcr.io/acme/tools:1.0")
    def fetch(url: str) -> str:
        return url

    hourly = [rtflow.calendar("0 * * * *", name="hourly")] if os.environ.get("HOURLY") else []

    @rtflow.pipeline(name="variant", triggers=hourly)
    def variant(url: str = "https://example.com") -> None:
        fetch(url)
    """
)


def rtflow(
    *args: str, env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,  # type: ignore[call-overload]
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_compile_into_a_repository_root_touches_only_its_own_files(tmp_path: Path) -> None:
    # The defect: `rtflow compile examples/support_triage.py -o .` in a clone deleted every
    # file under manifests/ that carried rtflow's header.
    shutil.copytree(ROOT / "manifests", tmp_path / "manifests")
    (tmp_path / "notes.yaml").write_text("hand: written\n")
    before = snapshot(tmp_path)
    result = rtflow("compile", "examples/support_triage.py", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before
    assert "removed" not in result.stderr
    assert "support-triage/base/kustomization.yaml" in after


def test_a_second_pipeline_keeps_the_first_and_both_are_listed(tmp_path: Path) -> None:
    assert rtflow("compile", f"{TWO}:ingest", "-o", str(tmp_path)).returncode == 0
    first = snapshot(tmp_path / "ingest")
    result = rtflow("compile", f"{TWO}:nightly_report", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert snapshot(tmp_path / "ingest") == first
    root = yaml.safe_load((tmp_path / "kustomization.yaml").read_text())
    assert root["resources"] == ["ingest", "nightly-report"]
    owners = {e.owner for e in read_record(tmp_path).values()}
    assert {"ingest", "nightly-report"} <= owners


def test_an_object_no_longer_produced_is_removed_and_said(tmp_path: Path) -> None:
    target = tmp_path / "variant.py"
    target.write_text(VARIANT)
    out = tmp_path / "out"
    assert rtflow("compile", str(target), "-o", str(out), env={"HOURLY": "1"}).returncode == 0
    cron = [p for p in (out / "variant").iterdir() if "eventsource" in p.name or "cron" in p.name]
    assert cron, sorted(p.name for p in (out / "variant").iterdir())
    result = rtflow("compile", str(target), "-o", str(out))
    assert result.returncode == 0, result.stderr
    for path in cron:
        assert not path.exists()
        assert f"removed {path}" in result.stderr
    assert all(not p.startswith(tuple(c.name for c in cron)) for p in read_record(out))


def test_an_edited_file_no_longer_produced_is_left_and_said(tmp_path: Path) -> None:
    target = tmp_path / "variant.py"
    target.write_text(VARIANT)
    out = tmp_path / "out"
    assert rtflow("compile", str(target), "-o", str(out), env={"HOURLY": "1"}).returncode == 0
    cron = next(p for p in (out / "variant").iterdir() if "eventsource" in p.name)
    cron.write_text(cron.read_text() + "# my note\n")
    result = rtflow("compile", str(target), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert cron.exists() and cron.read_text().endswith("# my note\n")
    assert f"left {cron}" in result.stderr
    assert f"variant/{cron.name}" not in read_record(out)  # the user's file now


def test_a_header_file_this_pipeline_did_not_write_is_never_removed(tmp_path: Path) -> None:
    assert rtflow("compile", TWO, "-o", str(tmp_path)).returncode == 0
    foreign = tmp_path / "ingest" / "workflowtemplate-copied.yaml"
    shutil.copy(tmp_path / "nightly-report" / "workflowtemplate-nightly-report.yaml", foreign)
    assert rtflow("compile", f"{TWO}:ingest", "-o", str(tmp_path)).returncode == 0
    assert foreign.exists()
    assert (tmp_path / "nightly-report" / "workflowtemplate-nightly-report.yaml").exists()


def test_a_file_in_the_way_is_an_error_and_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "ingest").mkdir()
    mine = tmp_path / "ingest" / "workflowtemplate-ingest.yaml"
    mine.write_text("mine: true\n")
    before = snapshot(tmp_path)
    line = one_error_line(rtflow("compile", TWO, "-o", str(tmp_path)))
    assert str(mine) in line and "not written by rtflow" in line
    assert snapshot(tmp_path) == before
    assert not (tmp_path / RECORD).exists()


def test_links_are_never_followed_out_of_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("precious: true\n")
    out = tmp_path / "out"
    (out / "ingest").mkdir(parents=True)
    (out / "ingest" / "workflowtemplate-ingest.yaml").symlink_to(outside)
    line = one_error_line(rtflow("compile", f"{TWO}:ingest", "-o", str(out)))
    assert "symbolic link" in line
    assert outside.read_text() == "precious: true\n"
    # A linked folder on the way is refused as well.
    shutil.rmtree(out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "ingest").symlink_to(elsewhere)
    assert "symbolic link" in one_error_line(rtflow("compile", f"{TWO}:ingest", "-o", str(out)))
    assert list(elsewhere.iterdir()) == []


def _limit_file_size() -> None:
    # Writes past 300 bytes fail with EFBIG, as on a full device (Python ignores SIGXFSZ).
    resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))


def test_a_failing_write_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "variant.py"
    target.write_text(VARIANT)
    out = tmp_path / "out"
    assert rtflow("compile", str(target), "-o", str(out)).returncode == 0
    before = snapshot(out)
    result = rtflow(
        "compile", str(target), "-o", str(out), env={"HOURLY": "1"}, preexec_fn=_limit_file_size
    )
    line = one_error_line(result)
    assert "the folder is as it was" in line
    assert snapshot(out) == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".rtflow-scratch")] == []


@pytest.mark.parametrize("where", ["a-file", "/proc/rtflow-out", "/dev/full"])
def test_output_that_is_not_a_folder_is_one_line(tmp_path: Path, where: str) -> None:
    if where == "a-file":
        where = str(tmp_path / "file.txt")
        Path(where).write_text("x")
    line = one_error_line(rtflow("compile", TWO, "-o", where))
    assert where in line


def test_check_reports_a_recorded_file_no_longer_produced(tmp_path: Path) -> None:
    target = tmp_path / "variant.py"
    target.write_text(VARIANT)
    out = tmp_path / "out"
    assert rtflow("compile", str(target), "-o", str(out), env={"HOURLY": "1"}).returncode == 0
    stale = rtflow("compile", str(target), "-o", str(out), "--check")
    assert stale.returncode == 1
    assert "no longer produced" in stale.stdout


def test_the_summary_says_new_and_unchanged(tmp_path: Path) -> None:
    first = rtflow("compile", TWO, "-o", str(tmp_path))
    assert first.returncode == 0
    count = len([p for p in tmp_path.rglob("*") if p.is_file()]) - 1  # not the record
    assert f"({count} new)" in first.stderr
    again = rtflow("compile", TWO, "-o", str(tmp_path))
    assert "(no file changed)" in again.stderr


def test_check_needs_the_record(tmp_path: Path) -> None:
    assert rtflow("compile", TWO, "-o", str(tmp_path)).returncode == 0
    (tmp_path / RECORD).unlink()
    stale = rtflow("compile", TWO, "-o", str(tmp_path), "--check")
    assert stale.returncode == 1
    assert "does not record this compile's files" in stale.stdout


def test_an_env_compile_keeps_the_other_environments_recorded(tmp_path: Path) -> None:
    example = "examples/fraud_detection.py"
    assert rtflow("compile", example, "-o", str(tmp_path)).returncode == 0
    kind = {p for p in read_record(tmp_path) if "/overlays/kind/" in p}
    assert kind
    assert rtflow("compile", example, "-o", str(tmp_path), "--env", "prod").returncode == 0
    assert kind <= set(read_record(tmp_path))
    assert all((tmp_path / p).exists() for p in kind)
