"""What a batch looks up (``keys.batch_values``): each value once, a host name bound within
its site, an address by the day slots around each sighting's time."""

from __future__ import annotations

from iotiam.discovery.keys import batch_values, ip_slots_around, keys_of
from iotiam.discovery.models import IdentifierKind, Sighting

K = IdentifierKind
DAY = 86400.0
T = 1_700_006_400.0  # 00:00 UTC


def keyed(*sightings: Sighting) -> list[tuple[Sighting, list[tuple[IdentifierKind, str]]]]:
    return [(s, keys_of(s)) for s in sightings]


def test_batch_values_ok_each_value_once_and_sorted() -> None:
    registered, bound = batch_values(keyed(
        Sighting(source="zeek", seen_at=T, site="hq", mac="bb:00:00:00:00:0b", client_id="c"),
        Sighting(source="zeek", seen_at=T + 60, site="hq", mac="aa:00:00:00:00:0a"),
        Sighting(source="zeek", seen_at=T + 120, site="hq", mac="bb:00:00:00:00:0b")))
    assert registered[K.MAC] == ["aa:00:00:00:00:0a", "bb:00:00:00:00:0b"]
    assert bound[K.MAC] == registered[K.MAC]
    assert registered[K.CLIENT_ID] == bound[K.CLIENT_ID] == ["c"]


def test_batch_values_ok_host_name_looked_up_as_is_but_bound_within_its_site() -> None:
    registered, bound = batch_values(keyed(
        Sighting(source="dhcpd", seen_at=T, site="hq", hostname="raspberrypi"),
        Sighting(source="dhcpd", seen_at=T, site="lab", hostname="raspberrypi")))
    assert registered[K.HOSTNAME] == ["raspberrypi"]
    assert bound[K.HOSTNAME] == ["hq|raspberrypi", "lab|raspberrypi"]


def test_batch_values_ok_address_by_the_slots_around_each_sightings_day() -> None:
    first = Sighting(source="zeek", seen_at=T + 3600, site="hq", ip="10.0.0.5")
    same_day = Sighting(source="zeek", seen_at=T + 7200, site="hq", ip="10.0.0.5")
    later = Sighting(source="zeek", seen_at=T + 10 * DAY, site="hq", ip="10.0.0.5")
    registered, bound = batch_values(keyed(first, same_day, later))
    assert registered[K.IP] == ["hq|10.0.0.5"]
    wanted = set(ip_slots_around("hq|10.0.0.5", first.seen_at)) | set(
        ip_slots_around("hq|10.0.0.5", later.seen_at))
    assert bound[K.IP] == sorted(wanted)
    assert len(bound[K.IP]) == 6


def test_batch_values_ok_address_registered_only_for_sightings_of_addresses_alone() -> None:
    # the ``ip`` an admin gave a device speaks only for a sighting of addresses alone, so
    # a sighting that shows a MAC looks its address up among the bindings only
    registered, bound = batch_values(keyed(
        Sighting(source="dhcpd", seen_at=T, site="hq", ip="10.0.0.5", mac="aa:00:00:00:00:0a"),
        Sighting(source="zeek", seen_at=T, site="hq", ip="10.0.0.6")))
    assert registered[K.IP] == ["hq|10.0.0.6"]
    assert {slot.partition("@")[0] for slot in bound[K.IP]} == {"hq|10.0.0.5", "hq|10.0.0.6"}


def test_batch_values_ok_no_address_alone_no_registered_address_lookup() -> None:
    registered, _ = batch_values(keyed(
        Sighting(source="dhcpd", seen_at=T, site="hq", ip="10.0.0.5", mac="aa:00:00:00:00:0a")))
    assert K.IP not in registered
