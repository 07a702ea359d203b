"""Approvals in a local run: who answers an ``rtflow.approval`` step (Argo's ``suspend``) when
there is no Argo UI: always approve, always reject, or ask on the terminal.

An approval with a ``timeout`` waits for its approver at most that long (:func:`ask_within`);
unanswered by then, its decision is ``on_timeout``, as Argo's controller decides when the
suspend's ``duration`` passes (it fills the decision from the output's ``valueFrom.default``).
The terminal approver stops asking at the timeout itself."""

from __future__ import annotations

import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Answer",
    "ApprovalRequest",
    "Approver",
    "ask_within",
    "auto_approve",
    "auto_reject",
    "terminal_approver",
]


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
    timeout_seconds: int | None = None
    on_timeout: str | None = None  # the decision when the timeout passes unanswered


Approver = Callable[[ApprovalRequest], str]


@dataclass(frozen=True)
class Answer:
    decision: str
    timed_out: bool = False  # the approval's timeout passed: the decision is on_timeout
    deadline_passed: bool = False  # the workflow's deadline passed first: no decision


def ask_within(approver: Approver, request: ApprovalRequest, remaining: float) -> Answer:
    """The approver's answer; with a timeout, at most that long (then ``on_timeout``), and not
    past the workflow's deadline (``remaining`` seconds from now)."""
    if request.timeout_seconds is None:
        return Answer(approver(request))
    answers: queue.Queue[tuple[str | None, BaseException | None]] = queue.Queue(maxsize=1)

    def ask() -> None:
        try:
            answers.put((approver(request), None))
        except BaseException as exc:  # handed to the caller
            answers.put((None, exc))

    # A daemon: an approver that never returns does not hold the run (the terminal one
    # returns at the timeout by itself).
    threading.Thread(target=ask, name=f"rtflow-approval-{request.task}", daemon=True).start()
    wait = min(float(request.timeout_seconds), max(remaining, 0.0))
    try:
        decision, error = answers.get(timeout=wait)
    except queue.Empty:
        if remaining < request.timeout_seconds:
            return Answer("", deadline_passed=True)
        assert request.on_timeout is not None
        return Answer(request.on_timeout, timed_out=True)
    if error is not None:
        raise error
    assert decision is not None
    return Answer(decision)


def auto_approve(request: ApprovalRequest) -> str:
    return request.approve


def auto_reject(request: ApprovalRequest) -> str:
    if request.default != request.approve:
        return request.default
    return next(c for c in request.choices if c != request.approve)


def terminal_approver(tty: str = "/dev/tty") -> Approver:
    """Ask on the terminal (not stdin, which may carry the events), one question at a time.

    The terminal is opened twice, to read and to write: a terminal cannot seek, which Python's
    read-write text files need (one ``"r+"`` file failed on every real terminal)."""
    lock = threading.Lock()

    def ask(request: ApprovalRequest) -> str:
        ends = None
        if request.timeout_seconds is not None:
            ends = time.monotonic() + request.timeout_seconds
        with (
            lock,
            open(tty, "w", encoding="utf-8") as out,
            open(tty, encoding="utf-8") as term,
        ):
            choices = "/".join(request.choices)
            while True:
                out.write(
                    f"\n[{request.workflow}] {request.task} for event {request.event}"
                    f"{': ' + request.description if request.description else ''}\n"
                    f"  choose {choices} [{request.default}]: "
                )
                out.flush()
                if ends is not None:
                    left = ends - time.monotonic()
                    ready, _, _ = select.select([term], [], [], max(left, 0.0))
                    if not ready:
                        out.write(f"\n  no answer within {request.timeout_seconds} s: "
                                  f"{request.on_timeout}\n")  # fmt: skip
                        return request.on_timeout or request.default
                answer = term.readline().strip() or request.default
                if answer in request.choices:
                    return answer
                out.write(f"  {answer!r} is not one of {choices}\n")

    return ask
