"""manifests/ holds what Argo CD would sync for the examples; it must match a fresh compile."""

from __future__ import annotations

from compiled import ROOT

from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import check_folder
from rtflow.loader import load_pipelines

# Example files that declare pipelines (others may hold events or helpers).
EXAMPLES = sorted(
    p for p in (ROOT / "examples").glob("*.py") if "@rtflow.pipeline" in p.read_text()
)


def test_manifests_folder_is_current() -> None:
    pipelines = [p.build() for example in EXAMPLES for p in load_pipelines(str(example))[1]]
    command = f"rtflow compile {' '.join(str(e.relative_to(ROOT)) for e in EXAMPLES)} -o manifests"
    diffs = check_folder(compile_pipelines(pipelines, command=command), ROOT / "manifests")
    assert not diffs, f"manifests/ is stale; run `{command}`:\n" + "".join(diffs)
