"""What a local Kafka broker needs before anything starts: java 17+, the broker jars, and
confluent-kafka, each found (or reported missing, with the way to provision it) without
starting a process. :mod:`rtflow.testing.kafka_broker` re-exports these names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ENV_LIB = "RTFLOW_KAFKA_LIB"
MIN_JAVA = 17

_PROVISION_HINT = f"run tools/kafka/provision.sh, or point {ENV_LIB} at a folder with the jars"


class KafkaUnavailable(RuntimeError):
    """A prerequisite (java 17+, the broker jars, confluent-kafka) is missing; nothing started.

    Kept apart from :class:`KafkaStartError` so a test can skip on this one (or, under CI, fail
    it as a provisioning gap) while a broker that started and then broke always fails.
    """


def default_lib_dir() -> Path:
    """Where the jars are looked for when no folder is given (env first, so CI can relocate)."""
    env = os.environ.get(ENV_LIB)
    if env:
        return Path(env)
    # The same folder in both install modes: next to an editable install's package, or in the
    # checkout the command runs from after `pip install .` (not site-packages/.tools).
    from rtflow.verify import tools_home

    return tools_home.find().path / "kafka" / "lib"


def find_jars(lib_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the jar folder, or raise :class:`KafkaUnavailable` saying how to provision it.

    Only the broker jar itself is looked for: a partly filled folder cannot happen with
    provision.sh (it moves a complete folder in), and a hand-made one fails loudly at start.
    """
    lib = Path(lib_dir) if lib_dir is not None else default_lib_dir()
    if not lib.is_dir():
        problem = f"{lib} does not exist"
    elif not any(lib.glob("kafka_2.13-*.jar")):
        problem = f"no kafka_2.13-*.jar in {lib}"
    else:
        return lib
    raise KafkaUnavailable(f"Kafka broker jars not found: {problem}; {_PROVISION_HINT}")


def find_java(java: str | os.PathLike[str] | None = None) -> Path:
    """Return a java 17+ executable, or raise :class:`KafkaUnavailable` saying what was found.

    The version is checked here because an older JVM would only fail inside the broker log with
    UnsupportedClassVersionError, which reads like a broken broker rather than a missing tool.
    """
    if java is not None:
        candidate: Path | None = Path(java)
    elif os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
    else:
        found = shutil.which("java")
        candidate = Path(found) if found else None
    if candidate is None:
        raise KafkaUnavailable(f"java not found: set JAVA_HOME or put java {MIN_JAVA}+ on PATH")
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        raise KafkaUnavailable(f"java not found: {candidate} is not an executable file")
    try:
        out = subprocess.run(
            [str(candidate), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaUnavailable(f"java at {candidate} does not run: {exc}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        raise KafkaUnavailable(f"cannot tell the version of {candidate}: {out.stderr.strip()!r}")
    # "1.8.0_392" is java 8; "17.0.15" and "25" are what they say.
    major = int(match[2] or 0) if match[1] == "1" else int(match[1])
    if major < MIN_JAVA:
        raise KafkaUnavailable(f"{candidate} is java {major}; Kafka 4 needs java {MIN_JAVA}+")
    return candidate


def require_client() -> None:
    """Fail before starting a JVM if the client that probes readiness cannot be imported.

    The import lives in functions, not at the top, so that importing this module (say, to
    catch its exceptions) never needs confluent-kafka.
    """
    try:
        import confluent_kafka  # noqa: F401
    except ImportError as exc:
        raise KafkaUnavailable(f"confluent-kafka is not installed: {exc}") from exc
