"""Reconciliation: which registered device or discovered asset each sighting is.

Pure: the batch's lookups come in (:class:`Lookups`), the decisions and the rows to
write come out (:class:`Outcome`). The rules, strongest identifier first
(``IdentifierKind``'s order):

1. Every identifier of a sighting is resolved to what it is bound to: a registered
   device (its certificate, PSK identity, id, or the ``mac``/``hostname``/``ip`` an
   admin gave it), or a binding a past sighting left (to a device, or to an asset); an
   address per site and day, a host name per site (``keys.py``). The ``ip`` an admin
   gave a device carries no time: it decides only for a sighting that has nothing but
   addresses, and only when no sighting bound the address to someone else then. What
   a stronger identifier of the sighting contradicts (another MAC, client id, or, for
   a host name or an address, another credential) is not resolved at all.
2. The sighting is a device's when its strongest identifier that names a device is not
   an IP, or when an IP is the strongest identifier that resolves at all. Another
   identifier naming a *different* device lowers the confidence (a cloned MAC, a
   reassigned address); the match keeps the stronger identifier.
3. Assets reached through a non-IP identifier of a device's sighting turn out to be
   that device: they become ``MATCHED``.
4. Otherwise the sighting joins the asset of its strongest resolving identifier; other
   assets (of the same org unit) reached through a non-IP identifier are the same thing
   seen by other sources and are merged into it. Nothing resolving: a new asset.
5. Every identifier of the sighting is then bound to what it matched, so the next
   sighting with only a weaker identifier (a DHCP lease with the MAC) finds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from iotiam.discovery.asset_row import AssetRow

# the keys' functions are re-exported: the service imports them from here
from iotiam.discovery.keys import (
    Key,
    batch_values,
    binding_key,
    ip_slot,
    keys_of,
    nearest_ip_binding,
)
from iotiam.discovery.models import (
    CONFIDENCE,
    AssetStatus,
    Binding,
    DevicePresence,
    DiscoveredAsset,
    IdentifierKind,
    Match,
    RegisteredDevice,
    Sighting,
)
from iotiam.discovery.presence import PresenceRow
from iotiam.kernel import within

IP = IdentifierKind.IP
HOSTNAME = IdentifierKind.HOSTNAME
#: kinds a box has one of: a target that shows another value of one of them than the
#: sighting is another box, whatever weaker identifier they share
_ONE_PER_BOX = (IdentifierKind.CLIENT_ID, IdentifierKind.MAC)
#: credentials are rotated (a device holds an old and a new certificate), so another
#: one contradicts only the weakest, per-site identifiers (a host name, an address)
_CREDENTIALS = (IdentifierKind.CERTIFICATE, IdentifierKind.ISSUER_SERIAL,
                IdentifierKind.PSK_IDENTITY)
#: an address binding's seen times are written again only when they move by more than
#: this: an import of a million sightings of the same few addresses writes each binding
#: once
TOUCH_SECONDS = 3600.0
#: the same for the other kinds, whose times only order two org units' claims to one
#: value (``DiscoveryStore.bindings_for``): a day's precision is plenty, and a device
#: seen a few times a day keeps its MAC's and name's rows unwritten
TOUCH_SECONDS_TIMELESS = 86400.0
__all__ = ["Key", "Lookups", "Outcome", "Reconciler", "batch_values", "ip_slot", "keys_of"]


@dataclass
class Lookups:
    """What a batch read before reconciling (every lookup one query per kind)."""

    registered: dict[Key, RegisteredDevice] = field(default_factory=dict)
    bindings: dict[Key, Binding] = field(default_factory=dict)
    assets: dict[str, DiscoveredAsset] = field(default_factory=dict)
    presence: dict[str, DevicePresence] = field(default_factory=dict)


@dataclass
class Outcome:
    """What a batch changes: rows to write, and counts for the report."""

    assets: list[DiscoveredAsset]
    bindings: list[Binding]
    presence: list[DevicePresence]
    #: gone asset id -> the asset it was merged into
    merged: dict[str, str]
    matched: int
    new_assets: int


class _Hit(NamedTuple):
    """What one identifier of a sighting resolved to (a tuple: made ~3 times a sighting)."""

    kind: IdentifierKind
    key: str
    device: RegisteredDevice | None
    asset: str | None
    #: named only by the ``ip`` an admin wrote on a device, which carries no time
    timeless: bool = False
    #: it named something a stronger identifier of the sighting contradicts: it neither
    #: matches nor is re-bound (the value stays with what it named; an address whose
    #: holder shows another MAC or client id was handed on instead: a plain miss)
    contradicted: bool = False


class Reconciler:
    """Places the sightings of one batch, in order, each seeing what the ones before it
    bound (a batch is one transaction: the second sighting of a new asset joins it)."""

    def __init__(self, org_path: str, lookups: Lookups, new_id: Callable[[], str]) -> None:
        self._org_path = org_path
        self._registered = lookups.registered
        self._bindings = dict(lookups.bindings)
        #: asset id -> the keys bound to it (a merge moves them without a scan)
        self._bound: dict[str, set[Key]] = {}
        #: device id -> the keys known to name it (registered, or bound by a sighting)
        self._device_keys: dict[str, set[Key]] = {}
        for key, binding in self._bindings.items():
            if binding.asset_id:
                self._bound.setdefault(binding.asset_id, set()).add(key)
            if binding.device_id:
                self._device_keys.setdefault(binding.device_id, set()).add(key)
        for key, device in self._registered.items():
            self._device_keys.setdefault(device.device_id, set()).add(key)
        self._assets = {a: AssetRow(asset) for a, asset in lookups.assets.items()}
        self._presence = {d: PresenceRow(row) for d, row in lookups.presence.items()}
        self._new_id = new_id
        self._merged: dict[str, str] = {}
        self._dirty_assets: set[str] = set()
        self._dirty_bindings: set[Key] = set()
        self._dirty_presence: set[str] = set()
        self._matched = 0
        self._new_assets = 0

    def place(self, sighting: Sighting, keys: list[Key] | None = None) -> Match:
        """Match one sighting to a device or an asset, and remember what it bound
        (``keys``: its ``keys_of``, when the caller has them already)."""
        keys = keys_of(sighting) if keys is None else keys
        # the ``ip`` an admin gave a device speaks only for a sighting of addresses alone
        alone = keys[0][0] is IP if keys else True
        hits = self._uncontradicted([self._resolve(kind, key, sighting, alone)
                                     for kind, key in keys])
        first = by_device = None
        for hit in hits:
            if first is None and (hit.device or hit.asset):
                first = hit
            if hit.device and hit.kind is not IP:
                by_device = hit
                break
        if first is not None and first.kind is IP and first.device is None \
                and first.asset and not self._same_box(first.asset, sighting):
            first = None  # another MAC or host name: the address was handed on
        if first is None:
            return self._new_asset(sighting, hits)
        if by_device is None and first.kind is IP and first.device:
            by_device = first
        if by_device is not None:
            return self._to_device(sighting, hits, by_device)
        return self._to_asset(sighting, hits, first)

    def outcome(self) -> Outcome:
        """The rows this batch changes."""
        return Outcome(
            # in no particular order: imports run one at a time, so no two batches' upserts
            # can wait on each other's rows
            assets=[self._assets[a].value() for a in self._dirty_assets if a in self._assets],
            bindings=[self._bindings[k] for k in self._dirty_bindings],
            presence=[self._presence[d].value() for d in self._dirty_presence],
            merged={gone: self._live(kept) for gone, kept in self._merged.items()},
            matched=self._matched, new_assets=self._new_assets)

    # -- resolving ------------------------------------------------------------------

    def _live(self, asset_id: str) -> str:
        while asset_id in self._merged:
            asset_id = self._merged[asset_id]
        return asset_id

    def _resolve(self, kind: IdentifierKind, key: str, sighting: Sighting,
                 alone: bool = True) -> _Hit:
        registered = self._registered.get((kind, key))
        if kind is IP:
            binding = nearest_ip_binding(self._bindings, key, sighting.seen_at)
            if binding is not None or not alone:
                # what a sighting bound the address to at this time beats the address
                # an admin wrote down once (DHCP has since handed it on)
                registered = None
        else:
            binding = self._bindings.get((kind, binding_key(kind, key, sighting.site)))
        if registered is None and binding is None:
            return _Hit(kind, key, None, None)  # the common case of a new asset
        asset = self._live(binding.asset_id) if binding and binding.asset_id else None
        device = registered
        if device is None and binding is not None and binding.device_id:
            device = RegisteredDevice(binding.device_id, binding.org_path)
        if device is None and asset is not None:
            owner = self._assets.get(asset)
            if owner is not None and owner.device_id:
                device = RegisteredDevice(owner.device_id, owner.org_path)
        return _Hit(kind, key, device, asset, timeless=kind is IP and binding is None)

    def _uncontradicted(self, hits: list[_Hit]) -> list[_Hit]:
        """The hits, with those whose device or asset a stronger identifier of the same
        sighting contradicts turned into misses: two boxes with the vendor's default
        host name and their own MACs are two boxes."""
        if _one_target(hits):
            return hits  # a new thing, or a known box seen again with what it showed
        #: kind -> what its hits name: a target one of the sighting's own values of a
        #: kind names shows that value, so it cannot contradict the sighting on that kind
        named: dict[IdentifierKind, set[tuple[str | None, str | None]]] = {}
        for hit in hits:
            if hit.device or hit.asset:
                named.setdefault(hit.kind, set()).add(_target(hit))
        carried: dict[IdentifierKind, set[str]] = {}
        for hit in hits:
            carried.setdefault(hit.kind, set()).add(hit.key)
        found = hits
        for n, hit in enumerate(hits):
            if not (hit.device or hit.asset):
                continue
            target = _target(hit)
            # the usual sighting of a known box reached it through each of those kinds:
            # nothing to gather
            kinds = [k for k in _CHECKED[hit.kind]
                     if k in carried and target not in named.get(k, ())]
            against = self._contradicting(hit, kinds, carried) if kinds else ()
            if not against:
                continue
            if found is hits:
                found = list(hits)
            if hit.kind is IP and not set(against).isdisjoint(_ONE_PER_BOX):
                # its holder then was another box: the address was handed on, so it names
                # nothing and is re-bound to this sighting's holder (``_bind``)
                found[n] = _Hit(hit.kind, hit.key, None, None)
            else:
                found[n] = _Hit(hit.kind, hit.key, None, None, contradicted=True)
        return found

    def _contradicting(self, hit: _Hit, kinds: list[IdentifierKind],
                       carried: dict[IdentifierKind, set[str]]) -> list[IdentifierKind]:
        """Of ``kinds`` (stronger than the hit's, ``_CHECKED``), those of which what
        ``hit`` names shows values and the sighting carries none (known from this
        batch's lookups and the asset's newest MAC: a cheap check, not the target's
        every identifier)."""
        # what the target shows of those kinds, gathered without copying its key sets
        wanted = set(kinds)
        theirs: dict[IdentifierKind, set[str]] = {}
        if hit.device is not None:
            for kind, value in self._device_keys.get(hit.device.device_id, ()):
                if kind in wanted:
                    theirs.setdefault(kind, set()).add(value)
        asset = self._assets.get(hit.asset) if hit.asset else None
        if asset is not None:
            bindings = self._bindings
            for key in self._bound.get(asset.id, ()):
                if key[0] in wanted and bindings[key].asset_id == asset.id:
                    theirs.setdefault(key[0], set()).add(key[1])
            if asset.mac and IdentifierKind.MAC in wanted:
                theirs.setdefault(IdentifierKind.MAC, set()).add(asset.mac)
        return [kind for kind, values in theirs.items() if values.isdisjoint(carried[kind])]

    # -- placing --------------------------------------------------------------------

    def _to_device(self, sighting: Sighting, hits: list[_Hit], by: _Hit) -> Match:
        assert by.device is not None
        device = by.device
        confidence = CONFIDENCE[by.kind]
        other = next((h for h in hits if h.device and h.device.device_id != device.device_id),
                     None)
        if other is not None:
            # a weaker identifier names another device: still this one, less surely
            confidence = round(confidence * (1 - CONFIDENCE[other.kind] / 2), 3)
        self._matched += 1
        if by.timeless:
            # only the address an admin once wrote names it: attributed, but it neither
            # teaches the address's days nor proves the device alive (DHCP may have
            # handed the address on: a dormant device would look active, a retired one
            # like a zombie)
            return Match(by.kind, confidence, device_id=device.device_id)
        if by.kind is not IP:
            for hit in hits:
                if hit.asset and (hit.kind is not IP or self._same_box(hit.asset, sighting)):
                    self._tie(hit.asset, device)
                if hit.kind is IP:
                    self._absorb(hit.key, sighting, device=device)
        for hit in hits:
            if hit.device and hit.device.device_id != device.device_id and hit.kind is not IP:
                continue  # the contradicting value stays with its own device
            known = self._registered.get((hit.kind, hit.key))
            if hit.kind is not IP and known is not None and known.device_id == device.device_id:
                continue  # registered already: nothing to learn (an address is: it has
                # no time, and the days this device holds it are what later sightings need)
            if by.kind is IP and hit.kind is not IP and hit.device is None:
                continue  # an address alone does not teach a device its MAC
            if hit.contradicted:
                continue
            self._bind(hit.kind, hit.key, sighting, device.org_path,
                       device_id=device.device_id)
        self._present(device, sighting)
        return Match(by.kind, confidence, device_id=device.device_id)

    def _tie(self, asset_id: str, device: RegisteredDevice) -> None:
        asset = self._assets.get(asset_id)
        if asset is None or asset.device_id:
            return
        if not (within(asset.org_path, device.org_path) or within(device.org_path,
                                                                  asset.org_path)):
            return  # never across tenants (G9)
        asset.status, asset.device_id = AssetStatus.MATCHED, device.device_id
        self._dirty_assets.add(asset_id)

    def _to_asset(self, sighting: Sighting, hits: list[_Hit], first: _Hit) -> Match:
        assert first.asset is not None
        kept = first.asset
        for hit in hits:
            if hit.asset and hit.asset != kept and (
                    hit.kind is not IP or self._same_box(hit.asset, sighting, kept)):
                self._merge(hit.asset, kept)
        for hit in hits:
            if hit.kind is IP:
                self._absorb(hit.key, sighting, kept=kept)
        kept = self._live(kept)
        path = self._assets[kept].org_path
        for hit in hits:
            # only an IP can name a device here: the address was handed on, it is ours now
            if not hit.contradicted:
                self._bind(hit.kind, hit.key, sighting, path, asset_id=kept)
        self._grow(kept, sighting)
        return Match(first.kind, CONFIDENCE[first.kind], asset_id=kept)

    def _same_box(self, asset_id: str, sighting: Sighting, kept: str | None = None) -> bool:
        """Whether an asset found through the address a sighting used at that time is
        the sighting's own box: on one segment an address answers for one interface at
        a time (ARP), so it is, unless the asset shows another MAC or host name than
        the sighting (or than ``kept``, the asset the sighting joins): then the address
        was handed on (DHCP) and the two stay apart."""
        asset = self._assets.get(self._live(asset_id))
        if asset is None or asset.device_id:
            return False
        others = [(sighting.mac, sighting.hostname)]
        joined = self._assets.get(self._live(kept)) if kept else None
        if joined is not None:
            others.append((joined.mac, joined.hostname))
        for mac, hostname in others:
            if asset.mac and mac and asset.mac != mac:
                return False
            if asset.hostname and hostname and _host(asset.hostname) != _host(hostname):
                return False
        return True

    def _absorb(self, key: str, sighting: Sighting, *, kept: str | None = None,
                device: RegisteredDevice | None = None) -> None:
        """The asset holding this sighting's own slot of the address is about to lose it
        (the address is re-bound to what the sighting is): when it is the same box (it
        was nearer another holder's time, e.g. flows imported before the lease between
        them), merge it into ``kept`` or tie it to ``device`` instead."""
        old = self._bindings.get((IP, ip_slot(key, sighting.seen_at)))
        if old is None or not old.asset_id:
            return
        other = self._live(old.asset_id)
        if other == kept or not self._same_box(other, sighting, kept):
            return
        if device is not None:
            self._tie(other, device)
        elif kept is not None:
            self._merge(other, kept)

    def _merge(self, gone: str, kept: str) -> None:
        gone, kept = self._live(gone), self._live(kept)
        a, b = self._assets.get(kept), self._assets.get(gone)
        if gone == kept or a is None or b is None or a.org_path != b.org_path:
            return  # assets of two org units stay apart (G9)
        newer, older = (b, a) if b.last_seen > a.last_seen else (a, b)
        for name in _ATTRIBUTES:
            setattr(a, name, getattr(newer, name) or getattr(older, name))
        a.first_seen, a.last_seen = min(a.first_seen, b.first_seen), max(a.last_seen,
                                                                          b.last_seen)
        a.sources |= b.sources
        a.sightings += b.sightings
        del self._assets[gone]
        self._dirty_assets.discard(gone)
        self._dirty_assets.add(kept)
        self._merged[gone] = kept
        moved = self._bound.pop(gone, set())
        for key in moved:
            binding = self._bindings[key]
            if binding.asset_id == gone:
                self._bindings[key] = binding._replace(asset_id=kept)
        self._bound.setdefault(kept, set()).update(moved)

    def _new_asset(self, sighting: Sighting, hits: list[_Hit]) -> Match:
        asset_id = self._new_id()
        at = sighting.seen_at
        self._assets[asset_id] = AssetRow(DiscoveredAsset(
            id=asset_id, org_path=self._org_path, status=AssetStatus.UNMANAGED,
            first_seen=at, last_seen=at, sources=(), identifiers=(), sightings=0))
        self._grow(asset_id, sighting)
        for hit in hits:
            if not hit.contradicted:
                self._bind(hit.kind, hit.key, sighting, self._org_path, asset_id=asset_id)
        self._new_assets += 1
        kind = hits[0].kind if hits else IP
        return Match(kind, CONFIDENCE[kind], asset_id=asset_id)

    def _grow(self, asset_id: str, sighting: Sighting) -> None:
        asset = self._assets[asset_id]
        at = sighting.seen_at
        newest = at >= asset.last_seen
        for name in _ATTRIBUTES:
            value = getattr(sighting, name)
            if value and (newest or not getattr(asset, name)):
                setattr(asset, name, value)
        asset.first_seen, asset.last_seen = min(asset.first_seen, at), max(asset.last_seen, at)
        asset.sources.add(sighting.source)
        asset.sightings += 1
        self._dirty_assets.add(asset_id)

    def _bind(self, kind: IdentifierKind, key: str, sighting: Sighting, org_path: str, *,
              asset_id: str | None = None, device_id: str | None = None) -> None:
        at = sighting.seen_at
        key = ip_slot(key, at) if kind is IP else binding_key(kind, key, sighting.site)
        old = self._bindings.get((kind, key))
        if device_id and old is not None and old.asset_id:
            owner = self._assets.get(self._live(old.asset_id))
            if owner is not None and owner.device_id == device_id:
                asset_id = owner.id  # the asset that turned out to be this device keeps it
        if kind is IP and old is not None and old.org_path == org_path \
                and at < old.last_seen and not self._holds(old, asset_id, device_id):
            # handed on within the slot: it is its later holder's, whatever the imports' order
            return
        if old is not None and old.org_path == org_path and (
                old.asset_id, old.device_id) == (asset_id, device_id):
            touch = TOUCH_SECONDS if kind is IP else TOUCH_SECONDS_TIMELESS
            if old.first_seen - touch <= at <= old.last_seen + touch:
                return  # already known, and its times barely move
            bound = Binding(kind, key, org_path, min(old.first_seen, at),
                            max(old.last_seen, at), asset_id, device_id)
        else:
            # new, or moved to another holder (an address handed to someone else)
            bound = Binding(kind, key, org_path, at, at, asset_id=asset_id,
                            device_id=device_id)
        self._bindings[(kind, key)] = bound
        self._dirty_bindings.add((kind, key))
        if bound.asset_id:
            self._bound.setdefault(bound.asset_id, set()).add((kind, key))
        if bound.device_id:
            self._device_keys.setdefault(bound.device_id, set()).add((kind, key))

    def _holds(self, binding: Binding, asset_id: str | None, device_id: str | None) -> bool:
        """Whether ``binding`` names this device, or this asset (or one merged into it)."""
        return bool((device_id and binding.device_id == device_id) or (
            asset_id and binding.asset_id and self._live(binding.asset_id) == asset_id))

    def _present(self, device: RegisteredDevice, sighting: Sighting) -> None:
        at = sighting.seen_at
        row = self._presence.get(device.device_id)
        if row is None:
            row = self._presence[device.device_id] = PresenceRow(DevicePresence(
                device.device_id, device.org_path, at, at, frozenset(), 0))
        if sighting.ip:
            place = (sighting.site, sighting.ip)
            row.places[place] = max(at, row.places.get(place, at))
        row.first_seen, row.last_seen = min(row.first_seen, at), max(row.last_seen, at)
        row.sources.add(sighting.source)
        row.sightings += 1
        self._dirty_presence.add(device.device_id)


def _target(hit: _Hit) -> tuple[str | None, str | None]:
    """What a hit names: its device and asset."""
    return (hit.device.device_id if hit.device else None, hit.asset)


def _one_target(hits: list[_Hit]) -> bool:
    """Whether no hit can be contradicted: the hits that name something all name one
    target, and every identifier a contradiction is judged on (``_CHECKED_KINDS``) names
    it. Then each kind ``_uncontradicted`` would check reached that target through the
    sighting's own value, which it shows. The usual sighting: a new thing (nothing
    named), or a known box seen again."""
    target: tuple[str | None, str | None] | None = None
    for hit in hits:
        if hit.device or hit.asset:
            if target is None:
                target = _target(hit)
            elif _target(hit) != target:
                return False
        elif hit.kind in _CHECKED_KINDS:
            # a value of a kind a box has one of that names nothing: the target may show
            # another one
            return target is None and all(not (h.device or h.asset) for h in hits)
    return True


def _host(name: str) -> str:
    """A host name's first label: a lease's ``cam-1`` is a PTR record's ``cam-1.lan``."""
    return name.partition(".")[0]


_ORDER = {kind: n for n, kind in enumerate(IdentifierKind)}
#: kind -> the kinds a target named by one of its values may contradict the sighting on:
#: one a box has one of and stronger, and for a host name or an address the credentials
_CHECKED = {kind: [k for k in _ONE_PER_BOX if _ORDER[k] < _ORDER[kind]]
            + (list(_CREDENTIALS) if kind in (HOSTNAME, IP) else [])
            for kind in IdentifierKind}
#: every kind some hit may be contradicted on
_CHECKED_KINDS = frozenset(k for kinds in _CHECKED.values() for k in kinds)

#: what an asset shows of its newest sighting
_ATTRIBUTES = ("site", "network", "ip", "mac", "hostname", "vendor", "model", "open_ports")
