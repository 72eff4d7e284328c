"""Presence checks: what is on the network that nobody manages, what was retired and is
still seen (zombie), and what is registered with a live credential but never seen
(dormant). Pure functions over values."""

from __future__ import annotations

from iotiam.discovery.models import DeviceSeen, DiscoveredAsset, IdentifierKind
from iotiam.inventory.models import Device, DeviceClass, DeviceState
from iotiam.risk.models import FactorHit, RiskFactor, RiskSettings, Severity, hit, when

#: industrial-control ports (IANA): Modbus/TCP 502, S7comm (ISO-TSAP) 102, EtherNet/IP
#: 44818, DNP3 20000, BACnet 47808, OPC UA 4840, IEC 60870-5-104 2404, PROFINET 34962-4
CONTROLLER_PORTS = frozenset({502, 102, 44818, 20000, 47808, 4840, 2404, 34962, 34963,
                              34964})
#: MQTT brokers and bridges (1883, 8883) on an asset mean it relays others' traffic
GATEWAY_PORTS = frozenset({1883, 8883})
#: RTSP 554 and ONVIF's usual 8554 say camera
CAMERA_PORTS = frozenset({554, 8554})

_CREDENTIALS = (IdentifierKind.CERTIFICATE, IdentifierKind.ISSUER_SERIAL,
                IdentifierKind.PSK_IDENTITY, IdentifierKind.CLIENT_ID)


def guess_class(asset: DiscoveredAsset) -> DeviceClass | None:
    """What an unmanaged asset probably is, from its open ports (None: no idea)."""
    ports = set(asset.open_ports)
    if ports & CONTROLLER_PORTS:
        return DeviceClass.CONTROLLER
    if ports & GATEWAY_PORTS:
        return DeviceClass.GATEWAY
    if ports & CAMERA_PORTS:
        return DeviceClass.CAMERA
    return None


def asset_checks(asset: DiscoveredAsset, registered_ids: frozenset[str]) -> list[FactorHit]:
    """An unmanaged asset, and a registered device's client id used by it."""
    if asset.status != "unmanaged":
        return []
    credentials = [(str(k), v) for k, v in asset.identifiers if k in _CREDENTIALS]
    guessed = guess_class(asset)
    severity = Severity.HIGH if credentials or guessed is DeviceClass.CONTROLLER \
        else Severity.MEDIUM
    found = [hit(RiskFactor.UNMANAGED,
                 "seen on the network, registered nowhere" + (
                     f"; presents {len(credentials)} credential(s) nobody manages"
                     if credentials else ""), {
                     "sources": list(asset.sources), "first_seen": when(asset.first_seen),
                     "last_seen": when(asset.last_seen), "ip": asset.ip, "mac": asset.mac,
                     "hostname": asset.hostname, "open_ports": list(asset.open_ports),
                     "credentials": [{"kind": k, "value": v} for k, v in credentials[:20]],
                     "guessed_class": str(guessed) if guessed else None},
                 severity=severity, since=asset.first_seen)]
    clashes = sorted(v for k, v in asset.identifiers
                     if k is IdentifierKind.CLIENT_ID and v in registered_ids)
    if clashes:
        found.append(hit(RiskFactor.CONFLICTING_CLIENT_ID,
                         "uses the MQTT client id of a registered device",
                         {"client_ids": clashes[:20], "asset": asset.id,
                          "last_seen": when(asset.last_seen)}))
    return found


def device_presence_checks(device: Device, seen: DeviceSeen | None, *, now: float,
                           live_credentials: int, settings: RiskSettings) -> list[FactorHit]:
    """Zombie (decommissioned, still seen) and dormant with a live credential.

    A device's last activity is the later of its last sighting and its ``updated_at``
    (a renewal or an enrollment touches it): a device that renews is not dormant even
    when no scan lists it.
    """
    last_seen = seen.last_seen if seen else None
    if device.state is DeviceState.DECOMMISSIONED:
        retired = device.updated_at.timestamp()
        if last_seen is not None and last_seen > retired:
            return [hit(RiskFactor.ZOMBIE, "decommissioned and still seen on the network", {
                "decommissioned_at": when(retired), "last_seen": when(last_seen),
                "sources": list(seen.sources) if seen else []}, since=retired)]
        return []
    activity = max(last_seen or 0.0, device.updated_at.timestamp())
    idle = now - activity
    if live_credentials and idle > settings.dormancy_seconds:
        return [hit(RiskFactor.DORMANT_VALID_CREDENTIALS,
                    f"not seen for {idle / 86400.0:.0f} days and holds "
                    f"{live_credentials} live credential(s)", {
                        "last_seen": when(last_seen), "last_activity": when(activity),
                        "dormancy_days": round(settings.dormancy_seconds / 86400.0, 1),
                        "live_credentials": live_credentials},
                    since=activity + settings.dormancy_seconds)]
    return []


def shared_device_places(seen: DeviceSeen | None) -> FactorHit | None:
    """One device identity seen from two places at once: cloned or shared."""
    if seen is None or len(seen.places) < 2:
        return None
    return hit(RiskFactor.SHARED_CREDENTIAL, f"seen from {len(seen.places)} places at once",
               {"places": [{"site": s, "ip": ip} for s, ip in seen.places[:50]],
                "last_seen": when(seen.last_seen)})
