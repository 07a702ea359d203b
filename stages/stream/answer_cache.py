"""The stream plane's client-side answer cache: a repeated request answered without Triton.

A model declared ``triton_model(..., client_cache=N)`` gets, in every stream worker, an LRU of
at most ``N`` answers keyed by the exact bytes of the request's input tensors (each tensor's
name, datatype, shape and data, as the batcher would send them): the same features answer the
same scores without a round trip, a request slot, or a place in Triton's queue. Off by default
(``N == 0``), because it is only right for a model whose answer depends on its inputs alone
(no randomness, no state), which the declaration, not the runtime, knows.

Per worker process and per model, bounded by entries, not bytes (an answer's size is fixed by
the model's outputs); no expiry: a new model version is a new worker (a rollout restarts the
Deployment), so a cache never outlives the model that filled it. The batcher also sends one
request for identical rows of the same batch (counted as hits: they do not reach Triton).
Threads: :meth:`TritonBatcher.submit` calls from two threads, so every access holds a lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["AnswerCache", "copy_answer", "observe_caches"]


def copy_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """A fresh KServe-shaped answer (a stage may change the dict or lists it is given)."""
    return {
        "model_name": answer["model_name"],
        "outputs": [
            {**o, "shape": list(o["shape"]), "data": list(o["data"])} for o in answer["outputs"]
        ],
    }


class AnswerCache:
    """An LRU of KServe-shaped answers keyed by request bytes, with hit and miss counts."""

    def __init__(self, entries: int) -> None:
        if entries < 1:
            raise ValueError(f"a cache holds at least one entry, not {entries}")
        self.entries = entries
        self.hits = 0
        self.misses = 0
        self.observe: Callable[[int, int], None] | None = None
        """Called with (hits, misses) of each batch: the worker's counters."""
        self._answers: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: bytes) -> dict[str, Any] | None:
        with self._lock:
            answer = self._answers.get(key)
            if answer is not None:
                self._answers.move_to_end(key)
        return None if answer is None else copy_answer(answer)

    def put(self, key: bytes, answer: dict[str, Any]) -> None:
        kept = copy_answer(answer)
        with self._lock:
            self._answers[key] = kept
            self._answers.move_to_end(key)
            while len(self._answers) > self.entries:
                self._answers.popitem(last=False)

    def count(self, hits: int, misses: int) -> None:
        with self._lock:
            self.hits += hits
            self.misses += misses
        if self.observe is not None:
            self.observe(hits, misses)


def observe_caches(steps: Sequence[Any], counter: Any) -> None:
    """Count each cached inference step's hits and misses in ``counter`` (the worker's
    ``rtflow_stream_inference_cache``, labelled by stage and outcome), once per batch."""
    for step in steps:
        cache = getattr(getattr(step, "batcher", None), "cache", None)
        if isinstance(cache, AnswerCache):
            hit = counter.labels(stage=step.task.name, outcome="hit")
            miss = counter.labels(stage=step.task.name, outcome="miss")

            def observe(hits: int, misses: int, hit: Any = hit, miss: Any = miss) -> None:
                if hits:
                    hit.inc(hits)
                if misses:
                    miss.inc(misses)

            cache.observe = observe
