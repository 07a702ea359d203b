"""``rtflow.http`` steps in a local run: the request Argo's agent would make, made here.

The template's body (its ``{{inputs.parameters.body}}`` tag replaced by the task's argument,
as the controller substitutes it), method, headers and ``timeoutSeconds`` are sent as compiled;
the answer succeeds when its status is in the step's ``success_status``, else when it is a 2xx
(the agent's default); the step's output is the body as text, as Argo's ``outputs.result``.
A header the cluster reads from a Secret is not resolved locally: it comes from
``--stage-env STAGE:HEADER=VALUE`` (``STAGE:HEADER`` alone: this process's variable of that
name), and a call without it fails saying so.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.parse
from collections.abc import Mapping

from rtflow import ir
from rtflow.stages.inference import substitute
from rtflow.stages.workers import Invocation

__all__ = ["HttpStep"]


class HttpStep:
    """One ``rtflow.http`` stage's call, as an executor invoker."""

    def __init__(self, stage: ir.Stage, secrets: Mapping[str, str | None]) -> None:
        assert stage.http is not None
        self.stage = stage.name
        self.call = stage.http
        parts = urllib.parse.urlsplit(self.call.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._secrets = dict(secrets)

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for header in self.call.headers:
            if header.secret is None:
                headers[header.name] = header.value or ""
                continue
            value = None
            if header.name in self._secrets:  # STAGE:HEADER=VALUE, or STAGE:HEADER: the variable
                given = self._secrets[header.name]
                value = given if given is not None else os.environ.get(header.name)
            if value is None:
                raise LookupError(
                    f"header {header.name!r} comes from Secret {header.secret.secret!r} (key "
                    f"{header.secret.key!r}) in the cluster; pass --stage-env "
                    f"{self.stage}:{header.name}=VALUE"
                )
            headers[header.name] = value
        return headers

    def __call__(
        self, raw: Mapping[str, str], timeout: float | None, context: Mapping[str, str]
    ) -> Invocation:
        started = time.perf_counter()
        limit = float(self.call.timeout_seconds)
        if timeout is not None:
            limit = min(limit, timeout)
        what = f"{self.call.method} {self.call.url}"

        def ms() -> float:
            return (time.perf_counter() - started) * 1000

        try:
            headers = self._headers()
            body = substitute(self.call.body, raw).encode() if self.call.body is not None else None
        except (KeyError, LookupError) as exc:
            return Invocation("failed", error=str(exc.args[0]), ms=ms())
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=max(limit, 0.001))
        try:
            conn.request(self.call.method, self._path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except TimeoutError:
            return Invocation("timeout", error=f"{what}: no answer within {limit:g} s", ms=ms())
        except (OSError, http.client.HTTPException) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Invocation("failed", error=f"{what}: {reason}", ms=ms())
        finally:
            conn.close()
        elapsed = ms()
        text = data.decode("utf-8", errors="replace")
        codes = self.call.success_status
        ok = response.status in codes if codes is not None else 200 <= response.status < 300
        if not ok:
            expected = "a 2xx" if codes is None else f"one of {list(codes)}"
            return Invocation(
                "failed",
                error=f"{what} answered {response.status} (not {expected}): {text[:300]}",
                ms=elapsed,
            )
        return Invocation("ok", {"body": text}, ms=elapsed, run_ms=elapsed)
