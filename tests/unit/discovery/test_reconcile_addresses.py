"""An address over time (issue 13's accuracy classes): every holder keeps its own days,
the ``ip`` an admin wrote down carries no time, and what was seen at an address at the
same time is one box unless its MAC or host name says otherwise."""

from __future__ import annotations

import itertools

from iotiam.discovery.models import (
    AssetStatus,
    IdentifierKind,
    RegisteredDevice,
    Sighting,
    ip_key,
)
from iotiam.discovery.reconcile import Lookups, Reconciler

K = IdentifierKind
ACME = "/root/acme/"
DAY = 86400.0
T = 1_700_006_400.0  # 00:00 UTC
MAC_A, MAC_B = "aa:00:00:00:00:0a", "bb:00:00:00:00:0b"
FP = "cd" * 32
DEV = RegisteredDevice("dev-1", ACME)
OTHER = RegisteredDevice("dev-2", ACME)


def reconciler(lookups: Lookups | None = None) -> Reconciler:
    ids = (f"as-{n}" for n in itertools.count(1))
    return Reconciler(ACME, lookups or Lookups(), lambda: next(ids))


def seen(at: float, source: str = "zeek", **fields: object) -> Sighting:
    return Sighting(source=source, seen_at=at, site="hq", **fields)  # type: ignore[arg-type]


def test_ip_ok_each_holder_keeps_its_days_whatever_the_import_order() -> None:
    rec = reconciler()
    a = rec.place(seen(T + 6 * 3600, "dhcpd", mac=MAC_A, ip="10.0.0.5"))
    b = rec.place(seen(T + 5 * DAY + 6 * 3600, "dhcpd", mac=MAC_B, ip="10.0.0.5"))
    assert a.asset_id != b.asset_id
    # a flow log imported after both leases: each flow joins who held the address then
    early = rec.place(seen(T + 12 * 3600, ip="10.0.0.5"))
    late = rec.place(seen(T + 5 * DAY + 12 * 3600, ip="10.0.0.5"))
    assert (early.asset_id, late.asset_id) == (a.asset_id, b.asset_id)
    assert rec.outcome().new_assets == 2


def test_ip_fail_between_holders_beyond_the_window_is_nobody() -> None:
    rec = reconciler()
    rec.place(seen(T, "dhcpd", mac=MAC_A, ip="10.0.0.5"))
    rec.place(seen(T + 5 * DAY, "dhcpd", mac=MAC_B, ip="10.0.0.5"))
    alone = rec.place(seen(T + 2.5 * DAY, ip="10.0.0.5"))
    assert alone.asset_id == "as-3"


def test_ip_fail_admin_address_does_not_take_a_sighting_with_a_mac() -> None:
    rec = reconciler(Lookups(registered={(K.IP, ip_key("hq", "10.0.0.5")): DEV}))
    match = rec.place(seen(T, "dhcpd", mac=MAC_A, ip="10.0.0.5"))
    assert match.device_id is None and match.asset_id == "as-1"


def test_ip_fail_admin_address_loses_to_who_was_seen_there_then() -> None:
    rec = reconciler(Lookups(registered={(K.IP, ip_key("hq", "10.0.0.5")): DEV}))
    holder = rec.place(seen(T, "dhcpd", mac=MAC_A, ip="10.0.0.5"))
    flow = rec.place(seen(T + 3600, ip="10.0.0.5"))
    assert flow.device_id is None and flow.asset_id == holder.asset_id


def test_ip_ok_admin_address_still_names_a_sighting_nothing_else_explains() -> None:
    rec = reconciler(Lookups(registered={(K.IP, ip_key("hq", "10.0.0.5")): DEV}))
    assert rec.place(seen(T, ip="10.0.0.5")).device_id == "dev-1"


def test_ip_ok_device_binds_its_days_of_an_address_written_on_another() -> None:
    lookups = Lookups(registered={(K.IP, ip_key("hq", "10.0.0.5")): OTHER,
                                  (K.MAC, MAC_A): DEV})
    rec = reconciler(lookups)
    for day in range(4):
        assert rec.place(seen(T + day * DAY, "dhcpd", mac=MAC_A,
                              ip="10.0.0.5")).device_id == "dev-1"
    assert rec.place(seen(T + 3 * DAY + 3600, ip="10.0.0.5")).device_id == "dev-1"


def test_merge_ok_asset_met_at_the_address_at_that_time() -> None:
    rec = reconciler()
    # a broker log first (PSK and address), then the CMDB (MAC), then the lease joining both
    psk = rec.place(seen(T + 8 * 3600, "broker", psk_identity="vendor-1", ip="10.0.0.5"))
    cmdb = rec.place(seen(T, "cmdb", mac=MAC_A, hostname="cam-1"))
    lease = rec.place(seen(T + 6 * 3600, "dhcpd", mac=MAC_A, ip="10.0.0.5",
                           hostname="cam-1"))
    out = rec.outcome()
    assert lease.asset_id == cmdb.asset_id and out.merged == {psk.asset_id: cmdb.asset_id}
    assert len(out.assets) == 1 and out.assets[0].sightings == 3


def test_merge_fail_asset_with_another_mac_at_the_address() -> None:
    rec = reconciler()
    first = rec.place(seen(T, "dhcpd", mac=MAC_A, ip="10.0.0.5"))
    rec.place(seen(T - DAY, "cmdb", mac=MAC_B))
    second = rec.place(seen(T + 3600, "dhcpd", mac=MAC_B, ip="10.0.0.5"))
    assert first.asset_id != second.asset_id and rec.outcome().merged == {}


def test_merge_fail_asset_with_another_host_name_at_the_address() -> None:
    rec = reconciler()
    first = rec.place(seen(T, "nmap", hostname="cam-1.lan", ip="10.0.0.5"))
    second = rec.place(seen(T + 3600, "dhcpd", mac=MAC_B, hostname="door-2",
                            ip="10.0.0.5"))
    assert first.asset_id != second.asset_id and rec.outcome().merged == {}


def test_tie_ok_address_only_asset_is_the_device_seen_there_then() -> None:
    rec = reconciler(Lookups(registered={(K.CERTIFICATE, FP): DEV}))
    flow = rec.place(seen(T, ip="10.0.0.5"))
    rec.place(seen(T + 3600, "suricata", certificate=FP, ip="10.0.0.5"))
    (tied,) = rec.outcome().assets
    assert (tied.id, tied.status, tied.device_id) == (flow.asset_id, AssetStatus.MATCHED,
                                                      "dev-1")


def test_ip_fail_admin_address_alone_neither_binds_nor_proves_presence() -> None:
    rec = reconciler(Lookups(registered={(K.IP, ip_key("hq", "10.0.0.5")): DEV}))
    assert rec.place(seen(T, ip="10.0.0.5")).device_id == "dev-1"
    out = rec.outcome()
    assert (out.matched, out.presence, out.bindings) == (1, [], [])


def test_merge_ok_flow_nearer_no_holder_joins_the_box_that_takes_its_day() -> None:
    rec = reconciler()
    # flows first: a day and more apart, so each starts an asset of its own
    rec.place(seen(T + 17 * 3600, ip="10.0.0.5"))
    rec.place(seen(T + DAY + 20.75 * 3600, ip="10.0.0.5"))
    # the scan of the second morning is nearer the first flow, and takes the second
    # flow's day of the address: that flow was the same box
    rec.place(seen(T + DAY + 2 * 3600, "nmap", mac=MAC_A, ip="10.0.0.5"))
    out = rec.outcome()
    assert len(out.assets) == 1 and out.assets[0].sightings == 3


def test_merge_fail_flow_of_another_mac_keeps_its_asset() -> None:
    rec = reconciler()
    rec.place(seen(T + 17 * 3600, "nmap", mac=MAC_B, ip="10.0.0.5"))
    rec.place(seen(T + DAY + 20.75 * 3600, "dhcpd", mac=MAC_B, ip="10.0.0.5"))
    rec.place(seen(T + DAY + 2 * 3600, "nmap", mac=MAC_A, ip="10.0.0.5"))
    assert rec.outcome().merged == {}
