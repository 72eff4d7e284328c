"""What a device in each lifecycle state may do, on every way in: the one table.

Every enforcement point asks ``may(state, transport)`` (or ``refusal``) instead of
keeping its own set of states, so a state means the same thing on the broker, at the
decision point, at the token endpoint, at EST and at attestation. docs/lifecycle.md
explains each cell.

Holding a valid credential is a second, separate condition for the data plane and
decisions (G3): a device in a state that may connect but with no unrevoked, unexpired
certificate, no live PSK and no OAuth client key of its own is denied as well; the
decision subject carries that standing (``policy.models.Subject.credentialed``).
"""

from __future__ import annotations

import enum

from iotiam.inventory.models import DeviceState


class Transport(enum.StrEnum):
    """The ways a device (or a question about it) reaches iotiam."""

    #: MQTT over TLS with a client certificate (the identity listener)
    MQTT_MTLS = "mqtt-mtls"
    #: MQTT over TLS-PSK (the PSK listener; the PSK file the broker reads)
    MQTT_PSK = "mqtt-psk"
    #: a first credential: EST simpleenroll with a claim or IDevID, an operator issuing a
    #: certificate or a PSK, a claim token being created
    ENROLL = "enroll"
    #: EST simplereenroll: renewal authenticated by the current certificate
    REENROLL = "reenroll"
    #: an OAuth2 access token: issued, and still active at introspection
    OAUTH = "oauth"
    #: a permit from the decision point (POST /v1/decisions, the EMQX hook, broker ACLs,
    #: scopes of a token)
    DECISION = "decision"
    #: device evidence answered to a server nonce
    ATTESTATION = "attestation"


_EVERYTHING = frozenset(Transport)

#: the lifecycle matrix: what each state may do (anything not listed is refused)
ALLOWED: dict[DeviceState, frozenset[Transport]] = {
    # registered, not yet live: it may get its first credential and prove its firmware,
    # nothing on the data plane until it enrolls (which activates it) or an operator
    # activates it
    DeviceState.PENDING: frozenset({Transport.ENROLL, Transport.ATTESTATION}),
    DeviceState.ACTIVE: _EVERYTHING,
    # kept reachable so it can be examined and remediated: it connects with the
    # credentials it has and gets the quarantine policy's allows; no new credentials,
    # no tokens
    DeviceState.QUARANTINED: frozenset({Transport.MQTT_MTLS, Transport.MQTT_PSK,
                                        Transport.DECISION, Transport.ATTESTATION}),
    # taken out of service on purpose (may come back): nothing at all
    DeviceState.SUSPENDED: frozenset(),
    # retired for good (its credentials are revoked): nothing at all
    DeviceState.DECOMMISSIONED: frozenset(),
}


def may(state: DeviceState, transport: Transport) -> bool:
    """Whether a device in ``state`` may use ``transport``."""
    return transport in ALLOWED[state]


def allowed_states(transport: Transport) -> str:
    """The states that may use ``transport``, for messages ("pending or active")."""
    return " or ".join(s for s in DeviceState if transport in ALLOWED[s]) or "no"


def refusal(device_id: str, state: DeviceState, transport: Transport) -> str | None:
    """Why a device in ``state`` is refused ``transport`` ("device 'x' is suspended");
    None when it is allowed."""
    if transport in ALLOWED[state]:
        return None
    return f"device {device_id!r} is {state}"
