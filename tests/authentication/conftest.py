from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from capture_server.authentication import DnsConfig

from .zoneserver import ZoneServer


@dataclass(frozen=True)
class RsaKey:
    private_pem: bytes
    public_b64: str

    @property
    def dns_record(self) -> str:
        return f"v=DKIM1; k=rsa; p={self.public_b64}"


def make_rsa_key() -> RsaKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return RsaKey(pem, base64.b64encode(der).decode("ascii"))


@pytest.fixture(scope="session")
def rsa_key() -> RsaKey:
    return make_rsa_key()


@pytest.fixture(scope="session")
def other_rsa_key() -> RsaKey:
    return make_rsa_key()


@pytest.fixture
def zone() -> Iterator[ZoneServer]:
    server = ZoneServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dns_config(zone: ZoneServer) -> DnsConfig:
    return DnsConfig(nameservers=("127.0.0.1",), port=zone.port, timeout=0.5)


@pytest.fixture
def keys(zone: ZoneServer, rsa_key: RsaKey, other_rsa_key: RsaKey) -> ZoneServer:
    """The zone with the signing keys of the DKIM and ARC streaming tests."""
    zone.txt("sel._domainkey.example.com", rsa_key.dns_record)
    zone.txt("sel._domainkey.other.test", other_rsa_key.dns_record)
    zone.txt("tls._domainkey.example.com", rsa_key.dns_record.replace("k=rsa;", "k=rsa; s=tlsrpt;"))
    return zone
