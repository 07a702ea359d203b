"""Approvals in a local run: who answers an ``rtflow.approval`` step (Argo's ``suspend``) when
there is no Argo UI: always approve, always reject, or ask on the terminal."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ApprovalRequest", "Approver", "auto_approve", "auto_reject", "terminal_approver"]


@dataclass(frozen=True)
class ApprovalRequest:
    pipeline: str
    task: str
    event: str
    workflow: str
    choices: tuple[str, ...]
    default: str
    approve: str
    description: str | None


Approver = Callable[[ApprovalRequest], str]


def auto_approve(request: ApprovalRequest) -> str:
    return request.approve


def auto_reject(request: ApprovalRequest) -> str:
    if request.default != request.approve:
        return request.default
    return next(c for c in request.choices if c != request.approve)


def terminal_approver(tty: str = "/dev/tty") -> Approver:
    """Ask on the terminal (not stdin, which may carry the events), one question at a time."""
    lock = threading.Lock()

    def ask(request: ApprovalRequest) -> str:
        with lock, open(tty, "r+", encoding="utf-8") as term:
            choices = "/".join(request.choices)
            while True:
                term.write(
                    f"\n[{request.workflow}] {request.task} for event {request.event}"
                    f"{': ' + request.description if request.description else ''}\n"
                    f"  choose {choices} [{request.default}]: "
                )
                term.flush()
                answer = term.readline().strip() or request.default
                if answer in request.choices:
                    return answer
                term.write(f"  {answer!r} is not one of {choices}\n")

    return ask
