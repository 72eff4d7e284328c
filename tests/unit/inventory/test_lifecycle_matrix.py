"""The lifecycle matrix (docs/lifecycle.md): the table itself, and every enforcement point
answering exactly what the table says, for every state and transport."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from tokens.oauthkit import DeviceIdentity, OAuthKit

from conftest import Installation
from iotiam.errors import IamError
from iotiam.inventory.lifecycle import ALLOWED, Transport, may
from iotiam.inventory.models import DeviceState
from iotiam.kernel import SYSTEM
from iotiam.serving import broker_fleet
from iotiam.testing import make_csr

P, A, Q, S, D = (DeviceState.PENDING, DeviceState.ACTIVE, DeviceState.QUARANTINED,
                 DeviceState.SUSPENDED, DeviceState.DECOMMISSIONED)
#: the matrix as docs/lifecycle.md states it: transport -> the states allowed
DOCUMENTED = {
    Transport.MQTT_MTLS: {A, Q},
    Transport.MQTT_PSK: {A, Q},
    Transport.ENROLL: {P, A},
    Transport.REENROLL: {A},
    Transport.OAUTH: {A},
    Transport.DECISION: {A, Q},
    Transport.ATTESTATION: {P, A, Q},
}
CELLS = [(state, transport) for state in DeviceState for transport in Transport]


def _cell_id(cell: tuple[DeviceState, Transport]) -> str:
    state, transport = cell
    return f"{'ok' if may(state, transport) else 'fail'}/{state}-{transport}"


@pytest.mark.parametrize("cell", CELLS, ids=[_cell_id(c) for c in CELLS])
def test_table_matches_documented_matrix(cell: tuple[DeviceState, Transport]) -> None:
    state, transport = cell
    assert may(state, transport) is (state in DOCUMENTED[transport])


def test_table_covers_every_state() -> None:
    assert set(ALLOWED) == set(DeviceState)
    # what may connect to the broker may also be decided for (the broker's ACLs are
    # decisions): a state connecting with no rights would be a silent dead end
    for state, ways in ALLOWED.items():
        if Transport.MQTT_MTLS in ways or Transport.MQTT_PSK in ways:
            assert Transport.DECISION in ways, state


def _device_in(kit: OAuthKit, state: DeviceState) -> DeviceIdentity:
    """``m1`` with a live certificate, an OAuth client and a PSK, forced into ``state``
    (no lifecycle edge leads back to pending with a live certificate: the table must hold
    even so)."""
    identity = kit.device("m1")
    assert kit.api.post("/v1/devices/m1/psk", json={}).status_code == 201
    _force(kit, state)
    return identity


def _force(kit: OAuthKit, state: DeviceState) -> None:
    services = kit.inst.services
    with services.database() as uow:
        uow.devices.set_state("m1", state, services.clock.now())


def _allowed(kit: OAuthKit, identity: DeviceIdentity, transport: Transport) -> bool:
    """What the enforcement point of ``transport`` answers for ``m1`` now."""
    services = kit.inst.services
    if transport is Transport.DECISION:
        return services.inquiry.decide(SYSTEM, "m1", "mqtt:connect", "m1").allowed
    if transport is Transport.MQTT_MTLS:
        acl = broker_fleet(services).broker_acl("m1")
        return acl is not None and acl.can_connect
    if transport is Transport.MQTT_PSK:
        acl = broker_fleet(services).broker_acl("m1")
        in_file = any(line.startswith("m1:")
                      for line in services.psks.broker_psk_file().splitlines())
        return in_file and acl is not None and acl.can_connect
    if transport is Transport.ENROLL:
        return _succeeds(lambda: services.pki.issue_certificate(
            SYSTEM, device_id="m1", csr_data=make_csr("m1"))) and \
            _succeeds(lambda: services.enrollment.create_claim(SYSTEM, "m1"))
    if transport is Transport.REENROLL:
        csr = make_csr("m1", identity.key)
        der = _der_csr(csr)
        return _succeeds(lambda: services.enrollment.reenroll(identity.certificate, der, None))
    if transport is Transport.OAUTH:
        return kit.token(assertion=kit.assertion("m1", identity.key)).status_code == 200
    return _succeeds(lambda: services.attestation.challenge(identity.certificate))


def _der_csr(pem: bytes) -> bytes:
    from cryptography import x509

    return x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)


def _succeeds(call: object) -> bool:
    try:
        call()  # type: ignore[operator]
    except IamError:
        return False
    return True


@pytest.mark.parametrize("state", list(DeviceState))
def test_every_enforcement_point_follows_the_table(installation: Installation,
                                                   state: DeviceState) -> None:
    kit = OAuthKit(installation)
    identity = _device_in(kit, state)
    answers = {}
    for transport in Transport:
        _force(kit, state)  # an enrollment activates a pending device
        answers[transport] = _allowed(kit, identity, transport)
    assert answers == {transport: may(state, transport) for transport in Transport}
