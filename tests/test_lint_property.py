"""rtflow lint never crashes (issue #12): random bytes, random JSON and random YAML-ish text,
written as manifests, give a report (findings, warnings or clean) or the one usage error
"no manifests found"; never an exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtflow.verify.lint import lint_paths
from rtflow.verify.loading import UsageError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
KINDS = st.sampled_from(
    ["Deployment", "WorkflowTemplate", "Sensor", "EventSource", "NetworkPolicy", "Service", "X"]
)


def lint_folder(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        try:
            report = lint_paths([folder], real_linters=False)
        except UsageError as error:
            assert "no manifests" in str(error)
            return
        report.human()
        json.loads(report.json())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=3))
def test_random_bytes(blobs: list[bytes]) -> None:
    lint_folder({f"f{i}.yaml": blob for i, blob in enumerate(blobs)})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(JSON, min_size=1, max_size=3))
def test_random_json_documents(documents: list[Any]) -> None:
    lint_folder({f"f{i}.yaml": json.dumps(d).encode() for i, d in enumerate(documents)})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(KINDS, st.dictionaries(st.sampled_from(["metadata", "spec", "apiVersion", "data"]), JSON))
def test_random_objects_of_known_kinds(kind: str, body: dict[str, Any]) -> None:
    document = {"apiVersion": "v1", "kind": kind, **body}
    lint_folder({"object.yaml": json.dumps(document).encode()})
