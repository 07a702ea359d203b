"""Errors a user sees.

A wrong pipeline definition must fail at compile time with one line that a person can act on
without reading a traceback: which pipeline, which stage, which field, and what to write instead.
"""

from __future__ import annotations


class RtflowError(Exception):
    """Base for every error rtflow raises on purpose; the CLI prints these as one line, exit 2."""


class DefinitionError(RtflowError):
    """A pipeline definition that cannot compile, located down to the field, with the fix."""

    def __init__(
        self,
        problem: str,
        *,
        fix: str,
        field: str | None = None,
        stage: str | None = None,
        pipeline: str | None = None,
    ) -> None:
        self.problem = problem
        self.fix = fix
        self.field = field
        self.stage = stage
        self.pipeline = pipeline
        super().__init__(self.line())

    def located(self, *, pipeline: str | None = None, stage: str | None = None) -> DefinitionError:
        """The same error with the context the raiser did not know filled in."""
        return DefinitionError(
            self.problem,
            fix=self.fix,
            field=self.field,
            stage=self.stage if self.stage is not None else stage,
            pipeline=self.pipeline if self.pipeline is not None else pipeline,
        )

    def line(self) -> str:
        where = []
        if self.pipeline is not None:
            where.append(f"pipeline {self.pipeline!r}")
        if self.stage is not None:
            where.append(f"stage {self.stage!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.problem}; {self.fix}" if prefix else f"{self.problem}; {self.fix}"

    def __str__(self) -> str:
        return self.line()


class LoadError(RtflowError):
    """The pipeline file or module could not be loaded, or holds no pipeline."""


class BundleError(RtflowError):
    """Generated objects that do not fit together (a cross-resource check failed)."""
