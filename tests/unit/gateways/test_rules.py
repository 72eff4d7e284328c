"""The gateway rules: who may be placed under whom, and when a gateway speaks for a child."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from iotiam.errors import Conflict, InvalidInput
from iotiam.gateways.models import GatewayLink
from iotiam.gateways.rules import check_via, is_gateway_type, may_speak_for
from iotiam.inventory.models import Criticality, Device, DeviceClass, DeviceState, DeviceType

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GATEWAY_TYPE = DeviceType("edge", DeviceClass.GATEWAY, Criticality.HIGH, "", "gateway", NOW)
SENSOR_TYPE = DeviceType("tag", DeviceClass.SENSOR, Criticality.LOW, "", "device", NOW)


def device(device_id: str, state: DeviceState = DeviceState.ACTIVE,
           type_name: str = "edge", org_path: str = "/root/acme/") -> Device:
    return Device(id=device_id, type_name=type_name, org_unit_id="acme", org_path=org_path,
                  state=state, site=None, location=None, attributes={}, created_at=NOW,
                  updated_at=NOW)


TAG = Device(id="tag-1", type_name="tag", org_unit_id="acme", org_path="/root/acme/",
             state=DeviceState.ACTIVE, site=None, location=None, attributes={},
             created_at=NOW, updated_at=NOW)


def no_gateway(_: str) -> str | None:
    return None


def test_gateway_type_ok() -> None:
    assert is_gateway_type(GATEWAY_TYPE)
    assert not is_gateway_type(SENSOR_TYPE)


def test_check_via_ok() -> None:
    gateway = device("gw-1")
    assert check_via(TAG, gateway, GATEWAY_TYPE, no_gateway, via="gw-1") is gateway


def test_check_via_ok_nested_gateways() -> None:
    chain = {"gw-2": "gw-1"}
    assert check_via(TAG, device("gw-2"), GATEWAY_TYPE, chain.get, via="gw-2").id == "gw-2"


@pytest.mark.parametrize(("gateway", "device_type", "chain", "error", "message"), [
    (None, None, {}, InvalidInput, "gateway 'gw-1' not found"),
    (device("gw-1", type_name="tag"), SENSOR_TYPE, {}, InvalidInput, "is not a gateway"),
    (device("gw-1", DeviceState.DECOMMISSIONED), GATEWAY_TYPE, {}, Conflict,
     "is decommissioned"),
    (device("gw-1"), GATEWAY_TYPE, {"gw-1": "tag-1"}, Conflict, "cycle"),
    (device("gw-1"), GATEWAY_TYPE, {"gw-1": "gw-0", "gw-0": "tag-1"}, Conflict, "cycle"),
], ids=["fail/unknown", "fail/not-a-gateway", "fail/decommissioned", "fail/cycle",
        "fail/cycle-two-deep"])
def test_check_via_fail(gateway: Device | None, device_type: DeviceType | None,
                        chain: dict[str, str], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        check_via(TAG, gateway, device_type, chain.get, via="gw-1")


@pytest.mark.parametrize("child_path", ["/root/", "/root/beta/"],
                         ids=["fail/above-gateway", "fail/other-tenant"])
def test_check_via_fail_outside_gateway_org(child_path: str) -> None:
    child = device("tag-1", type_name="tag", org_path=child_path)
    with pytest.raises(InvalidInput, match="outside gateway 'gw-1'"):
        check_via(child, device("gw-1"), GATEWAY_TYPE, no_gateway, via="gw-1")


def test_check_via_ok_below_gateway_org() -> None:
    child = device("tag-1", type_name="tag", org_path="/root/acme/plant1/")
    assert check_via(child, device("gw-1"), GATEWAY_TYPE, no_gateway, via="gw-1").id == "gw-1"


def test_check_via_fail_self() -> None:
    with pytest.raises(Conflict, match="cycle"):
        check_via(device("gw-1"), device("gw-1"), GATEWAY_TYPE, no_gateway, via="gw-1")


def test_check_via_fail_endless_chain() -> None:
    with pytest.raises(Conflict, match="gateways deep"):
        check_via(TAG, device("gw-0"), GATEWAY_TYPE, lambda d: d + "x", via="gw-0")


LINK = GatewayLink("tag-1", "gw-1", NOW)


def test_may_speak_for_ok() -> None:
    decision = may_speak_for(device("gw-1"), True, "tag-1", device("tag-1"), LINK)
    assert decision.allowed


@pytest.mark.parametrize(("gateway", "credentialed", "child", "link", "reason"), [
    (device("gw-1"), True, None, None, "'tag-1' is not a child of gateway 'gw-1'"),
    (device("gw-1"), True, device("tag-1"), None, "is not a child"),
    (device("gw-2"), True, device("tag-1"), LINK, "'tag-1' is not a child of gateway 'gw-2'"),
    (device("gw-1", DeviceState.SUSPENDED), True, device("tag-1"), LINK,
     "may not speak for anyone: it is suspended"),
    (device("gw-1", DeviceState.DECOMMISSIONED), True, device("tag-1"), LINK,
     "may not speak for anyone"),
    (device("gw-1"), False, device("tag-1"), LINK, "without a credential"),
    (device("gw-1"), True, device("tag-1", DeviceState.SUSPENDED), LINK,
     "'tag-1' is suspended"),
], ids=["fail/unknown-child", "fail/not-a-child", "fail/other-gateway",
        "fail/gateway-suspended", "fail/gateway-decommissioned", "fail/gateway-revoked",
        "fail/child-suspended"])
def test_may_speak_for_fail(gateway: Device, credentialed: bool, child: Device | None,
                            link: GatewayLink | None, reason: str) -> None:
    decision = may_speak_for(gateway, credentialed, "tag-1", child, link)
    assert not decision.allowed
    assert reason in decision.reason
