"""iotiam's own traffic as a discovery source, with a real Mosquitto 2.0.

The managed broker's configuration (``provisioned_broker``), its log followed by the
real ``BrokerEventSource`` into the real ``EventIngest``, whose sightings go to a
recording ``SightingSink``. Clients that iotiam does not manage try to connect: a
certificate from a CA iotiam does not run, a PSK identity nobody registered, a
certificate of iotiam's CA whose name no device has, an unknown user on the password
listener. What Mosquitto logs of each is in docs/discovery-own-traffic.md.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from iotiam.broker.event_source import BrokerEventSource
from iotiam.detection.ingest import EventIngest
from iotiam.detection.models import Event, Finding
from iotiam.discovery.models import Sighting
from iotiam.pki.authority import CaMaterial
from iotiam.pki.csr import LeafIdentity
from iotiam.pki.keys import generate_private_key
from iotiam.pki.leaf_builder import LeafBuilder
from iotiam.pki.models import KeyAlgorithm
from iotiam.pki.profiles import DEVICE
from iotiam.testing import require_binary
from iotiam.testing.fakes.sightings import RecordingSightingSink

from .test_broker_dataplane import Provisioned, ca, provisioned_broker

pytestmark = pytest.mark.integration

PEM = serialization.Encoding.PEM


class QuietEngine:
    """No detector: what is under test is the road from the log to discovery."""

    def process(self, event: Event) -> list[Finding]:
        return []

    def false_positive(self, finding: Finding) -> None:
        """Nothing learned."""

    def snapshot(self) -> dict[str, Any]:
        return {}


class NoFindings:
    def report(self, findings: Sequence[Finding]) -> None:
        """Nothing raised."""


class NoDevices:
    """An inventory with no device in it."""

    def types_and_paths(self, device_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        return {}


@dataclass
class Watched:
    made: Provisioned
    sink: RecordingSightingSink
    work: Path

    def credentials(self, name: str, issuer: CaMaterial, serial: int) -> tuple[Path, Path]:
        """A device certificate for ``name`` signed by ``issuer``, and its key, as files."""
        key = generate_private_key(KeyAlgorithm.EC_P256)
        identity = LeafIdentity(subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                      name)]))
        cert = LeafBuilder(issuer.signer, issuer.certificate, None).issue(
            key.public_key(), identity, DEVICE, serial,
            self.made.fleet.now - timedelta(minutes=5))
        cert_path, key_path = self.work / f"{serial}.pem", self.work / f"{serial}.key"
        cert_path.write_bytes(cert.public_bytes(PEM))
        key_path.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path

    def publish(self, port: int, *options: str) -> int:
        """One ``mosquitto_pub`` to the broker; its exit code."""
        return subprocess.run(
            [require_binary("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port), *options,
             "-t", "probe", "-m", "x"], capture_output=True, timeout=15, check=False,
        ).returncode

    def sighted(self, count: int) -> list[Sighting]:
        assert self.sink.wait_for(lambda seen: len(seen) >= count), self.sink.sightings
        return self.sink.sightings


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Watched]:
    made = provisioned_broker(tmp_path)
    sink = RecordingSightingSink()
    ingest = EventIngest(QuietEngine(), NoFindings(), NoDevices(), sightings=sink)
    # as the runtime wires it: the log source delivers to the ingest, following the log
    # from before the broker starts
    source = BrokerEventSource(made.files.log, ingest.deliver, rotate=made.process.reload)
    source.start()
    made.process.start()
    try:
        yield Watched(made, sink, tmp_path)
    finally:
        made.sync.close()
        made.process.stop()
        source.stop()


def test_own_traffic_ok_unmanaged_clients_on_the_managed_broker(watched: Watched) -> None:
    config, files = watched.made.config, watched.made.files
    # one attempt at a time: the log names the source of a TLS failure only by the
    # accept line before it, which is unambiguous while one handshake is pending
    evil, _ = ca("Not Iotiam", watched.made.fleet.now)
    cert, key = watched.credentials("stranger-1", evil, 200)
    assert watched.publish(config.mtls_port, "--cafile", str(files.ca), "--cert", str(cert),
                           "--key", str(key), "-i", "cid-stranger") != 0
    unknown_ca = watched.sighted(1)[0]

    assert watched.publish(config.psk_port, "--psk-identity", "x", "--psk", "ab12",
                           "-i", "cid-psk") != 0
    unknown_psk = watched.sighted(2)[1]

    ghost_cert, ghost_key = watched.credentials("ghost-device", watched.made.fleet.issuing,
                                                300)
    assert watched.publish(config.mtls_port, "--cafile", str(files.ca), "--cert",
                           str(ghost_cert), "--key", str(ghost_key), "-i", "cid-ghost") == 0
    ghost = watched.sighted(3)[2]

    assert watched.publish(config.admin_port, "-u", "nobody", "-P", "guess",
                           "-i", "cid-admin") != 0
    refused_user = watched.sighted(4)[3]

    assert all((s.source, s.ip) == ("broker", "127.0.0.1")
               for s in (unknown_ca, unknown_psk, ghost, refused_user))
    # the log says neither the certificate nor its issuer: the TLS error and the listener
    assert unknown_ca.detail == (f"refused: tls: certificate verify failed "
                                 f"(port {config.mtls_port})")
    assert (unknown_ca.certificate, unknown_ca.client_id) == (None, None)
    # nor the PSK identity: an unknown one reads "no suitable signature algorithm" (the
    # PSK listener has no certificate to fall back on); the listener is named when the
    # handshake outlived the accept
    assert unknown_psk.detail in (
        f"refused: tls: no suitable signature algorithm (port {config.psk_port})",
        "refused: tls: no suitable signature algorithm")
    assert unknown_psk.psk_identity is None
    # a certificate of iotiam's CA whose name no device has connects (dynsec gives it no
    # rights): its client id and username (the certificate's CN) are logged
    assert (ghost.client_id, ghost.username) == ("cid-ghost", "ghost-device")
    assert ghost.detail == "connected with an identity the inventory does not know"
    # a refused CONNECT logs neither client id nor username
    assert refused_user.detail == f"refused: not_authorised (port {config.admin_port})"
    assert refused_user.client_id is None
    assert len(watched.sink.sightings) == 4
