"""A fleet with several tenants, for the isolation tests (G9)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet import add_device, add_org_unit, issue

from conftest import Installation


@dataclass
class Tenants:
    """root → acme (→ site acme-berlin), globex, acme2; a device and certificate in each.

    ``serials`` maps device id to the serial of its certificate, ``tokens`` maps
    ``(org, role)`` to a token scoped to that org unit.
    """

    installation: Installation
    serials: dict[str, str] = field(default_factory=dict)
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    def token(self, org: str, role: str) -> str:
        """A token of ``role`` scoped to ``org``, minted once."""
        if (org, role) not in self.tokens:
            self.tokens[(org, role)] = self.installation.token(role, org)
        return self.tokens[(org, role)]


#: device id → org unit it lives in
DEVICES = {
    "acme-d1": "acme",
    "acme-berlin-d1": "acme-berlin",
    "globex-d1": "globex",
    "acme2-d1": "acme2",
}
ACME_DEVICES = {"acme-d1", "acme-berlin-d1"}


def build_tenants(installation: Installation) -> Tenants:
    """The multi-tenant fleet, built by the root admin."""
    api = installation.api()
    for tenant in ("acme", "globex", "acme2"):
        add_org_unit(api, tenant, "tenant")
    add_org_unit(api, "acme-berlin", "site", parent="acme")
    world = Tenants(installation)
    for device_id, org in DEVICES.items():
        add_device(api, device_id, org=org)
        world.serials[device_id] = issue(api, device_id)["serial"]
    for group, org in (("acme-g", "acme"), ("globex-g", "globex")):
        assert api.post("/v1/groups", json={"id": group, "org": org}).status_code == 201
    assert api.post("/v1/groups/globex-g/members", json={"device": "globex-d1"}).status_code \
        == 204
    return world
