"""Where a local run finds a model's version folders, and what it says when it cannot.

A relative ``versions`` folder is read beside the module that holds the model as a
module-level name (as the examples declare their models). A model made inside a function is
held by no module, so its folder is read from the current folder; when it is not there, the
error says why and how to declare it, not only that the folder is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rtflow.gpu.models import triton_model
from rtflow.gpu.tensors import Tensor
from rtflow.stages.inference import InferenceSetupError, write_local_repository


def scorer(versions: dict[int, str]) -> object:
    return triton_model(
        "factory-scorer",
        backend="python",
        max_batch_size=8,
        inputs=[Tensor("x", "TYPE_FP32", (1,))],
        outputs=[Tensor("y", "TYPE_FP32", (1,))],
        repository="pvc://models/factory",
        versions=versions,
    )


def test_a_model_made_in_a_function_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model = scorer({1: "scorers/factory/1"})
    with pytest.raises(InferenceSetupError) as caught:
        write_local_repository([model], tmp_path / "repository")  # type: ignore[list-item]
    message = str(caught.value)
    assert "'scorers/factory/1' does not exist" in message
    assert "module-level name" in message
    assert "Path(__file__).parent / 'scorers/factory/1'" in message


def test_an_absolute_folder_works_from_a_function(tmp_path: Path) -> None:
    version = tmp_path / "scorers" / "factory" / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text("# the model\n")
    model = scorer({1: str(version)})
    repository = write_local_repository([model], tmp_path / "repository")  # type: ignore[list-item]
    assert (repository / "factory-scorer" / "1" / "model.py").read_text() == "# the model\n"
    assert (repository / "factory-scorer" / "config.pbtxt").is_file()
