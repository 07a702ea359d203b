"""rtflow: write a real-time AI pipeline once in Python, compile it to what Argo CD syncs.

The public surface: ``stage``, ``container`` and ``pipeline`` declare; ``when``, ``for_each``,
``approval`` and ``on_exit`` shape the graph inside a pipeline function; ``Retry``,
``Backoff``, ``Secret``, ``Param`` and ``Output`` are option values.
"""

from rtflow.errors import DefinitionError, LoadError, RtflowError
from rtflow.options import Backoff, Output, Param, Retry, Secret
from rtflow.pipeline import Pipeline, pipeline
from rtflow.recording import approval, for_each, on_exit, when, workflow
from rtflow.stage import container, stage

__all__ = [
    "Backoff",
    "DefinitionError",
    "LoadError",
    "Output",
    "Param",
    "Pipeline",
    "Retry",
    "RtflowError",
    "Secret",
    "approval",
    "container",
    "for_each",
    "on_exit",
    "pipeline",
    "stage",
    "when",
    "workflow",
]
