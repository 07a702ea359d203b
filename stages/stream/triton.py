"""Client-side micro-batching to Triton over gRPC, for the stream plane.

A worker hands over the tensors of every event of its batch at once; they are stacked into
requests of at most ``batch`` rows (never above the model's ``max_batch_size``), several
requests go out at once (``in_flight``) and the answers are split back per event, in the
KServe v2 shape the workflow plane's http step gives a stage (``{"model_name", "outputs":
[{"name", "datatype", "shape", "data"}]}``), so the same stage function reads either.

Failures are told apart because they mean different things for exactly-once:

* Triton unreachable, overloaded, timing out or still loading (UNAVAILABLE, DEADLINE_EXCEEDED,
  NOT_FOUND, ...): :class:`DependencyError`. The worker commits nothing past this batch and
  retries it with backoff.
* Triton refusing a request's data: each event of that request is sent alone, and the events
  Triton still refuses are rejected one by one (they go to the dead-letter topic), unless all
  are refused, which says the server, not the data, is at fault (DependencyError again).
* A tensor that does not fit the declared shape or dtype never reaches Triton: that event is
  rejected before the request is built.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rtflow.gpu.client import NUMPY_DTYPES
from rtflow.gpu.kserve import KSERVE_DATATYPES
from rtflow.gpu.models import TritonModel
from rtflow.gpu.text_tensors import BYTES, TextDecodeError, decoded, text_problem
from rtflow.stages.stream.answer_cache import AnswerCache, copy_answer
from rtflow.stages.stream.plan import DependencyError

# gRPC status codes that say "the server, not this request": retry the batch later.
TRANSIENT = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "RESOURCE_EXHAUSTED", "NOT_FOUND", "ABORTED"}
)


class VersionNotFound(DependencyError):
    """Triton does not serve the version asked for by number: gRPC ``NOT_FOUND``, "Request for
    unknown model: '<m>' version <n> is not found" (never loaded, unloaded, or a restarted
    Triton that loaded only its compiled policy). A model under canary falls back on it
    (:mod:`.rollout`); for any other caller it is a DependencyError like the rest."""


_VERSION_NOT_FOUND = re.compile(r"version \d+ is not found")


@dataclass(frozen=True)
class Rejected:
    """Why Triton will not take one event's tensors."""

    reason: str


@dataclass(frozen=True)
class _Spec:
    name: str
    datatype: str
    dtype: Any
    dims: tuple[int, ...]


def _status(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    text = str(status() if callable(status) else status or "")
    return text.rsplit(".", 1)[-1]


class TritonBatcher:
    """One model on one Triton, called in micro-batches; one per inference stage per worker."""

    def __init__(
        self,
        url: str,
        model: TritonModel,
        *,
        batch: int,
        in_flight: int = 4,
        timeout_seconds: float = 2.0,
        version: int | None = None,
    ) -> None:
        """``version``: ask for that version by number (a model under canary,
        :mod:`.rollout`); None asks for the one Triton's version policy picks."""
        import numpy as np
        import tritonclient.grpc as grpcclient  # type: ignore[import-untyped, unused-ignore]

        self.url = url
        self.model = model
        self.batched = model.batched
        self.batch = max(1, min(batch, model.max_batch_size)) if self.batched else 1
        self.in_flight = max(1, in_flight)
        self.timeout_seconds = timeout_seconds
        self.version = "" if version is None else str(version)
        self._np: Any = np
        self._grpc: Any = grpcclient
        self._client: Any = grpcclient.InferenceServerClient(url=url)
        self._outputs = [(t.name, KSERVE_DATATYPES[t.data_type]) for t in model.outputs]
        self._requested = [grpcclient.InferRequestedOutput(name) for name, _ in self._outputs]
        self._specs = [
            _Spec(
                t.name, KSERVE_DATATYPES[t.data_type], np.dtype(NUMPY_DTYPES[t.data_type]), t.dims
            )
            for t in model.inputs
        ]
        self.requests = 0
        self.rows = 0
        self.cache = AnswerCache(model.client_cache) if model.client_cache else None
        self._calls: cf.ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._calls is not None:
            self._calls.shutdown(wait=True)
        self._client.close()

    def submit(
        self, rows: Sequence[Mapping[str, Any]]
    ) -> cf.Future[list[dict[str, Any] | Rejected]]:
        """:meth:`infer` on a thread of the batcher's own: the gRPC wait releases the GIL, so
        the worker starts its next batch while Triton answers this one. Two threads, so the
        next batch's request reaches Triton without waiting for this one's answer (a model
        the stream plane calls has two instances)."""
        if self._calls is None:
            self._calls = cf.ThreadPoolExecutor(2, thread_name_prefix=f"rtflow-{self.model.name}")
        return self._calls.submit(self.infer, list(rows))

    # -- building requests -----------------------------------------------------------------------

    def _fits(self, spec: _Spec, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(spec.dims) and all(
            want in (-1, got) for want, got in zip(spec.dims, shape, strict=True)
        )

    def _row_problem(self, row: Mapping[str, Any]) -> str | None:
        np = self._np
        names = [s.name for s in self._specs]
        if set(row) != set(names):
            return f"tensors {sorted(row)} are not the model's inputs {names}"
        for spec in self._specs:
            try:
                array = np.asarray(row[spec.name], dtype=spec.dtype)
            except (TypeError, ValueError) as exc:
                return f"input {spec.name!r} is not {spec.datatype}: {exc}"
            if not self._fits(spec, array.shape):
                return (
                    f"input {spec.name!r} has shape {list(array.shape)}, declared {list(spec.dims)}"
                )
            problem = text_problem(array) if spec.datatype == BYTES else None
            if problem is not None:
                return f"input {spec.name!r} is BYTES but {problem}"
        return None

    def _stack(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
        """The batch's arrays, or None when some row does not fit (then checked row by row)."""
        np = self._np
        arrays: dict[str, Any] = {}
        try:
            for spec in self._specs:
                array = np.asarray([row[spec.name] for row in rows], dtype=spec.dtype)
                if not self._fits(spec, array.shape[1:]):
                    return None
                # an object array takes anything, and tritonclient would send str(5) as "5"
                if spec.datatype == BYTES and text_problem(array) is not None:
                    return None
                arrays[spec.name] = array
        except (TypeError, ValueError, KeyError):
            return None
        return arrays

    # -- calling ---------------------------------------------------------------------------------

    def _key(self, row: Mapping[str, Any]) -> bytes | None:
        """The request's identity for the answer cache: each input's datatype, shape and bytes
        (text element by element, as UTF-8); None when the row does not fit the model."""
        np = self._np
        parts: list[bytes] = []
        try:
            for spec in self._specs:
                array = np.asarray(row[spec.name], dtype=spec.dtype)
                parts.append(f"{spec.name}:{spec.datatype}:{array.shape}|".encode())
                if spec.datatype == BYTES:
                    for item in array.reshape(-1):
                        data = item.encode() if isinstance(item, str) else bytes(item)
                        parts.append(len(data).to_bytes(8, "little") + data)
                else:
                    parts.append(np.ascontiguousarray(array).tobytes())
        except (TypeError, ValueError, KeyError, UnicodeError):
            return None
        return b"".join(parts)

    def infer(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | Rejected]:
        """Each row's KServe-shaped answer or why it was rejected; DependencyError when Triton
        cannot answer at all. With the model's ``client_cache``, a row seen before (or twice
        in this batch) is answered without a request (:mod:`.answer_cache`)."""
        cache = self.cache
        if cache is None:
            return self._infer(rows)
        answers: list[dict[str, Any] | Rejected | None] = [None] * len(rows)
        sent: list[Mapping[str, Any]] = []
        first: dict[bytes, int] = {}  # a key -> its row's place among the sent ones
        waiting: list[tuple[int, int]] = []  # (row, place among the sent ones)
        hits = 0
        for index, row in enumerate(rows):
            key = self._key(row)
            if key is not None:
                cached = cache.get(key)
                if cached is not None:
                    answers[index], hits = cached, hits + 1
                    continue
                if key in first:  # the same request twice in one batch: sent once
                    waiting.append((index, first[key]))
                    hits += 1
                    continue
                first[key] = len(sent)
            waiting.append((index, len(sent)))
            sent.append(row)
        results = self._infer(sent) if sent else []
        for key, place in first.items():
            result = results[place]
            if isinstance(result, dict):
                cache.put(key, result)
        taken: set[int] = set()
        for index, place in waiting:
            result = results[place]
            answers[index] = (
                copy_answer(result) if place in taken and isinstance(result, dict) else result
            )
            taken.add(place)
        cache.count(hits, len(sent))
        return [a if a is not None else Rejected("no answer") for a in answers]

    def _infer(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | Rejected]:
        answers: list[dict[str, Any] | Rejected | None] = [None] * len(rows)
        good = list(range(len(rows)))
        arrays = self._stack(rows) if rows else None
        if arrays is None and rows:
            good = []
            for index, row in enumerate(rows):
                problem = self._row_problem(row)
                if problem is None:
                    good.append(index)
                else:
                    answers[index] = Rejected(problem)
            if not good:  # every row refused before any request (no request to split)
                return [a if a is not None else Rejected("no answer") for a in answers]
            arrays = self._stack([rows[i] for i in good])
            assert arrays is not None
        if not self.batched:
            chunks = [(i, i + 1) for i in range(len(good))]
        else:  # equal parts, not 256 + 1: a tiny last request costs a whole round trip
            parts = -(-len(good) // self.batch)
            bounds = [len(good) * k // parts for k in range(parts + 1)]
            chunks = list(itertools.pairwise(bounds))
        results = self._send(arrays or {}, chunks)
        for (start, end), outcome in zip(chunks, results, strict=True):
            if isinstance(outcome, BaseException):
                for offset, answer in enumerate(self._one_by_one(rows, good[start:end])):
                    answers[good[start + offset]] = answer
                continue
            for offset, answer in enumerate(self._split(outcome, end - start)):
                answers[good[start + offset]] = answer
        return [a if a is not None else Rejected("no answer") for a in answers]

    def _inputs(self, arrays: Mapping[str, Any], start: int, end: int) -> list[Any]:
        wrapped = []
        for spec in self._specs:
            part = arrays[spec.name][start:end] if self.batched else arrays[spec.name][start]
            item = self._grpc.InferInput(spec.name, list(part.shape), spec.datatype)
            item.set_data_from_numpy(part)
            wrapped.append(item)
        return wrapped

    def _send(
        self, arrays: Mapping[str, Any], chunks: Sequence[tuple[int, int]]
    ) -> list[Any | BaseException]:
        """Every chunk as one request, ``in_flight`` at a time; a transport failure of any one
        is a DependencyError for the batch."""
        results: list[Any] = [None] * len(chunks)
        if self.in_flight == 1 or len(chunks) == 1:
            # One request at a time: the blocking call. tritonclient's async_infer starts
            # gRPC's channel-spin thread for a call when none is active, a thread per batch.
            for index, (start, end) in enumerate(chunks):
                try:
                    results[index] = self._client.infer(
                        self.model.name,
                        self._inputs(arrays, start, end),
                        model_version=self.version,
                        outputs=self._requested,
                        client_timeout=self.timeout_seconds,
                    )
                except Exception as exc:  # classified below, as the callback's errors are
                    results[index] = exc
            return self._checked(results, chunks)
        slots = threading.Semaphore(self.in_flight)
        done = threading.Event()
        remaining = [len(chunks)]
        lock = threading.Lock()
        if not chunks:
            return []

        def finished(index: int, result: Any, error: Any) -> None:
            results[index] = error if error is not None else result
            slots.release()
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

        for index, (start, end) in enumerate(chunks):
            slots.acquire()
            try:
                self._client.async_infer(
                    self.model.name,
                    self._inputs(arrays, start, end),
                    model_version=self.version,
                    callback=lambda result, error, i=index: finished(i, result, error),
                    outputs=self._requested,
                    client_timeout=self.timeout_seconds,
                )
            except Exception as exc:  # the channel itself failed before sending
                finished(index, None, exc)
        done.wait()
        return self._checked(results, chunks)

    def _checked(
        self, results: list[Any | BaseException], chunks: Sequence[tuple[int, int]]
    ) -> list[Any | BaseException]:
        self.requests += len(chunks)
        self.rows += chunks[-1][1]
        for outcome in results:
            if isinstance(outcome, BaseException) and (
                _status(outcome) in TRANSIENT or not _status(outcome)
            ):
                gone = _status(outcome) == "NOT_FOUND" and _VERSION_NOT_FOUND.search(str(outcome))
                if self.version and gone:
                    raise VersionNotFound(f"Triton at {self.url}: {outcome}")
                raise DependencyError(f"Triton at {self.url}: {outcome}")
        return results

    def _one_by_one(
        self, rows: Sequence[Mapping[str, Any]], indices: Sequence[int]
    ) -> list[dict[str, Any] | Rejected]:
        """A refused request's events, each alone; all refused means the server is at fault."""
        answers: list[dict[str, Any] | Rejected] = []
        for index in indices:
            arrays = self._stack([rows[index]])
            assert arrays is not None
            (outcome,) = self._send(arrays, [(0, 1)])
            if isinstance(outcome, BaseException):
                answers.append(Rejected(f"Triton refused it: {outcome}"))
            else:
                answers.append(self._split(outcome, 1)[0])
        if answers and all(isinstance(a, Rejected) for a in answers) and len(answers) > 1:
            raise DependencyError(f"Triton at {self.url} refused every event of the batch")
        return answers

    def _split(self, result: Any, count: int) -> list[dict[str, Any] | Rejected]:
        """One KServe-shaped answer per row; ``tolist`` once per output, not per row."""
        per_output = []
        for name, datatype in self._outputs:
            array = result.as_numpy(name)
            if array is None:
                raise DependencyError(f"Triton at {self.url} gave no output {name!r}")
            if not self.batched:
                array = array.reshape((1, *array.shape))
            shape = [1, *array.shape[1:]]
            flat = array.reshape(array.shape[0], -1).tolist()
            if datatype == BYTES:  # bytes -> str, as the http step's JSON answer gives text
                flat = [self._text_row(name, row) for row in flat]
            per_output.append((name, datatype, shape, flat))
        model = self.model.name
        answers: list[dict[str, Any] | Rejected] = []
        for row in range(count):
            bad = [flat[row] for _, _, _, flat in per_output if isinstance(flat[row], Rejected)]
            if bad:
                answers.append(bad[0])
                continue
            answers.append(
                {
                    "model_name": model,
                    "outputs": [
                        {"name": name, "datatype": datatype, "shape": shape, "data": flat[row]}
                        for name, datatype, shape, flat in per_output
                    ],
                }
            )
        return answers

    def _text_row(self, name: str, row: list[Any]) -> list[Any] | Rejected:
        """One event's text output as str; an answer that is not UTF-8 text rejects that event
        (the model answers it again the same way: a retry cannot help)."""
        try:
            return decoded(row)
        except TextDecodeError as exc:
            return Rejected(f"Triton answered output {name!r} that is not text: {exc}")
