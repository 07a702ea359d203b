"""TLS material and SCRAM users for a Kafka broker that speaks SASL_SSL, as production does.

Production Kafka (the fraud example's cluster, say) is reached over SASL_SSL with SCRAM and a
private CA. Testing only against a PLAINTEXT broker would leave every one of those settings
unexercised until deployment, where a wrong property name or a CA the client cannot use shows
up as a stage that hangs. :class:`BrokerSecurity` gives
:class:`~rtflow.testing.kafka_broker.KafkaBroker` what it needs for a second, secure listener,
and gives clients the matching settings.

The certificates are made here, in memory, for the run, by trustme: a CA and a server
certificate it signed, valid for a few days, so nothing secret is checked in and nothing expires
in the repo. Needs ``trustme`` and ``cryptography`` (in the ``test`` extra); they are imported
when used, so importing this module to name its types costs nothing.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["BrokerSecurity", "Scram", "ScramMechanism", "TlsMaterial", "tls_material"]

ScramMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512"]

# kafka-storage's --add-scram value is `MECHANISM=[name=...,password=...]`, split on ',' and
# '=' and closed by ']'; a quote would be taken as a quoted value. Refusing these characters is
# simpler and clearer than escaping for a parser whose escaping rules are not documented.
_SCRAM_UNSAFE = re.compile(r'[,=\[\]"\s]')


@dataclass(frozen=True)
class TlsMaterial:
    """A private CA and one server certificate it signed, all PEM text.

    ``server_key_pem`` is an unencrypted PKCS#8 key ("BEGIN PRIVATE KEY"): the form Kafka's PEM
    key store reads without ``ssl.key.password``; it rejects the traditional SEC1/PKCS#1 forms.
    """

    ca_pem: str
    server_cert_pem: str
    server_key_pem: str = field(repr=False)

    @property
    def server_chain_pem(self) -> str:
        """The server certificate followed by the CA, as a TLS server presents its chain."""
        return self.server_cert_pem + self.ca_pem


def tls_material(
    hosts: Sequence[str], *, days: int = 7, organization: str = "rtflow tests"
) -> TlsMaterial:
    """Make a CA and a server certificate for ``hosts``, valid from an hour ago for ``days``.

    trustme makes them (a CA, and a leaf it signed for the hosts: a DNS name each, an IP address
    entry for an IP literal such as ``127.0.0.1``, which clients check the address they dialled
    against). The start is back-dated an hour so a clock a little behind does not see a future
    certificate. Keys are EC P-256: quick to make and accepted by Kafka and librdkafka alike;
    the server key is re-encoded as PKCS#8, the one form Kafka's PEM key store reads.
    """
    if not hosts:
        raise ValueError("tls_material needs at least one host name or address")
    import trustme
    from cryptography.hazmat.primitives import serialization

    now = datetime.datetime.now(datetime.UTC)
    ca = trustme.CA(organization_name=organization, key_type=trustme.KeyType.ECDSA)
    leaf = ca.issue_cert(
        *dict.fromkeys(hosts),  # keep order, drop repeats
        common_name=hosts[0],
        organization_name=organization,
        not_before=now - datetime.timedelta(hours=1),
        not_after=now + datetime.timedelta(days=days),
        key_type=trustme.KeyType.ECDSA,
    )
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    return TlsMaterial(
        ca_pem=ca.cert_pem.bytes().decode(),
        server_cert_pem=leaf.cert_chain_pems[0].bytes().decode(),
        server_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )


@dataclass(frozen=True)
class Scram:
    """One SCRAM user: what the broker stores at format time and what a client logs in with.

    Names and passwords with ``, = [ ] "`` or white space are refused here, where the mistake is
    made, rather than showing up as a format error (or a different user) in the broker log.
    """

    user: str
    password: str = field(repr=False)
    mechanism: ScramMechanism = "SCRAM-SHA-512"

    def __post_init__(self) -> None:
        for what, value in (("user", self.user), ("password", self.password)):
            if not value:
                raise ValueError(f"SCRAM {what} must not be empty")
            if _SCRAM_UNSAFE.search(value):
                raise ValueError(f'SCRAM {what} must not contain , = [ ] " or white space')
        if self.mechanism not in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise ValueError(f"unknown SCRAM mechanism {self.mechanism!r}")

    def storage_argument(self) -> str:
        """The value of ``kafka-storage format --add-scram`` that creates this user."""
        return f"{self.mechanism}=[name={self.user},password={self.password}]"


@dataclass(frozen=True)
class BrokerSecurity:
    """What a broker needs for a SASL_SSL listener: its TLS material and the SCRAM users.

    Users are written into the metadata log when the storage is formatted, so they exist from
    the broker's first start, before any client (or admin call) could create them.
    """

    tls: TlsMaterial
    users: tuple[Scram, ...]

    def __post_init__(self) -> None:
        if not self.users:
            raise ValueError("BrokerSecurity needs at least one SCRAM user")

    @classmethod
    def generate(
        cls,
        *users: Scram,
        hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    ) -> BrokerSecurity:
        """Fresh TLS material for ``hosts`` (the local broker's by default) and these users."""
        return cls(tls=tls_material(hosts), users=tuple(users))

    @property
    def mechanisms(self) -> list[str]:
        """The SCRAM mechanisms the listener must enable: those the users were created for."""
        return sorted({u.mechanism for u in self.users})

    def client_config(self, user: Scram | None = None) -> dict[str, str]:
        """librdkafka settings to reach the SASL_SSL listener as ``user`` (the first one).

        The same settings :func:`rtflow.stages.builtin.kafka_publish.security_from_env` builds
        from the ``KAFKA_*`` variables, so a client made from these and the stage agree.
        """
        who = user or self.users[0]
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": who.mechanism,
            "sasl.username": who.user,
            "sasl.password": who.password,
            "ssl.ca.pem": self.tls.ca_pem,
        }

    def client_env(self, user: Scram | None = None) -> dict[str, str]:
        """The ``KAFKA_*`` variables the built-in stages read, for ``user`` (the first one)."""
        who = user or self.users[0]
        return {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": who.mechanism,
            "KAFKA_SASL_USERNAME": who.user,
            "KAFKA_SASL_PASSWORD": who.password,
            "KAFKA_SSL_CA_PEM": self.tls.ca_pem,
        }


def sasl_ssl_listener_settings(
    security: BrokerSecurity, listener: str = "sasl_ssl"
) -> dict[str, str]:
    """Broker settings of a SASL_SSL listener (scoped to it, so other listeners are untouched):
    SCRAM over TLS with an inline PEM key store. The key is unencrypted PKCS#8, which the PEM
    key store reads without ``ssl.key.password``. Server-side SCRAM still needs a JAAS entry
    per mechanism, even an empty one: without it the broker refuses to start.

    The test broker (:class:`rtflow.testing.kafka_broker.KafkaBroker`) and the e2e cluster's
    broker are configured with these same settings, so what the integration tests prove is what
    the e2e cluster runs. Values are raw: escape them for a properties file
    (:func:`properties_text`)."""
    prefix = f"listener.name.{listener}."
    settings = {
        f"{prefix}sasl.enabled.mechanisms": ",".join(security.mechanisms),
        f"{prefix}ssl.keystore.type": "PEM",
        f"{prefix}ssl.keystore.certificate.chain": security.tls.server_chain_pem,
        f"{prefix}ssl.keystore.key": security.tls.server_key_pem,
    }
    for mechanism in security.mechanisms:
        settings[f"{prefix}{mechanism.lower()}.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        )
    return settings


def properties_text(settings: Mapping[str, str]) -> str:
    """``key=value`` lines as java.util.Properties reads them back: backslashes and line
    breaks escaped (inline PEM is many lines; unescaped, every line after the first would be
    read as a key of its own)."""
    escape = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r"})
    return "".join(f"{key}={value.translate(escape)}\n" for key, value in settings.items())
