"""How a sighting's identifiers are keyed for lookups and bindings.

An address means something only at one site and for a while: it is looked up as
``site|ip`` and bound per day (``site|ip@day``). A host name is looked up as it is (the
``hostname`` an admin gave a device) but bound per site (``site|name``): the vendors'
default names (``raspberrypi``, ``localhost``, ``ESP_...``) repeat across sites.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from iotiam.discovery.models import (
    IP_BINDING_SECONDS,
    Binding,
    IdentifierKind,
    Sighting,
    ip_key,
)

IP = IdentifierKind.IP
HOSTNAME = IdentifierKind.HOSTNAME
#: an address's bindings are kept one per slot of this length (``site|ip@slot``)
IP_SLOT_SECONDS = 86400.0
#: the slots either side of a sighting's own that may hold a binding within
#: ``IP_BINDING_SECONDS`` of it
_IP_REACH = int(-(-IP_BINDING_SECONDS // IP_SLOT_SECONDS))

Key = tuple[IdentifierKind, str]


def keys_of(sighting: Sighting) -> list[Key]:
    """The sighting's identifiers as they are looked up: strongest first, IP per site."""
    return [(kind, ip_key(sighting.site, value) if kind is IP else value)
            for kind, value in sighting.identifiers()]


def ip_slot(key: str, at: float) -> str:
    """The binding key of address ``key`` (``site|ip``) for a sighting at ``at``."""
    return f"{key}@{int(at // IP_SLOT_SECONDS)}"


def binding_key(kind: IdentifierKind, key: str, site: str | None) -> str:
    """How a sighting's identifier is bound: a host name only within its site (the
    vendor's default names, ``raspberrypi``, ``localhost``, repeat across sites)."""
    return ip_key(site, key) if kind is HOSTNAME else key


def ip_slots_around(key: str, at: float) -> list[str]:
    """The binding keys of ``key`` that may hold a binding in reach of ``at``."""
    slot = int(at // IP_SLOT_SECONDS)
    return [f"{key}@{n}" for n in range(slot - _IP_REACH, slot + _IP_REACH + 1)]


def nearest_ip_binding(bindings: Mapping[Key, Binding], key: str, at: float
                       ) -> Binding | None:
    """Who held address ``key`` (``site|ip``) nearest to ``at``, within the binding window
    (a binding of each slot around ``at``: its holder seen latest in that slot)."""
    best: Binding | None = None
    distance = IP_BINDING_SECONDS
    for slot in ip_slots_around(key, at):
        binding = bindings.get((IP, slot))
        if binding is None:
            continue
        away = max(binding.first_seen - at, at - binding.last_seen, 0.0)
        if away <= distance:
            best, distance = binding, away
    return best


def batch_values(keyed: Iterable[tuple[Sighting, list[Key]]]
                 ) -> tuple[dict[IdentifierKind, list[str]], dict[IdentifierKind, list[str]]]:
    """Every value a batch (its sightings and their ``keys_of``) looks up, by kind, once:
    among the registered identities (a key as it is), and among the bindings (a host
    name within its site, an address by the slots around each sighting's time).

    An address is looked up among the registered identities only for a sighting of
    addresses alone: the ``ip`` an admin gave a device speaks for no other
    (``Reconciler.place``), so a jsonl line's address is no index probe there."""
    looked: dict[IdentifierKind, set[str]] = {}
    names: set[str] = set()
    #: (address, day) once, however many sightings of it the batch has (a flow log's
    #: server address is in every other sighting)
    days: set[tuple[str, int]] = set()
    addresses: set[str] = set()
    for sighting, keys in keyed:
        alone = keys[0][0] is IP
        for kind, value in keys:
            if kind is IP:
                days.add((value, int(sighting.seen_at // IP_SLOT_SECONDS)))
                if alone:
                    addresses.add(value)
                continue
            values = looked.get(kind)
            if values is None:
                values = looked[kind] = set()
            values.add(value)
            if kind is HOSTNAME:
                names.add(ip_key(sighting.site, value))
    registered = {kind: sorted(values) for kind, values in looked.items()}
    # the other kinds are bound as they are looked up: the same sorted list serves both
    bound = {kind: values for kind, values in registered.items() if kind is not HOSTNAME}
    if addresses:
        registered[IP] = sorted(addresses)
    if names:
        bound[HOSTNAME] = sorted(names)
    if days:
        slots: set[str] = set()
        for value, day in days:
            slots.update([f"{value}@{n}" for n in range(day - _IP_REACH, day + _IP_REACH + 1)])
        bound[IP] = sorted(slots)
    return registered, bound
