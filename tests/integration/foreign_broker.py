"""A Mosquitto that someone else operates: its own CA, the dynamic-security plugin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from iotiam.broker.layout import BrokerConfig, BrokerFiles, mosquitto_binary
from iotiam.broker.process import ManagedMosquitto
from iotiam.broker.provision import admin_password, provision_broker
from iotiam.pki.authority import create_issuing_ca, create_root_ca
from iotiam.pki.crl import build_crl
from iotiam.pki.models import KeyAlgorithm
from iotiam.testing import free_ports, require


@contextmanager
def foreign_mosquitto(base: Path, **config: Any
                      ) -> Iterator[tuple[BrokerConfig, ManagedMosquitto, str]]:
    """Start one on free ports (``config`` overrides ``BrokerConfig`` fields); yields its
    config, its process and the dynsec admin password."""
    binary = mosquitto_binary()
    require(binary is not None, "the mosquitto binary is not installed")
    assert binary is not None
    now = datetime.now(UTC)
    root = create_root_ca(alg=KeyAlgorithm.EC_P256, common_name="Their Root",
                          organization="them", now=now, serial=1)
    issuing = create_issuing_ca(root=root, alg=KeyAlgorithm.EC_P256,
                                common_name="Their Issuing", organization="them", now=now,
                                serial=2)
    files = BrokerFiles(base / "theirs")
    mtls, psk, admin = free_ports(3)
    settings = BrokerConfig(mtls_port=mtls, psk_port=psk, admin_port=admin, **config)
    provision_broker(files, settings, issuing=issuing, root=root.certificate,
                     names=["127.0.0.1"], now=now, serial=3)
    files.crl.write_bytes(build_crl(
        signer=issuing.signer, issuer_cert=issuing.certificate, revocations=[], crl_number=1,
        this_update=now, next_update=now + timedelta(days=365)).public_bytes(
            serialization.Encoding.PEM))
    process = ManagedMosquitto(binary, settings, files)
    process.start()
    try:
        yield settings, process, admin_password(files)
    finally:
        process.stop()
