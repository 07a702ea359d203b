"""The IR of a pipeline's triggers, checked against the inputs they feed.

Every rule about a trigger lives here: legal Kafka topics and brokers, webhook ports, cron and
time zones, credentials only from Secrets, payload mappings onto real pipeline inputs of the right
type, filters on paths the payload has. Errors name the field as ``triggers.<name>.<field>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from rtflow import ir
from rtflow.cron import check_cron, check_timezone
from rtflow.errors import DefinitionError
from rtflow.names import (
    check_dns1123_label,
    check_dns1123_subdomain,
    check_secret_key,
    suggest_dns1123_label,
)
from rtflow.options import NO_DEFAULT
from rtflow.param_types import ParamType, encode, from_annotation
from rtflow.quantity import check_go_duration
from rtflow.trigger_filters import compile_filter
from rtflow.triggers import (
    DeadLetter,
    Delivery,
    Field,
    Sasl,
    SecretKey,
    Tls,
    Trigger,
    WebhookTls,
)

_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")
_BROKER = re.compile(r"^[A-Za-z0-9.-]+:([0-9]{1,5})$")
_PATH = re.compile(r"^[A-Za-z0-9_\-.#@*?|\\\[\]]+$")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
RATE_UNITS = ("Second", "Minute", "Hour")
# Fields Argo Events puts beside the body, per source kind.
META_ROOTS: dict[str, dict[str, ParamType | None]] = {
    "kafka": {
        "topic": ParamType("str"),
        "partition": ParamType("int"),
        "key": ParamType("str"),
        "timestamp": ParamType("str"),
        "headers": None,
    },
    "webhook": {"header": None},
    "calendar": {"eventTime": ParamType("str"), "metadata": None},
}


def build_triggers(
    triggers: Sequence[Trigger], pipeline: str, inputs: Sequence[ir.Param]
) -> tuple[ir.Trigger, ...]:
    built: list[ir.Trigger] = []
    for index, trigger in enumerate(triggers):
        if not isinstance(trigger, Trigger):
            raise DefinitionError(
                f"triggers[{index}] is a {type(trigger).__name__}",
                fix="use rtflow.kafka(...), rtflow.webhook(...) or rtflow.calendar(...)",
                field="triggers",
            )
        built.append(_TriggerBuilder(trigger, pipeline, inputs).build())
    names = [t.name for t in built]
    for name in names:
        if names.count(name) > 1:
            raise DefinitionError(
                f"two triggers are named {name!r}",
                fix="give each trigger its own name=",
                field=f"triggers.{name}",
            )
    return tuple(built)


class _TriggerBuilder:
    def __init__(self, trigger: Trigger, pipeline: str, inputs: Sequence[ir.Param]) -> None:
        self.trigger = trigger
        self.pipeline = pipeline
        self.inputs = {p.name: p for p in inputs}
        self.name = self._name()
        self.schema = trigger.payload_schema

    def field(self, name: str) -> str:
        return f"triggers.{self.name}.{name}"

    def _name(self) -> str:
        t = self.trigger
        if t.name is not None:
            name = check_dns1123_label(t.name, field="triggers.name", what="trigger name")
        elif t.kind == "kafka":
            name = suggest_dns1123_label(str(t.source["topic"])) or "kafka"
        else:
            name = t.kind
        full = f"{self.pipeline}-{name}"
        if len(full) > 63:
            raise DefinitionError(
                f"the event source name {full!r} is {len(full)} characters; Kubernetes allows 63",
                fix="give the trigger a shorter name=",
                field=f"triggers.{name}.name",
            )
        return name

    def build(self) -> ir.Trigger:
        t = self.trigger
        source: ir.Source
        if t.kind == "kafka":
            source = self._kafka(t.source)
        elif t.kind == "webhook":
            source = self._webhook(t.source)
        else:
            source = self._calendar(t.source)
        if t.filter is not None and t.kind == "calendar":
            raise DefinitionError(
                "a calendar trigger has no payload to filter",
                fix="drop filter=, or filter in the first stage",
                field=self.field("filter"),
            )
        data_filters, expr_filters = compile_filter(
            t.filter,
            field=self.field("filter"),
            path_type=lambda path: self._path_type(path, "filter"),
        )
        return ir.Trigger(
            name=self.name,
            source=source,
            inputs=self._mappings(t.inputs),
            data_filters=data_filters,
            expr_filters=expr_filters,
            delivery=self._delivery(t.delivery),
            payload_schema=tuple(_schema_fields(self.schema, "body")) if self.schema else (),
        )

    # Sources

    def _kafka(self, s: Mapping[str, Any]) -> ir.KafkaSource:
        topic = check_topic(s["topic"], field=self.field("topic"))
        group = s["consumer_group"] or f"rtflow-{self.pipeline}-{self.name}"
        if not isinstance(group, str) or not _TOPIC.match(group):
            raise DefinitionError(
                f"consumer group {group!r} has characters Kafka does not allow",
                fix="use letters, digits, '.', '_' and '-'",
                field=self.field("consumer_group"),
            )
        if s["start"] not in ("newest", "oldest"):
            raise DefinitionError(
                f"start={s['start']!r} is not newest or oldest",
                fix="use start='newest' (only new messages) or start='oldest' (the whole topic)",
                field=self.field("start"),
            )
        return ir.KafkaSource(
            brokers=self._brokers(s["brokers"], "brokers"),
            topic=topic,
            consumer_group=group,
            oldest=s["start"] == "oldest",
            json_body=bool(s["json_body"]),
            tls=self._tls(s["tls"], "tls"),
            sasl=self._sasl(s["sasl"], "sasl"),
            limit_events_per_second=_positive(
                s["limit_events_per_second"], self.field("limit_events_per_second")
            ),
            version=s["version"],
            read_committed=self._read_committed(s.get("read_committed", False)),
        )

    def _read_committed(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise DefinitionError(
                f"read_committed is {value!r}, not True or False",
                fix="say read_committed=True to skip records of aborted transactions",
                field=self.field("read_committed"),
            )
        return value

    def _brokers(self, brokers: Sequence[str], name: str) -> tuple[str, ...]:
        if not brokers:
            raise DefinitionError(
                "no Kafka brokers are given",
                fix="pass brokers=['kafka-0.kafka:9092', ...]",
                field=self.field(name),
            )
        for broker in brokers:
            match = _BROKER.match(broker) if isinstance(broker, str) else None
            if match is None or not 0 < int(match.group(1)) < 65536:
                raise DefinitionError(
                    f"broker {broker!r} is not host:port",
                    fix="write e.g. 'kafka-0.kafka.svc:9092'",
                    field=self.field(name),
                )
        return tuple(brokers)

    def _webhook(self, s: Mapping[str, Any]) -> ir.WebhookSource:
        endpoint = s["endpoint"]
        if not isinstance(endpoint, str) or not endpoint.startswith("/") or " " in endpoint:
            raise DefinitionError(
                f"endpoint {endpoint!r} is not a URL path",
                fix="start it with '/', e.g. '/transactions'",
                field=self.field("endpoint"),
            )
        port = s["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise DefinitionError(
                f"port {port!r} is out of range",
                fix="use a port from 1 to 65535, e.g. 12000",
                field=self.field("port"),
            )
        method = str(s["method"]).upper()
        if method not in HTTP_METHODS:
            raise DefinitionError(
                f"method {s['method']!r} is not an HTTP method a webhook takes",
                fix=f"use one of {', '.join(HTTP_METHODS)}",
                field=self.field("method"),
            )
        if s["auth_secret"] is NO_DEFAULT:
            raise DefinitionError(
                f"webhook {endpoint!r} has no auth_secret, so anyone who reaches it starts runs",
                fix="give auth_secret=rtflow.SecretKey('<secret>', '<key>') (a bearer token), or "
                "auth_secret=None to accept unauthenticated calls on purpose",
                field=self.field("auth_secret"),
            )
        tls = s.get("tls")
        if tls is not None and not isinstance(tls, WebhookTls):
            raise DefinitionError(
                f"tls {tls!r} is not a webhook TLS setting",
                fix="give tls=rtflow.WebhookTls(cert=rtflow.SecretKey(...), "
                "key=rtflow.SecretKey(...))",
                field=self.field("tls"),
            )
        return ir.WebhookSource(
            endpoint=endpoint,
            port=port,
            method=method,
            auth_secret=self._secret(s["auth_secret"], "auth_secret", optional=True),
            server_cert=self._secret(tls.cert, "tls.cert") if tls else None,
            server_key=self._secret(tls.key, "tls.key") if tls else None,
            max_payload_size=_positive(s["max_payload_size"], self.field("max_payload_size")),
        )

    def _calendar(self, s: Mapping[str, Any]) -> ir.CalendarSource:
        schedule, interval = s["schedule"], s["interval"]
        if (schedule is None) == (interval is None):
            raise DefinitionError(
                "a calendar trigger needs exactly one of schedule and interval",
                fix="pass a cron schedule ('0 * * * *') or interval='10m'",
                field=self.field("schedule"),
            )
        return ir.CalendarSource(
            schedule=check_cron(schedule, field=self.field("schedule")) if schedule else None,
            interval=check_go_duration(interval, field=self.field("interval"), positive=True)
            if interval
            else None,
            timezone=check_timezone(s["timezone"], field=self.field("timezone")),
        )

    # Credentials

    def _secret(self, value: object, name: str, *, optional: bool = False) -> ir.SecretKey | None:
        if value is None and optional:
            return None
        if isinstance(value, str):
            raise DefinitionError(
                f"{name} is a plaintext credential",
                fix=f"store it in a Secret and pass {name}=rtflow.SecretKey('<secret>', '<key>')",
                field=self.field(name),
            )
        if not isinstance(value, SecretKey):
            raise DefinitionError(
                f"{name} must be rtflow.SecretKey, got {type(value).__name__}",
                fix=f"pass {name}=rtflow.SecretKey('<secret>', '<key>')",
                field=self.field(name),
            )
        check_dns1123_subdomain(value.secret, field=self.field(name), what="secret name")
        check_secret_key(value.key, field=self.field(name))
        return ir.SecretKey(value.secret, value.key)

    def _tls(self, tls: Tls | None, name: str) -> ir.Tls | None:
        if tls is None:
            return None
        return ir.Tls(
            ca_cert=self._secret(tls.ca_cert, f"{name}.ca_cert", optional=True),
            client_cert=self._secret(tls.client_cert, f"{name}.client_cert", optional=True),
            client_key=self._secret(tls.client_key, f"{name}.client_key", optional=True),
            insecure_skip_verify=tls.insecure_skip_verify,
        )

    def _sasl(self, sasl: Sasl | None, name: str) -> ir.Sasl | None:
        if sasl is None:
            return None
        if sasl.mechanism not in SASL_MECHANISMS:
            raise DefinitionError(
                f"SASL mechanism {sasl.mechanism!r} is not supported",
                fix=f"use one of {', '.join(SASL_MECHANISMS)}",
                field=self.field(f"{name}.mechanism"),
            )
        user = self._secret(sasl.user, f"{name}.user")
        password = self._secret(sasl.password, f"{name}.password")
        assert user is not None and password is not None
        return ir.Sasl(mechanism=sasl.mechanism, user=user, password=password)

    # Payload

    def _path_type(self, path: str, name: str) -> ParamType | None:
        """The type at ``path`` when known; DefinitionError when the payload cannot have it."""
        if not isinstance(path, str) or not path or not _PATH.match(path):
            raise DefinitionError(
                f"{path!r} is not a payload path",
                fix="write a dotted path such as 'body.amount'",
                field=self.field(name),
            )
        root, _, rest = path.partition(".")
        kind = self.trigger.kind
        metas = META_ROOTS[kind]
        if root in metas:
            return metas[root] if not rest else None
        if root != "body" or kind == "calendar":
            roots = ", ".join(sorted(metas) + ([] if kind == "calendar" else ["body"]))
            raise DefinitionError(
                f"a {kind} event has no field {root!r}",
                fix=f"start the path with one of: {roots}",
                field=self.field(name),
            )
        if self.schema is None:
            return None
        node: Any = dict(self.schema)
        walked = "body"
        for key in rest.split(".") if rest else []:
            if not isinstance(node, Mapping) or key not in node:
                known = ", ".join(sorted(node)) if isinstance(node, Mapping) else "none"
                raise DefinitionError(
                    f"{path!r} is not in the declared payload schema ({walked} has: {known})",
                    fix="fix the path, or add the field to payload_schema",
                    field=self.field(name),
                )
            node = node[key]
            walked += f".{key}"
        if isinstance(node, Mapping):
            return ParamType("dict")
        return _schema_type(node, walked)

    def _mappings(self, mappings: Mapping[str, str | Field]) -> tuple[ir.InputMapping, ...]:
        result = []
        for input_name, spec in mappings.items():
            field_name = f"inputs.{input_name}"
            if input_name not in self.inputs:
                raise DefinitionError(
                    f"it maps to {input_name!r}, which is not an input of the pipeline",
                    fix=f"the pipeline's inputs are: {', '.join(self.inputs) or 'none'}",
                    field=self.field(field_name),
                )
            mapped = spec if isinstance(spec, Field) else Field(spec)
            param = self.inputs[input_name]
            if mapped.path is None and mapped.default is NO_DEFAULT:
                raise DefinitionError(
                    "a constant mapping needs a value",
                    fix="use rtflow.constant(value)",
                    field=self.field(field_name),
                )
            source_type = (
                self._path_type(mapped.path, field_name) if mapped.path is not None else None
            )
            if source_type is not None and not param.type.accepts(source_type):
                raise DefinitionError(
                    f"{mapped.path!r} is a {source_type} but input {input_name!r} is {param.type}",
                    fix="map a field of the input's type, or change the input's annotation",
                    field=self.field(field_name),
                )
            default: str | None = None
            if mapped.default is not NO_DEFAULT:
                if not param.type.accepts_value(mapped.default):
                    raise DefinitionError(
                        f"default {mapped.default!r} is not a {param.type}",
                        fix=f"give a {param.type} default",
                        field=self.field(field_name),
                    )
                default = encode(mapped.default)
            result.append(ir.InputMapping(input_name, mapped.path, default))
        mapped_names = {m.input for m in result}
        for param in self.inputs.values():
            if param.default is None and param.name not in mapped_names:
                raise DefinitionError(
                    f"pipeline input {param.name!r} has no default and the trigger does not "
                    "map it, so every run it starts would fail",
                    fix=f"add inputs={{{param.name!r}: 'body.<field>'}} to the trigger",
                    field=self.field("inputs"),
                )
        return tuple(sorted(result, key=lambda m: m.input))

    # Filters

    # Delivery

    def _delivery(self, delivery: Delivery) -> ir.Delivery:
        if not isinstance(delivery, Delivery):
            raise DefinitionError(
                f"delivery must be rtflow.Delivery, got {type(delivery).__name__}",
                fix="pass delivery=rtflow.Delivery(...)",
                field=self.field("delivery"),
            )
        if (
            isinstance(delivery.retries, bool)
            or not isinstance(delivery.retries, int)
            or delivery.retries < 0
        ):
            raise DefinitionError(
                f"retries={delivery.retries!r} is not a whole number >= 0",
                fix="use e.g. retries=3",
                field=self.field("delivery.retries"),
            )
        if delivery.rate_limit_unit not in RATE_UNITS:
            raise DefinitionError(
                f"rate_limit_unit={delivery.rate_limit_unit!r} is not a unit",
                fix=f"use one of {', '.join(RATE_UNITS)}",
                field=self.field("delivery.rate_limit_unit"),
            )
        for number, name in (
            (delivery.backoff_factor, "backoff_factor"),
            (delivery.backoff_jitter, "backoff_jitter"),
        ):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
                raise DefinitionError(
                    f"{name}={number!r} is not a number >= 0",
                    fix=f"use e.g. {name}=2",
                    field=self.field(f"delivery.{name}"),
                )
        return ir.Delivery(
            at_least_once=bool(delivery.at_least_once),
            retries=delivery.retries,
            backoff=check_go_duration(delivery.backoff, field=self.field("delivery.backoff")),
            backoff_factor=_number(delivery.backoff_factor),
            backoff_jitter=_number(delivery.backoff_jitter),
            rate_limit=_positive(delivery.rate_limit, self.field("delivery.rate_limit")),
            rate_limit_unit=delivery.rate_limit_unit,
            dead_letter=self._dead_letter(delivery.dead_letter),
        )

    def _dead_letter(self, dead_letter: DeadLetter | None) -> ir.DeadLetter | None:
        if dead_letter is None:
            return None
        source = self.trigger.source
        brokers = dead_letter.brokers or (source["brokers"] if self.trigger.kind == "kafka" else ())
        return ir.DeadLetter(
            topic=check_topic(dead_letter.topic, field=self.field("delivery.dead_letter.topic")),
            brokers=self._brokers(brokers, "delivery.dead_letter.brokers"),
            tls=self._tls(
                dead_letter.tls or (source["tls"] if self.trigger.kind == "kafka" else None),
                "delivery.dead_letter.tls",
            ),
            sasl=self._sasl(
                dead_letter.sasl or (source["sasl"] if self.trigger.kind == "kafka" else None),
                "delivery.dead_letter.sasl",
            ),
        )


def check_topic(topic: object, *, field: str) -> str:
    """A name Kafka accepts: [a-zA-Z0-9._-], at most 249 characters, not '.' or '..'."""
    if (
        isinstance(topic, str)
        and _TOPIC.match(topic)
        and len(topic) <= 249
        and topic not in (".", "..")
    ):
        return topic
    fixed = re.sub(r"[^a-zA-Z0-9._-]+", "-", str(topic)).strip("-")[:249] or "events"
    raise DefinitionError(
        f"{topic!r} is not a topic name Kafka accepts",
        fix=f"use letters, digits, '.', '_' and '-' (at most 249), e.g. {fixed!r}",
        field=field,
    )


def _positive(value: int | None, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DefinitionError(
            f"{value!r} is not a whole number >= 1", fix="use e.g. 100", field=field
        )
    return value


def _number(value: float) -> str:
    return json.dumps(value)


def _schema_fields(schema: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, ParamType]]:
    """The declared leaf fields of a payload schema as (dotted path, type), sorted by path."""
    for key in sorted(schema):
        node = schema[key]
        path = f"{prefix}.{key}"
        if isinstance(node, Mapping):
            yield from _schema_fields(node, path)
            continue
        yield path, _schema_type(node, path)


def _schema_type(node: object, path: str) -> ParamType:
    found = from_annotation(node)
    if found is None:
        raise DefinitionError(
            f"payload_schema gives {path} the type {node!r}",
            fix="use str, int, float, bool, dict, list[...] or a nested dict",
            field="payload_schema",
        )
    return found
