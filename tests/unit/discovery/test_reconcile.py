"""Reconciliation rules (``discovery/reconcile.py``), on hand-made lookups."""

from __future__ import annotations

import itertools

import pytest

from iotiam.discovery.models import (
    CONFIDENCE,
    IP_BINDING_SECONDS,
    AssetStatus,
    Binding,
    DiscoveredAsset,
    IdentifierKind,
    RegisteredDevice,
    Sighting,
    ip_key,
)
from iotiam.discovery.reconcile import Lookups, Reconciler, ip_slot

K = IdentifierKind
ACME = "/root/acme/"
T = 1_700_000_000.0
FP = "ab" * 32
DEV = RegisteredDevice("dev-1", ACME)
OTHER = RegisteredDevice("dev-2", ACME)


def reconciler(lookups: Lookups | None = None, path: str = ACME) -> Reconciler:
    ids = (f"as-{n}" for n in itertools.count(1))
    return Reconciler(path, lookups or Lookups(), lambda: next(ids))


def seen(at: float = T, **fields: object) -> Sighting:
    return Sighting(source=str(fields.pop("source", "nmap")), seen_at=at, **fields)  # type: ignore[arg-type]


def asset(asset_id: str, path: str = ACME, device_id: str | None = None) -> DiscoveredAsset:
    return DiscoveredAsset(id=asset_id, org_path=path,
                           status=AssetStatus.MATCHED if device_id else AssetStatus.UNMANAGED,
                           first_seen=T - 100, last_seen=T - 100, sources=("arp",),
                           identifiers=(), sightings=3, device_id=device_id)


@pytest.mark.parametrize(("kind", "fields", "value"), [
    (K.CERTIFICATE, {"certificate": FP}, FP),
    (K.ISSUER_SERIAL, {"issuer": "CN=ca", "serial": "1f"}, "CN=ca|1f"),
    (K.PSK_IDENTITY, {"psk_identity": "psk-1"}, "psk-1"),
    (K.CLIENT_ID, {"client_id": "dev-1"}, "dev-1"),
    (K.MAC, {"mac": "aa:bb:cc:dd:ee:ff"}, "aa:bb:cc:dd:ee:ff"),
    (K.HOSTNAME, {"hostname": "cam-1"}, "cam-1"),
    (K.IP, {"ip": "10.0.0.5", "site": "hq"}, ip_key("hq", "10.0.0.5")),
], ids=lambda v: f"ok/{v}" if isinstance(v, K) else "")
def test_match_ok_each_identifier_kind(kind: K, fields: dict[str, str], value: str) -> None:
    rec = reconciler(Lookups(registered={(kind, value): DEV}))
    match = rec.place(seen(**fields))
    assert (match.device_id, match.basis, match.confidence) == ("dev-1", kind, CONFIDENCE[kind])
    assert rec.outcome().matched == 1
    presence = rec.outcome().presence
    # the address an admin wrote down carries no time: it does not prove the device alive
    assert [p.device_id for p in presence] == ([] if kind is K.IP else ["dev-1"])


def test_match_ok_strongest_identifier_wins() -> None:
    rec = reconciler(Lookups(registered={(K.CERTIFICATE, FP): DEV, (K.MAC, "aa:bb:cc:dd:ee:ff"):
                                         DEV}))
    match = rec.place(seen(certificate=FP, mac="aa:bb:cc:dd:ee:ff"))
    assert (match.basis, match.confidence) == (K.CERTIFICATE, 1.0)


def test_match_fail_contradiction_lowers_confidence() -> None:
    rec = reconciler(Lookups(registered={(K.CERTIFICATE, FP): DEV,
                                         (K.MAC, "aa:bb:cc:dd:ee:ff"): OTHER}))
    match = rec.place(seen(certificate=FP, mac="aa:bb:cc:dd:ee:ff"))
    assert match.device_id == "dev-1" and match.basis is K.CERTIFICATE
    assert match.confidence < CONFIDENCE[K.CERTIFICATE]
    # the MAC stays the other device's: nothing learnt from a contradicted value
    assert all(b.kind is not K.MAC for b in rec.outcome().bindings)


def test_ip_fail_outside_time_bound() -> None:
    key = ip_slot(ip_key("hq", "10.0.0.5"), T - 10)
    binding = Binding(K.IP, key, ACME, T - 10, T - 10, device_id="dev-1")
    late = reconciler(Lookups(bindings={(K.IP, key): binding}))
    match = late.place(seen(T + IP_BINDING_SECONDS + 60, ip="10.0.0.5", site="hq"))
    assert match.device_id is None and match.asset_id == "as-1"
    soon = reconciler(Lookups(bindings={(K.IP, key): binding}))
    assert soon.place(seen(T + 60, ip="10.0.0.5", site="hq")).device_id == "dev-1"


def test_ip_fail_other_site() -> None:
    binding = Binding(K.IP, ip_slot(ip_key("hq", "10.0.0.5"), T), ACME, T, T,
                      device_id="dev-1")
    rec = reconciler(Lookups(bindings={(K.IP, binding.value): binding}))
    match = rec.place(seen(ip="10.0.0.5", site="plant"))
    assert match.device_id is None


def test_ip_ok_learnt_from_a_strong_match() -> None:
    rec = reconciler(Lookups(registered={(K.CERTIFICATE, FP): DEV}))
    rec.place(seen(certificate=FP, ip="10.0.0.5", site="hq", source="broker"))
    match = rec.place(seen(T + 30, ip="10.0.0.5", site="hq", source="zeek"))
    assert (match.device_id, match.basis, match.confidence) == ("dev-1", K.IP, 0.5)
    assert rec.outcome().presence[0].sources == {"broker", "zeek"}


def test_ip_ok_does_not_tie_a_stronger_asset_to_a_device() -> None:
    key = ip_slot(ip_key("hq", "10.0.0.5"), T)
    lookups = Lookups(
        bindings={(K.IP, key): Binding(K.IP, key, ACME, T, T, device_id="dev-1"),
                  (K.MAC, "aa:bb:cc:dd:ee:ff"): Binding(K.MAC, "aa:bb:cc:dd:ee:ff", ACME,
                                                        T, T, asset_id="as-9")},
        assets={"as-9": asset("as-9")})
    rec = reconciler(lookups)
    match = rec.place(seen(T + 5, mac="aa:bb:cc:dd:ee:ff", ip="10.0.0.5", site="hq"))
    assert match.asset_id == "as-9" and match.device_id is None
    out = rec.outcome()
    assert out.assets[0].status is AssetStatus.UNMANAGED
    # the address was handed on: it is the asset's now
    assert {b.kind: b.asset_id for b in out.bindings}[K.IP] == "as-9"


@pytest.mark.parametrize("in_time_order", [True, False],
                         ids=["ok/leases-in-time-order", "ok/later-lease-first"])
def test_ip_ok_handed_on_within_a_day_is_its_later_holders(in_time_order: bool) -> None:
    """Box 1 leases the address at midnight and box 2 three hours later: whatever the
    order of the imports, the day's slot is box 2's and a flow a minute after its lease
    joins box 2 (docs/discovery.md: the holder seen nearest in time)."""
    day = T - T % 86400
    box1 = seen(day, mac="02:00:00:0e:00:01", ip="10.14.0.1", site="hq", source="dhcpd")
    box2 = seen(day + 3 * 3600, mac="02:00:00:0e:00:02", ip="10.14.0.1", site="hq",
                source="dhcpd")
    rec = reconciler()
    placed = {s.mac: rec.place(s).asset_id for s in
              ([box1, box2] if in_time_order else [box2, box1])}
    assert len(set(placed.values())) == 2
    flow = rec.place(seen(day + 3 * 3600 + 60, ip="10.14.0.1", site="hq", source="zeek"))
    assert flow.asset_id == placed[box2.mac]
    (ip,) = [b for b in rec.outcome().bindings if b.kind is K.IP]
    assert (ip.asset_id, ip.first_seen) == (placed[box2.mac], day + 3 * 3600)


def test_asset_ok_new_then_joined_by_weaker_identifier() -> None:
    rec = reconciler()
    first = rec.place(seen(mac="aa:bb:cc:dd:ee:ff", ip="10.0.0.5", hostname="cam-1"))
    second = rec.place(seen(T + 60, hostname="cam-1", source="dhcpd"))
    assert first.asset_id == second.asset_id == "as-1"
    out = rec.outcome()
    assert out.new_assets == 1 and out.matched == 0
    (only,) = out.assets
    assert (only.sightings, only.sources, only.last_seen) == (2, ("dhcpd", "nmap"), T + 60)


def test_asset_ok_two_assets_merged_by_one_sighting() -> None:
    rec = reconciler()
    a = rec.place(seen(mac="aa:bb:cc:dd:ee:ff"))
    b = rec.place(seen(hostname="cam-1", source="dns"))
    assert a.asset_id != b.asset_id
    joined = rec.place(seen(T + 1, mac="aa:bb:cc:dd:ee:ff", hostname="cam-1", source="dhcpd"))
    out = rec.outcome()
    assert joined.asset_id == "as-1"
    assert out.merged == {"as-2": "as-1"}
    (kept,) = out.assets
    assert (kept.id, kept.sightings, kept.sources) == ("as-1", 3, ("dhcpd", "dns", "nmap"))
    assert {b.asset_id for b in out.bindings} == {"as-1"}


def test_asset_fail_no_merge_across_org_units() -> None:
    lookups = Lookups(
        bindings={(K.MAC, "aa:bb:cc:dd:ee:ff"): Binding(K.MAC, "aa:bb:cc:dd:ee:ff", ACME, T, T,
                                                        asset_id="as-a"),
                  (K.HOSTNAME, "|cam-1"): Binding(K.HOSTNAME, "|cam-1", "/root/beta/", T, T,
                                                 asset_id="as-b")},
        assets={"as-a": asset("as-a"), "as-b": asset("as-b", "/root/beta/")})
    rec = reconciler(lookups, path="/root/")
    rec.place(seen(mac="aa:bb:cc:dd:ee:ff", hostname="cam-1"))
    assert rec.outcome().merged == {}


def test_asset_ok_later_matched_when_the_device_enrolls() -> None:
    lookups = Lookups(
        registered={(K.CLIENT_ID, "dev-1"): DEV},
        bindings={(K.MAC, "aa:bb:cc:dd:ee:ff"): Binding(K.MAC, "aa:bb:cc:dd:ee:ff", ACME, T, T,
                                                        asset_id="as-9")},
        assets={"as-9": asset("as-9")})
    rec = reconciler(lookups)
    match = rec.place(seen(T + 5, client_id="dev-1", mac="aa:bb:cc:dd:ee:ff", source="broker"))
    assert match.device_id == "dev-1"
    out = rec.outcome()
    (tied,) = out.assets
    assert (tied.status, tied.device_id) == (AssetStatus.MATCHED, "dev-1")
    # the next sighting with only the MAC is the device's
    assert rec.place(seen(T + 9, mac="aa:bb:cc:dd:ee:ff")).device_id == "dev-1"


def test_asset_ok_matched_asset_resolves_to_its_device() -> None:
    lookups = Lookups(
        bindings={(K.HOSTNAME, "|cam-1"): Binding(K.HOSTNAME, "|cam-1", ACME, T, T,
                                                 asset_id="as-9")},
        assets={"as-9": asset("as-9", device_id="dev-1")})
    match = reconciler(lookups).place(seen(hostname="cam-1"))
    assert (match.device_id, match.basis) == ("dev-1", K.HOSTNAME)


def test_presence_ok_places_within_the_binding_window() -> None:
    rec = reconciler(Lookups(registered={(K.CERTIFICATE, FP): DEV}))
    rec.place(seen(certificate=FP, ip="10.0.0.1", site="hq"))
    rec.place(seen(T + 2 * IP_BINDING_SECONDS, certificate=FP, ip="10.0.0.2", site="hq"))
    (presence,) = rec.outcome().presence
    assert presence.sightings == 2
    assert presence.seen().places == (("hq", "10.0.0.2"),)


def test_asset_fail_default_hostname_with_another_mac_is_another_box() -> None:
    """A host name (the vendor's default) does not tie a sighting to an asset whose MAC
    differs from the sighting's: two boxes, not one."""
    rec = reconciler(Lookups())
    first = rec.place(seen(site="plant", hostname="raspberrypi", mac="02:00:00:aa:01:01"))
    second = rec.place(seen(T + 1, site="plant", hostname="raspberrypi",
                            mac="02:00:00:aa:01:02"))
    assert first.asset_id != second.asset_id
    again = rec.place(seen(T + 2, site="plant", hostname="raspberrypi",
                           mac="02:00:00:aa:01:02"))
    assert again.asset_id == second.asset_id
    assert rec.outcome().merged == {}


def test_asset_fail_hostname_binds_only_within_its_site() -> None:
    rec = reconciler(Lookups())
    a = rec.place(seen(site="plant-a", hostname="localhost"))
    b = rec.place(seen(site="plant-b", hostname="localhost"))
    assert a.asset_id != b.asset_id
    assert rec.place(seen(T + 5, site="plant-a", hostname="localhost")).asset_id == a.asset_id


def test_asset_ok_same_hostname_same_site_without_mac_joins() -> None:
    rec = reconciler(Lookups())
    a = rec.place(seen(site="plant", hostname="cam-1", mac="02:00:00:aa:01:01"))
    assert rec.place(seen(T + 5, site="plant", hostname="cam-1")).asset_id == a.asset_id


def test_device_fail_hostname_of_device_with_another_mac_is_not_the_device() -> None:
    """A device bound to one MAC is not named by a host name a sighting with another MAC
    shares: the sighting is a new asset, and the host name stays the device's."""
    registered = {(K.MAC, "02:00:00:aa:01:01"): RegisteredDevice("dev-1", ACME),
                  (K.HOSTNAME, "raspberrypi"): RegisteredDevice("dev-1", ACME)}
    rec = reconciler(Lookups(registered=registered))
    assert rec.place(seen(hostname="raspberrypi", mac="02:00:00:aa:01:01")).device_id == "dev-1"
    match = rec.place(seen(T + 1, hostname="raspberrypi", mac="02:00:00:aa:01:02"))
    assert match.device_id is None and match.asset_id is not None


def test_device_fail_client_id_contradicts_a_mac_binding() -> None:
    """A MAC bound to a device whose client id is another than the sighting's does not
    make the sighting that device (one client id per box)."""
    lookups = Lookups(
        registered={(K.CLIENT_ID, "dev-1"): RegisteredDevice("dev-1", ACME)},
        bindings={(K.MAC, "aa:bb:cc:dd:ee:01"): Binding(K.MAC, "aa:bb:cc:dd:ee:01", ACME,
                                                        T, T, device_id="dev-1")})
    match = reconciler(lookups).place(seen(client_id="other", mac="aa:bb:cc:dd:ee:01",
                                           hostname="x"))
    assert match.device_id is None


def test_asset_ok_rotated_certificate_keeps_its_mac() -> None:
    """Credentials rotate: a new certificate with a known MAC is the same asset."""
    rec = reconciler(Lookups())
    a = rec.place(seen(certificate="a" * 64, mac="aa:bb:cc:dd:ee:02"))
    b = rec.place(seen(T + 9, certificate="b" * 64, mac="aa:bb:cc:dd:ee:02"))
    assert a.asset_id == b.asset_id


@pytest.mark.parametrize(("later", "written"), [
    (20 * 3600.0, {K.IP}),  # a day's precision: the MAC's row stands, the address moves
    (3 * 86400.0, {K.IP, K.MAC}),
], ids=["ok/mac-row-unwritten-within-a-day", "ok/mac-row-moved-after-a-day"])
def test_binding_ok_rewritten_only_when_its_times_move_enough(later: float,
                                                              written: set[K]) -> None:
    mac = Binding(K.MAC, "aa:bb:cc:dd:ee:01", ACME, T, T, asset_id="as-9")
    rec = reconciler(Lookups(bindings={(K.MAC, mac.value): mac},
                             assets={"as-9": asset("as-9")}))
    match = rec.place(seen(T + later, mac=mac.value, ip="10.0.0.7", site="hq"))
    assert match.asset_id == "as-9"
    bindings = rec.outcome().bindings
    assert {b.kind for b in bindings} == written
    assert all(b.asset_id == "as-9" for b in bindings)
