"""POST (or PUT, ...) a JSON payload to a URL: retries on 5xx and connection errors with
exponential backoff; a 4xx is a bad input (the same request would be refused again)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import rtflow
from rtflow.stages.builtin import image
from rtflow.stages.runtime import BadInput

METHODS = ("POST", "PUT", "PATCH", "DELETE", "GET")


@rtflow.stage(name="http-callback", image=image("http-callback"), timeout="5m")
def http_callback(
    url: str,
    payload: dict[str, Any],
    method: str = "POST",
    headers: dict[str, Any] = {},  # noqa: B006 - an Argo parameter default, never mutated
    retries: int = 3,
    backoff_seconds: float = 0.5,
    timeout_seconds: float = 10.0,
) -> int:
    """The response status; raises BadInput on 4xx, ConnectionError once retries run out."""
    if method.upper() not in METHODS:
        raise BadInput(f"method {method!r} is not one of {', '.join(METHODS)}")
    if not url.startswith(("http://", "https://")):
        raise BadInput(f"{url!r} is not an http(s) URL")
    body = json.dumps(payload, sort_keys=True).encode() if method.upper() != "GET" else None
    request_headers = {"Content-Type": "application/json", "User-Agent": "rtflow-http-callback"}
    request_headers.update({str(k): str(v) for k, v in headers.items()})
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_seconds * 2 ** (attempt - 1))
        request = urllib.request.Request(
            url, data=body, headers=request_headers, method=method.upper()
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500:
                raise BadInput(f"{method.upper()} {url} answered {exc.code} {exc.reason}") from None
            last = f"{exc.code} {exc.reason}"
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last = str(getattr(exc, "reason", exc))
    raise ConnectionError(f"{method.upper()} {url} failed after {retries + 1} attempts: {last}")
