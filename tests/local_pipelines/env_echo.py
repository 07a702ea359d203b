"""A stage that reports its environment: a stage's own env= (and one given by rtflow.configure)
must reach it in a local run as it reaches its container."""

from __future__ import annotations

import os

import rtflow


@rtflow.stage(image="ghcr.io/acme/echo:1.0", env={"GREETING": "hello", "TARGET": "cluster"})
def greet(name: str) -> str:
    seen = [os.environ.get(v, "-") for v in ("GREETING", "TARGET", "FROM_SHELL")]
    return " ".join([name, *seen])


greet_configured = rtflow.configure(greet, name="greet-configured", env={"GREETING": "hi"})


@rtflow.pipeline(name="env-echo", namespace="env-echo")
def env_echo(name: str) -> None:
    greet(name)
    greet_configured(name)
