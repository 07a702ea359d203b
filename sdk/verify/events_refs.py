"""A Sensor's dependencies name EventSources and events that exist among the linted objects.

Each dependency's ``eventSourceName`` must name an EventSource in the Sensor's namespace (an
object without one is in the namespace it is applied to, so two such objects count as in the
same one), its ``eventName`` an event that EventSource defines (a key under one of its event
types: ``webhook: {orders: ...}`` defines ``orders``), and both must use the same EventBus.
A misspelt name is otherwise found only when no event ever arrives.

What lint cannot see is decided this way, by what the linted files say about the namespace:

* the linted objects include EventSources in the Sensor's namespace, but not the one named:
  a **finding**. Whoever lints a namespace's EventSources lints the set the Sensor can use, so
  the name is wrong or the file is missing; the message lists the names there and the closest;
* an EventSource of that name is linted, in another namespace: a **finding** (an overlay that
  moved one of them);
* the Sensor is rtflow's (labelled ``rtflow.dev/pipeline``): a **finding** too, since rtflow
  compiles a pipeline's Sensor and its EventSources together (a file was deleted or renamed);
* otherwise, no EventSource of that namespace is linted: a **warning**, not a finding.
  The EventSource may well be deployed from elsewhere (another repository); lint says the
  reference was not checked and how to check it (lint the Sensor with its EventSource's file).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from rtflow.generators.labels import PIPELINE
from rtflow.verify.report import Finding, Loaded

# EventSource spec keys that are settings, not event types holding events by name.
_NOT_EVENT_TYPES = frozenset({"template", "service", "eventBusName", "replicas"})


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = body.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _spec(body: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = body.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _is(item: Loaded, kind: str) -> bool:
    return item.body.get("kind") == kind and str(item.body.get("apiVersion", "")).startswith(
        "argoproj.io/"
    )


def defined_events(event_source: Mapping[str, Any]) -> list[str]:
    """The events an EventSource defines: the keys under each of its event types."""
    return sorted(
        str(event)
        for key, value in _spec(event_source).items()
        if key not in _NOT_EVENT_TYPES and isinstance(value, Mapping)
        for event in value
    )


def _closest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _some(names: Sequence[str], shown: int = 6) -> str:
    """A few names, and how many more: a namespace may hold thousands."""
    more = f", and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _namespace(name: str) -> str:
    return repr(name) if name else "none"


def _bus(spec: Mapping[str, Any]) -> str:
    return str(spec.get("eventBusName") or "default")


def check(items: Sequence[Loaded]) -> Iterator[tuple[bool, Finding]]:
    """(is a warning, the finding) for every dependency lint cannot confirm (see above)."""
    sources: dict[tuple[str, str], Loaded] = {}
    for item in items:
        name = _meta(item.body).get("name")
        if _is(item, "EventSource") and isinstance(name, str):
            sources[(str(_meta(item.body).get("namespace") or ""), name)] = item
    for sensor in items:
        if not _is(sensor, "Sensor"):
            continue
        namespace = str(_meta(sensor.body).get("namespace") or "")
        spec = _spec(sensor.body)
        dependencies = spec.get("dependencies")
        for index, dependency in enumerate(dependencies if isinstance(dependencies, list) else []):
            if not isinstance(dependency, Mapping):
                continue  # the schema check says what it should be
            where = f"spec.dependencies[{index}]"
            source_name = dependency.get("eventSourceName")
            if not isinstance(source_name, str):
                continue  # missing or not a string: the schema check reports it

            def finding(
                field: str, message: str, where: str = where, sensor: Loaded = sensor
            ) -> Finding:
                return Finding(
                    "cross-resource", str(sensor.path), sensor.label, f"{where}.{field}", message
                )

            source = sources.get((namespace, source_name))
            if source is None:
                # Said without the namespace itself: an overlay build moves every object to its
                # namespace and then says the same as the files as written (said once).
                here = sorted(n for ns, n in sources if ns == namespace)
                elsewhere = sorted(ns for ns, n in sources if n == source_name)
                labels = _meta(sensor.body).get("labels")
                pipeline = labels.get(PIPELINE) if isinstance(labels, Mapping) else None
                if elsewhere:  # an overlay that moved one of the two, say
                    message = (
                        f"EventSource {source_name!r} is in another namespace "
                        f"({', '.join(map(_namespace, elsewhere))}) than the Sensor "
                        f"({_namespace(namespace)}); a Sensor only hears EventSources of its own"
                    )
                    yield False, finding("eventSourceName", message)
                elif pipeline and not here:
                    message = (
                        f"EventSource {source_name!r} is not among the linted objects, and "
                        f"rtflow compiles it with the Sensor (pipeline {pipeline!r}): is its "
                        "file missing?"
                    )
                    yield False, finding("eventSourceName", message)
                elif here:
                    message = (
                        f"EventSource {source_name!r} is not among the linted EventSources of "
                        f"the Sensor's namespace ({_some(here)})"
                        f"{_closest(source_name, here)}"
                    )
                    yield False, finding("eventSourceName", message)
                else:
                    message = (
                        f"EventSource {source_name!r} not checked: none of the linted files "
                        "holds an EventSource in the Sensor's namespace; lint the Sensor "
                        "together with its EventSource's file to check the name and its events"
                    )
                    yield True, finding("eventSourceName", message)
                continue
            events = defined_events(source.body)
            event = dependency.get("eventName")
            if isinstance(event, str) and event not in events:
                message = (
                    f"EventSource {source_name!r} defines no event {event!r} "
                    f"(it defines {_some(events) or 'none'}){_closest(event, events)}"
                )
                yield False, finding("eventName", message)
            if _bus(_spec(source.body)) != _bus(spec):
                message = (
                    f"the Sensor uses EventBus {_bus(spec)!r}, but EventSource "
                    f"{source_name!r} publishes to {_bus(_spec(source.body))!r}"
                )
                yield False, finding("eventSourceName", message)
