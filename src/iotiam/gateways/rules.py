"""Who may be a gateway, who may be placed under one, and when a gateway may speak for
a child: pure rules over values, the same for registration, moves, the broker's ACLs
and relayed actions."""

from __future__ import annotations

from collections.abc import Callable

from iotiam.errors import Conflict, InvalidInput
from iotiam.gateways.models import GatewayLink
from iotiam.inventory.lifecycle import Transport, may
from iotiam.inventory.models import Device, DeviceState, DeviceType
from iotiam.kernel import within
from iotiam.pki.profiles import get_profile
from iotiam.policy.models import Decision, Deny, Permit

#: how many gateways deep a chain may be walked looking for a cycle
MAX_DEPTH = 16


def is_gateway_type(device_type: DeviceType) -> bool:
    """Whether devices of this type may have children: their certificate profile says so."""
    return get_profile(device_type.certificate_profile).acts_for_children


def check_via(child: Device, gateway: Device | None, gateway_type: DeviceType | None,
              gateway_of: Callable[[str], str | None], *, via: str) -> Device:
    """The gateway ``child`` may be placed under, or the reason it may not.

    ``gateway`` is the device named ``via`` as the caller sees it (None: unknown or
    another tenant's); ``gateway_of`` names a device's own gateway (for cycles). A child
    lives in its gateway's org unit or below it: a gateway receives its children's keys,
    so it never speaks for devices of another tenant or business unit (G9).
    """
    child_id = child.id
    if gateway is None or gateway_type is None:
        raise InvalidInput(f"gateway {via!r} not found")
    if not is_gateway_type(gateway_type):
        raise InvalidInput(f"device {via!r} is not a gateway (its type {gateway_type.name!r} "
                           f"has the {gateway_type.certificate_profile!r} certificate profile)")
    if gateway.state is DeviceState.DECOMMISSIONED:
        raise Conflict(f"gateway {via!r} is decommissioned")
    if not within(child.org_path, gateway.org_path):
        raise InvalidInput(f"device {child_id!r} ({child.org_path}) is outside gateway "
                           f"{via!r}'s org unit ({gateway.org_path})")
    current: str | None = gateway.id
    for _ in range(MAX_DEPTH):
        if current is None:
            return gateway
        if current == child_id:
            raise Conflict(f"placing {child_id!r} under {via!r} would make a cycle of "
                           "gateways")
        current = gateway_of(current)
    raise Conflict(f"gateway {via!r} is more than {MAX_DEPTH} gateways deep")


def may_speak_for(gateway: Device, gateway_credentialed: bool, child_id: str,
                  child: Device | None, link: GatewayLink | None) -> Decision:
    """Whether ``gateway`` may act for ``child`` now: the child is registered under it,
    and both may be on the data plane (a revoked gateway speaks for nobody)."""
    if child is None or link is None or link.gateway_id != gateway.id:
        return Deny(f"device {child_id!r} is not a child of gateway {gateway.id!r}")
    if not may(gateway.state, Transport.DECISION) or not gateway_credentialed:
        return Deny(f"gateway {gateway.id!r} may not speak for anyone: it is "
                    f"{gateway.state if gateway_credentialed else 'without a credential'}")
    if not may(child.state, Transport.DECISION):
        return Deny(f"device {child.id!r} is {child.state}")
    return Permit(())
