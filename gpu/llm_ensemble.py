"""TensorRT-LLM with text in and out: preprocessing -> tensorrt_llm -> postprocessing.

The ``tensorrt_llm`` model (:func:`rtflow.gpu.llm.tensorrtllm_model`) takes and answers token
ids. tensorrtllm_backend's ``all_models/inflight_batcher_llm`` puts a tokenizer in front
(``preprocessing``, a Python-backend model) and a detokenizer behind (``postprocessing``) and
joins the three in an ``ensemble`` that takes ``text_input`` and streams ``text_output``, which
is what ``rtflow.generate`` calls. :func:`tensorrtllm_ensemble` declares the two Python models
and the ensemble with the tensor names and data types of that folder at tag **v0.14.0**
(commit 9958c21167e1a8e6bbddafc09b284904aaf22ab1, the TensorRT-LLM of Triton 24.10, as
:mod:`rtflow.gpu.llm_schemas` pins):

* ``preprocessing/config.pbtxt``: its inputs and outputs below, the parameters its
  ``model.py`` reads (``tokenizer_dir``, ``add_special_tokens``, ``visual_model_path``,
  ``gpt_model_path``), one ``KIND_CPU`` instance group;
* ``postprocessing/config.pbtxt``: ``TOKENS_BATCH`` and ``SEQUENCE_LENGTH`` in, ``OUTPUT``
  out, ``tokenizer_dir`` and ``skip_special_tokens``, ``dynamic_batching {}``;
* ``ensemble/config.pbtxt``: the steps and the ensemble tensor names (``_INPUT_ID``,
  ``_REQUEST_INPUT_LEN``, ``_TOKENS_BATCH``...), reduced to the inputs the ``tensorrt_llm``
  model rtflow declares (``input_ids``, ``input_lengths``, ``request_output_len``, ``end_id``,
  ``pad_id``, ``streaming``): Triton refuses an ensemble tensor no step reads.

The two Python models' files (their ``model.py``, which load the Hugging Face tokenizer from
``tokenizer_dir``) are the user's, in version folders as for any Python model: the upstream
ones work unchanged with this configuration. Serve the ensemble with its step models:
``triton_serving(name, [ensemble, *step_models(ensemble)], pool=...)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Final

from rtflow.errors import DefinitionError
from rtflow.gpu.ensemble import EnsembleStep, triton_ensemble
from rtflow.gpu.model_checks import _problem
from rtflow.gpu.models import TritonModel, triton_model
from rtflow.gpu.repository import Repository
from rtflow.gpu.scheduling import InstanceGroup
from rtflow.gpu.tensors import Tensor

__all__ = [
    "POSTPROCESSING_INPUTS",
    "POSTPROCESSING_OUTPUTS",
    "PREPROCESSING_INPUTS",
    "PREPROCESSING_OUTPUTS",
    "TRTLLM_ENSEMBLE_SOURCE",
    "tensorrtllm_ensemble",
]

TRTLLM_ENSEMBLE_SOURCE: Final = (
    "https://github.com/triton-inference-server/tensorrtllm_backend/tree/v0.14.0/"
    "all_models/inflight_batcher_llm"
)

_Spec = tuple[str, str, tuple[int, ...], bool]  # name, data type, dims, optional

PREPROCESSING_INPUTS: Final[tuple[_Spec, ...]] = (
    ("QUERY", "TYPE_STRING", (1,), False),
    ("DECODER_QUERY", "TYPE_STRING", (1,), True),
    ("REQUEST_OUTPUT_LEN", "TYPE_INT32", (1,), False),
    ("BAD_WORDS_DICT", "TYPE_STRING", (-1,), True),
    ("STOP_WORDS_DICT", "TYPE_STRING", (-1,), True),
    ("EMBEDDING_BIAS_WORDS", "TYPE_STRING", (-1,), True),
    ("EMBEDDING_BIAS_WEIGHTS", "TYPE_FP32", (-1,), True),
    ("END_ID", "TYPE_INT32", (1,), True),
    ("PAD_ID", "TYPE_INT32", (1,), True),
    ("PROMPT_TABLE_EXTRA_ID", "TYPE_UINT64", (1,), True),
)
"""``preprocessing/config.pbtxt``'s inputs at v0.14.0 (its ``model.py`` reads each one's
config, so all are declared)."""
PREPROCESSING_OUTPUTS: Final[tuple[_Spec, ...]] = (
    ("INPUT_ID", "TYPE_INT32", (-1,), False),
    ("REQUEST_INPUT_LEN", "TYPE_INT32", (1,), False),
    ("DECODER_INPUT_ID", "TYPE_INT32", (-1,), False),
    ("REQUEST_DECODER_INPUT_LEN", "TYPE_INT32", (1,), False),
    ("BAD_WORDS_IDS", "TYPE_INT32", (2, -1), False),
    ("STOP_WORDS_IDS", "TYPE_INT32", (2, -1), False),
    ("EMBEDDING_BIAS", "TYPE_FP32", (-1,), False),
    ("REQUEST_OUTPUT_LEN", "TYPE_INT32", (-1,), False),
    ("OUT_END_ID", "TYPE_INT32", (1,), False),
    ("OUT_PAD_ID", "TYPE_INT32", (1,), False),
    ("OUT_PROMPT_TABLE_EXTRA_IDS", "TYPE_UINT64", (-1,), False),
)
"""``preprocessing/config.pbtxt``'s outputs at v0.14.0."""
POSTPROCESSING_INPUTS: Final[tuple[_Spec, ...]] = (
    ("TOKENS_BATCH", "TYPE_INT32", (-1, -1), False),
    ("SEQUENCE_LENGTH", "TYPE_INT32", (-1,), False),
)
"""``postprocessing/config.pbtxt``'s inputs at v0.14.0."""
POSTPROCESSING_OUTPUTS: Final[tuple[_Spec, ...]] = (("OUTPUT", "TYPE_STRING", (-1,), False),)
"""``postprocessing/config.pbtxt``'s output at v0.14.0."""

# The upstream ensemble's own tensors (ensemble/config.pbtxt), for the inputs rtflow's
# tensorrt_llm model declares.
_ENSEMBLE_INPUTS: Final = (
    Tensor("text_input", "TYPE_STRING", (1,)),
    Tensor("max_tokens", "TYPE_INT32", (1,)),
    Tensor("stream", "TYPE_BOOL", (1,), optional=True),
)
_BOTH: Final = "REQUEST_OUTPUT_LEN"
_ENSEMBLE_OUTPUTS: Final = (Tensor("text_output", "TYPE_STRING", (-1,)),)
_PREPROCESS_IN: Final = {
    "QUERY": "text_input",
    "REQUEST_OUTPUT_LEN": "max_tokens",
}
_PREPROCESS_OUT: Final = {
    "INPUT_ID": "_INPUT_ID",
    "REQUEST_INPUT_LEN": "_REQUEST_INPUT_LEN",
    "REQUEST_OUTPUT_LEN": "_REQUEST_OUTPUT_LEN",
    "OUT_END_ID": "_PREPROCESSOR_END_ID",
    "OUT_PAD_ID": "_PREPROCESSOR_PAD_ID",
}
_LLM_IN: Final = {
    "input_ids": "_INPUT_ID",
    "input_lengths": "_REQUEST_INPUT_LEN",
    "request_output_len": "_REQUEST_OUTPUT_LEN",
    "end_id": "_PREPROCESSOR_END_ID",
    "pad_id": "_PREPROCESSOR_PAD_ID",
    "streaming": "stream",
}
_LLM_OUT: Final = {"output_ids": "_TOKENS_BATCH", "sequence_length": "_SEQUENCE_LENGTH"}
_POSTPROCESS_IN: Final = {"TOKENS_BATCH": "_TOKENS_BATCH", "SEQUENCE_LENGTH": "_SEQUENCE_LENGTH"}
_POSTPROCESS_OUT: Final = {"OUTPUT": "text_output"}


def _tensors(specs: Sequence[_Spec]) -> list[Tensor]:
    return [Tensor(name, dtype, dims, optional=optional) for name, dtype, dims, optional in specs]


def tensorrtllm_ensemble(
    name: str,
    *,
    llm: TritonModel,
    tokenizer_dir: str,
    preprocessing_versions: Mapping[int, str | os.PathLike[str]] | Sequence[int] = (1,),
    postprocessing_versions: Mapping[int, str | os.PathLike[str]] | Sequence[int] = (1,),
    repository: str | os.PathLike[str] | Repository | None = None,
    instances: int = 1,
    add_special_tokens: bool = True,
    skip_special_tokens: bool = True,
) -> TritonModel:
    """Declare the text ensemble around a :func:`~rtflow.gpu.llm.tensorrtllm_model`: the
    models ``<name>-preprocessing`` and ``<name>-postprocessing`` (Python backend, the
    tokenizer and the detokenizer) and the ensemble ``name`` (``text_input``, ``max_tokens``
    and the optional ``stream`` in, ``text_output`` out; the end and pad ids come from the
    tokenizer; decoupled when the engine model is).

    Args:
        llm: the ``tensorrt_llm`` model (token ids in and out).
        tokenizer_dir: the Hugging Face tokenizer's folder inside the server's pod (the two
            Python models' ``tokenizer_dir`` parameter).
        preprocessing_versions, postprocessing_versions: the Python models' version folders,
            as ``versions`` of :func:`~rtflow.gpu.models.triton_model`: ``[1]`` already in
            the repository, or ``{1: "local/folder"}`` holding that version's ``model.py``.
        repository: where the three go; by default the engine model's repository.
        instances: ``KIND_CPU`` instances of each Python model.
        add_special_tokens, skip_special_tokens: the tokenizer's and detokenizer's
            parameters of those names.

    Returns the ensemble; :func:`rtflow.gpu.ensemble.step_models` gives the three models the
    server must serve beside it.
    """
    if not isinstance(llm, TritonModel) or llm.backend != "tensorrtllm":
        raise DefinitionError(
            _problem(name, f"llm {getattr(llm, 'name', llm)!r} is not a TensorRT-LLM model"),
            fix="declare it with rtflow.gpu.llm.tensorrtllm_model(...)",
            field="llm",
        )
    if not isinstance(tokenizer_dir, str) or not tokenizer_dir.startswith("/"):
        raise DefinitionError(
            _problem(name, f"tokenizer_dir {tokenizer_dir!r} is not an absolute path in the pod"),
            fix="give the tokenizer's folder as the server's pod sees it, e.g. '/engines/llama'",
            field="tokenizer_dir",
        )
    for field, flag in (
        ("add_special_tokens", add_special_tokens),
        ("skip_special_tokens", skip_special_tokens),
    ):
        if not isinstance(flag, bool):
            raise DefinitionError(
                _problem(name, f"{field} {flag!r} is not a bool"),
                fix="give True or False",
                field=field,
            )
    where = repository if repository is not None else llm.repository
    groups = [InstanceGroup(count=instances, kind="KIND_CPU")]
    preprocessing = triton_model(
        f"{name}-preprocessing",
        backend="python",
        max_batch_size=llm.max_batch_size,
        inputs=_tensors(PREPROCESSING_INPUTS),
        outputs=_tensors([o for o in PREPROCESSING_OUTPUTS if o[0] != _BOTH]),
        instance_groups=groups,
        repository=where,
        versions=preprocessing_versions,
        parameters={
            "tokenizer_dir": tokenizer_dir,
            "add_special_tokens": add_special_tokens,
            "visual_model_path": "",  # a text model (the template's multimodal path unset)
            "gpt_model_path": dict(llm.parameters).get("gpt_model_path", ""),
        },
    )
    # upstream's preprocessing has REQUEST_OUTPUT_LEN as an input and an output (the budget
    # passed on), which triton_model refuses for hand-written models; Triton takes it
    (both,) = _tensors([o for o in PREPROCESSING_OUTPUTS if o[0] == _BOTH])
    preprocessing = replace(preprocessing, outputs=(*preprocessing.outputs, both))
    postprocessing = triton_model(
        f"{name}-postprocessing",
        backend="python",
        max_batch_size=llm.max_batch_size,
        dynamic_batching=llm.max_batch_size > 0,
        inputs=_tensors(POSTPROCESSING_INPUTS),
        outputs=_tensors(POSTPROCESSING_OUTPUTS),
        instance_groups=groups,
        repository=where,
        versions=postprocessing_versions,
        parameters={"tokenizer_dir": tokenizer_dir, "skip_special_tokens": skip_special_tokens},
    )
    return triton_ensemble(
        name,
        steps=[
            EnsembleStep(preprocessing, inputs=_PREPROCESS_IN, outputs=_PREPROCESS_OUT),
            EnsembleStep(llm, inputs=_LLM_IN, outputs=_LLM_OUT),
            EnsembleStep(postprocessing, inputs=_POSTPROCESS_IN, outputs=_POSTPROCESS_OUT),
        ],
        inputs=_ENSEMBLE_INPUTS,
        outputs=_ENSEMBLE_OUTPUTS,
        max_batch_size=llm.max_batch_size,
        repository=where,
    )
