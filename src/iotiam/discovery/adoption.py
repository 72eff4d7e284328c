"""From the register to managed: a discovered asset becomes a registered device.

An admin picks assets (by id or by a filter), iotiam proposes a device for each (an id,
the site and the identifiers it was seen with), the admin confirms, and each becomes a
``pending`` device with a one-time claim token for its first enrollment, or waits for
its EST request in the approval queue. The new device carries the asset's MAC, host
name and address as attributes, so that the next sighting of it matches the device.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.discovery.models import ADOPTED_FROM, AssetStatus, DiscoveredAsset, IdentifierKind
from iotiam.discovery.ports import AdoptionTargets, ClaimIssuer, DeviceRegistration
from iotiam.errors import Conflict, IamError, InvalidInput
from iotiam.inventory.models import ImportRowResult
from iotiam.kernel import Principal, Role

#: at most this many assets per call (a filter selecting more is refused: narrow it)
MAX_ADOPT = 1000
_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Proposal:
    """What an asset would become: the device id, its site and the attributes it keeps."""

    asset_id: str
    device_id: str
    site: str | None
    attributes: dict[str, str]


@dataclass(frozen=True)
class Adopted:
    """What became of one asset: the device, its claim token (shown once), or why not."""

    asset_id: str
    device_id: str | None
    ok: bool
    error: str | None = None
    claim_token: str | None = None
    claim_expires_at: str | None = None


def device_id_for(asset: DiscoveredAsset) -> str:
    """A device id guessed from what the asset was seen with, most telling first."""
    for kind, value in asset.identifiers:
        if kind is IdentifierKind.CLIENT_ID:
            candidate = _ID_CHARS.sub("-", value).strip("-._")[:128]
            if candidate:
                return candidate
    if asset.hostname:
        candidate = _ID_CHARS.sub("-", asset.hostname.split(".", 1)[0]).strip("-._")
        if candidate:
            return candidate[:128]
    if asset.mac:
        return "dev-" + asset.mac.replace(":", "")
    # an asset known only by certificate, PSK identity or address: a stable short name
    return "dev-" + hashlib.sha256(asset.id.encode()).hexdigest()[:12]


def propose(asset: DiscoveredAsset, site: str | None = None,
            device_id: str | None = None) -> Proposal:
    """The device an asset would become (``site`` overrides the one it was seen at,
    ``device_id`` the id guessed from it)."""
    attributes = {name: value for name, value in
                  (("mac", asset.mac), ("hostname", asset.hostname), ("ip", asset.ip))
                  if value}
    attributes[ADOPTED_FROM] = asset.id
    return Proposal(asset.id, device_id or device_id_for(asset), site or asset.site,
                    attributes)


def unique_id(proposal: Proposal) -> str:
    """The guessed id made unique by the asset's own id: ``raspberrypi`` is a name many
    boxes carry, and ids are unique across the installation."""
    suffix = proposal.asset_id.rsplit("-", 1)[-1][:8]
    return f"{proposal.device_id[:128 - len(suffix) - 1]}-{suffix}"


class Adoption:
    """Bring discovered assets under management, one audited request at a time."""

    def __init__(self, targets: AdoptionTargets, registration: DeviceRegistration,
                 claims: ClaimIssuer, audit: Auditor) -> None:
        self._targets = targets
        self._registration = registration
        self._claims = claims
        self._audit = audit

    def proposals(self, actor: Principal, asset_ids: Sequence[str],
                  site: str | None = None, device_ids: Mapping[str, str] | None = None
                  ) -> list[Proposal]:
        """What each asset would become; nothing is stored. ``device_ids`` names the id
        an asset gets instead of the guessed one."""
        named = device_ids or {}
        unknown = set(named) - set(asset_ids)
        if unknown:
            raise InvalidInput(f"an id is named for asset {sorted(unknown)[0][:80]!r}, "
                               "which is not being adopted")
        return [propose(a, site, named.get(a.id)) for a in self._assets(actor, asset_ids)]

    def adopt(self, actor: Principal, asset_ids: Sequence[str], *, type_name: str,
              org_unit_id: str | None = None, site: str | None = None,
              claim_ttl: timedelta | None = None,
              device_ids: Mapping[str, str] | None = None) -> list[Adopted]:
        """Register each asset as a pending device (and mint its claim when ``claim_ttl``).

        Each asset lands whole or not at all; one that cannot (it was adopted meanwhile,
        its type is unknown) is reported and the others go on (G12). A guessed id that
        is taken is made unique with the asset's id; an id the admin named is not.
        """
        draft = AuditDraft(tag=AuditTag.ASSETS_ADOPTED, actor=actor.name,
                           org_path=actor.org_path, subject=f"assets:{len(asset_ids)}",
                           details={"assets": list(asset_ids)[:100]})
        with self._audit.refusals(draft):  # a refused adoption is recorded too
            actor.require(Role.OPERATOR, "bringing discovered assets under management")
            proposals = self.proposals(actor, asset_ids, site, device_ids)
        results = self._register(actor, proposals, type_name, org_unit_id)
        retry = [n for n, (p, r) in enumerate(zip(proposals, results, strict=True))
                 if not r.ok and r.id_taken and p.asset_id not in (device_ids or {})]
        if retry:
            again = [replace(proposals[n], device_id=unique_id(proposals[n])) for n in retry]
            done = self._register(actor, again, type_name, org_unit_id)
            for n, proposal, result in zip(retry, again, done, strict=True):
                proposals[n], results[n] = proposal, result
        outcome: dict[str, Adopted] = {}
        landed: dict[str, str] = {}
        for proposal, result in zip(proposals, results, strict=True):
            if result.ok and result.device_id:
                landed[proposal.asset_id] = result.device_id
                outcome[proposal.asset_id] = Adopted(proposal.asset_id, result.device_id, True)
            else:
                outcome[proposal.asset_id] = Adopted(proposal.asset_id, proposal.device_id,
                                                     False, result.error)
        if landed:
            self._targets.mark_adopted(actor, landed)
        if landed and claim_ttl is not None:
            self._claim(actor, landed, claim_ttl, outcome)
        return [outcome[p.asset_id] for p in proposals]

    def _register(self, actor: Principal, proposals: Sequence[Proposal], type_name: str,
                  org_unit_id: str | None) -> list[ImportRowResult]:
        rows: list[tuple[int, dict[str, Any]]] = [
            (n, {"id": p.device_id, "type": type_name, "org": org_unit_id, "site": p.site,
                 "attributes": p.attributes})
            for n, p in enumerate(proposals, start=1)]
        return self._registration.import_devices(actor, rows)

    def _claim(self, actor: Principal, landed: dict[str, str], ttl: timedelta,
               outcome: dict[str, Adopted]) -> None:
        asset_of = {device: asset for asset, device in landed.items()}
        try:
            claims = self._claims.create_claims(actor, list(landed.values()), ttl)
        except IamError as e:
            # the devices are registered (and audited); say why they have no claim yet
            for asset_id, device_id in landed.items():
                outcome[asset_id] = Adopted(asset_id, device_id, True,
                                            f"registered, but no claim token: {e.detail}")
            return
        for token, plaintext in claims:
            asset_id = asset_of[token.device_id]
            outcome[asset_id] = Adopted(asset_id, token.device_id, True, None, plaintext,
                                        token.expires_at.isoformat())

    def _assets(self, actor: Principal, asset_ids: Sequence[str]) -> list[DiscoveredAsset]:
        if not 1 <= len(asset_ids) <= MAX_ADOPT:
            raise InvalidInput(f"between 1 and {MAX_ADOPT} assets per request")
        if len(set(asset_ids)) != len(asset_ids):
            raise InvalidInput("an asset is named twice")
        assets = []
        for asset_id in asset_ids:
            asset = self._targets.asset(actor, asset_id)
            if asset.status is not AssetStatus.UNMANAGED:
                raise Conflict(f"asset {asset_id} is already {asset.status}"
                               + (f" as device {asset.device_id}" if asset.device_id else ""))
            assets.append(asset)
        return assets
