"""The risk register in memory (``risk.ports.RiskStore``)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from iotiam.discovery.models import CredentialSeen, DeviceSeen, DiscoveredAsset, IdentifierKind
from iotiam.risk.models import Acceptance, EntryFilter, FleetChannels, RiskEntry, TrendPoint
from iotiam.risk.ports import Cursor
from iotiam.testing.fakes.memory import MemoryStore, under


def _order(entry: RiskEntry) -> tuple[int, str]:
    return -entry.score, entry.id


def matches(entry: RiskEntry, where: EntryFilter, now: float, acceptances: Sequence[Acceptance]
            ) -> bool:
    """Whether ``entry`` passes ``where`` (a factor hidden by a live acceptance does not)."""
    if where.factor is not None:
        hidden = {a.factor for a in acceptances if a.live(now)}
        if where.factor in hidden or all(h.factor is not where.factor for h in entry.factors):
            return False
    return ((where.site is None or entry.site == where.site)
            and (where.type is None or entry.type == where.type)
            and (where.subject is None or entry.subject is where.subject)
            and (where.min_score is None or entry.score >= where.min_score))


@dataclass
class MemoryRiskStore(MemoryStore):
    """Entries, acceptances and rebuild counts in dicts."""

    entries: dict[str, RiskEntry] = field(default_factory=dict)
    holders: dict[str, str | None] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)
    acceptances: dict[tuple[str, str], Acceptance] = field(default_factory=dict)
    rebuilds: dict[int, float] = field(default_factory=dict)
    finished: dict[int, tuple[float, dict[str, dict[str, int]]]] = field(default_factory=dict)

    def _with_acceptances(self, entry: RiskEntry) -> RiskEntry:
        return replace(entry, accepted=tuple(a for (e, _), a in sorted(self.acceptances.items())
                                             if e == entry.id))

    def put_entries(self, entries: Sequence[RiskEntry], *, generation: int,
                    holder: Mapping[str, str | None], now: float) -> None:
        """Insert or replace."""
        for entry in entries:
            self.entries[entry.id] = replace(entry, accepted=())
            self.holders[entry.id] = holder.get(entry.id)
            self.generations[entry.id] = generation

    def remove_stale(self, generation: int, kept: Collection[str] = frozenset()) -> int:
        """Drop what this rebuild did not write (nor keep)."""
        stale = [i for i, g in self.generations.items() if g < generation and i not in kept]
        for ident in stale:
            self._drop(ident)
        return len(stale)

    def _drop(self, ident: str) -> None:
        del self.entries[ident], self.holders[ident], self.generations[ident]

    def remove_for_devices(self, device_ids: Sequence[str]) -> int:
        """Drop the entries these devices hold."""
        wanted = set(device_ids)
        gone = [i for i, h in self.holders.items() if h in wanted]
        for ident in gone:
            self._drop(ident)
        return len(gone)

    def remove_entries(self, entry_ids: Sequence[str]) -> int:
        """Drop these entries (those that exist)."""
        gone = [i for i in entry_ids if i in self.entries]
        for ident in gone:
            self._drop(ident)
        return len(gone)

    def get(self, entry_id: str) -> RiskEntry | None:
        """One entry with its acceptances."""
        entry = self.entries.get(entry_id)
        return self._with_acceptances(entry) if entry else None

    def _matching(self, org_path: str, where: EntryFilter, now: float) -> list[RiskEntry]:
        scope = where.org_path if where.org_path and under(where.org_path, org_path) \
            else org_path
        found = []
        for entry in self.entries.values():
            if not under(entry.org_path, scope):
                continue
            full = self._with_acceptances(entry)
            if matches(full, where, now, full.accepted):
                found.append(full)
        return sorted(found, key=_order)

    def page(self, *, org_path: str, where: EntryFilter, after: Cursor | None,
             limit: int, now: float) -> list[RiskEntry]:
        """By score down, then id."""
        found = self._matching(org_path, where, now)
        if after is not None:
            found = [e for e in found if _order(e) > (-after[0], after[1])]
        return found[:limit]

    def count(self, *, org_path: str, where: EntryFilter, now: float) -> int:
        """How many match."""
        return len(self._matching(org_path, where, now))

    def iter_entries(self, *, org_path: str, where: EntryFilter, now: float
                     ) -> Iterator[RiskEntry]:
        """Every match in page order."""
        yield from self._matching(org_path, where, now)

    def factor_counts(self, *, org_path: str, now: float
                      ) -> tuple[int, dict[str, int], dict[str, int]]:
        """Entries, visible hits per factor and per severity."""
        total, by_factor, by_severity = 0, {}, {}  # type: tuple[int, dict[str, int], dict[str, int]]
        for entry in self._matching(org_path, EntryFilter(), now):
            total += 1
            for hit in entry.visible(now):
                by_factor[hit.factor.value] = by_factor.get(hit.factor.value, 0) + 1
                by_severity[hit.severity.label] = by_severity.get(hit.severity.label, 0) + 1
        return total, by_factor, by_severity

    def set_score(self, entry_id: str, score: int) -> None:
        """Replace the score."""
        if entry_id in self.entries:
            self.entries[entry_id] = replace(self.entries[entry_id], score=score)

    def accept(self, acceptance: Acceptance) -> None:
        """Store (replace) an acceptance."""
        self.acceptances[(acceptance.entry_id, acceptance.factor.value)] = acceptance

    def live_acceptances(self, now: float) -> list[Acceptance]:
        """Unexpired acceptances."""
        return [a for a in self.acceptances.values() if a.live(now)]

    def with_expired_acceptances(self, now: float, *, since: float) -> list[str]:
        """Entries an acceptance hid until a time in (since, now]."""
        return sorted({a.entry_id for a in self.acceptances.values()
                       if since < a.expires_at <= now})

    def start_rebuild(self, at: float) -> int:
        """The next number."""
        number = max(self.rebuilds, default=0) + 1
        self.rebuilds[number] = at
        return number

    def current_generation(self) -> int:
        """The newest rebuild's number."""
        return max(self.rebuilds, default=0)

    def finish_rebuild(self, generation: int, at: float,
                       counts: Mapping[str, Mapping[str, int]]) -> None:
        """Keep the counts."""
        self.finished[generation] = (at, {p: dict(k) for p, k in counts.items()})

    def trend(self, *, org_path: str, limit: int) -> list[TrendPoint]:
        """Sums under the path of the last rebuilds, oldest first."""
        points = []
        for number in sorted(self.finished)[-limit:]:
            at, counts = self.finished[number]
            summed: dict[str, int] = {}
            for path, keys in counts.items():
                if under(path, org_path):
                    for key, n in keys.items():
                        summed[key] = summed.get(key, 0) + n
            points.append(TrendPoint(number, at, summed))
        return points


@dataclass
class ListedDiscovery:
    """A ``discovery.ports.DiscoveryReader`` over lists (until the real one is wired)."""

    assets: list[DiscoveredAsset] = field(default_factory=list)
    seen_devices: list[DeviceSeen] = field(default_factory=list)
    seen_credentials: list[CredentialSeen] = field(default_factory=list)

    def iter_assets(self, *, org_path: str) -> Iterator[DiscoveredAsset]:
        """The assets under ``org_path``."""
        return (a for a in self.assets if under(a.org_path, org_path))

    def iter_devices_seen(self, *, org_path: str) -> Iterator[DeviceSeen]:
        """The devices seen under ``org_path``."""
        return (d for d in self.seen_devices if under(d.org_path, org_path))

    def iter_credentials_seen(self, *, org_path: str) -> Iterator[CredentialSeen]:
        """The credentials seen under ``org_path``."""
        return (c for c in self.seen_credentials if under(c.org_path, org_path))

    def devices_seen(self, *, org_path: str, device_ids: Sequence[str]) -> list[DeviceSeen]:
        """These devices' presence under ``org_path``."""
        return [d for d in self.iter_devices_seen(org_path=org_path)
                if d.device_id in device_ids]

    def credentials_seen(self, *, org_path: str,
                         keys: Sequence[tuple[IdentifierKind, str]]) -> list[CredentialSeen]:
        """The credentials of ``keys`` under ``org_path``."""
        return [c for c in self.iter_credentials_seen(org_path=org_path)
                if (c.kind, c.value) in keys]


@dataclass
class FixedChannels:
    """A ``risk.ports.FleetSettings`` that answers what it was given."""

    value: FleetChannels = field(default_factory=lambda: FleetChannels(True, ("webhook",)))

    def channels(self) -> FleetChannels:
        """The channels given."""
        return self.value
