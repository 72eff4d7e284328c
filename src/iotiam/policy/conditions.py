"""Statement conditions: what they say, how they are evaluated, when their answer changes.

A condition answers True, False or None ("cannot tell": no site time zone, no source
address, no trust score …). Unknown always fails closed: an allow needs every
condition True; a deny applies unless some condition is False.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from iotiam.inventory.models import DeviceState

if TYPE_CHECKING:
    from iotiam.policy.models import RequestContext, Site, Subject

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 86400
SITE_OF_DEVICE = "${device.site}"
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TimeWindow:
    """Days of the week and a local time range; ``end < start`` runs past midnight.

    A window that runs past midnight belongs to the day it starts on: ``fri 22:00-06:00``
    includes Saturday 05:00. ``timezone`` None means the device's site time zone.
    """

    days: tuple[int, ...]  # 0 = Monday
    start: int  # seconds after local midnight, 0 ≤ start < 86400
    end: int  # 0 < end ≤ 86400 (24:00), end != start
    timezone: str | None = None

    def contains(self, local: datetime) -> bool:
        """Whether the local (zone-aware) instant is inside the window."""
        second = local.hour * 3600 + local.minute * 60 + local.second
        day = local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= second < self.end
        if second >= self.start:
            return day in self.days
        return second < self.end and (day - 1) % 7 in self.days

    def to_dict(self) -> dict[str, Any]:
        """The document form."""
        data: dict[str, Any] = {
            "days": [DAYS[d] for d in self.days],
            "start": clock_text(self.start),
            "end": clock_text(self.end),
        }
        if self.timezone:
            data["timezone"] = self.timezone
        return data


def clock_text(seconds: int) -> str:
    """``HH:MM`` (``24:00`` for the end of the day)."""
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


@dataclass(frozen=True)
class Conditions:
    """Every condition of a statement; all must hold. Empty fields are not checked."""

    time_window: TimeWindow | None = None
    #: CIDRs, names of known site networks, or ``${device.site}`` (the device's own site)
    source_networks: tuple[str, ...] = ()
    min_trust_score: float | None = None
    trust_score_below: float | None = None
    firmware_compliant: bool | None = None
    device_states: tuple[DeviceState, ...] = ()
    attribute_equals: tuple[tuple[str, str], ...] = ()
    attribute_in: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def empty(self) -> bool:
        """No condition at all."""
        return self == _NONE

    def to_dict(self) -> dict[str, Any]:
        """The document form (only the conditions set)."""
        data: dict[str, Any] = {}
        if self.time_window:
            data["time_window"] = self.time_window.to_dict()
        if self.source_networks:
            data["source_networks"] = list(self.source_networks)
        if self.min_trust_score is not None:
            data["min_trust_score"] = self.min_trust_score
        if self.trust_score_below is not None:
            data["trust_score_below"] = self.trust_score_below
        if self.firmware_compliant is not None:
            data["firmware_compliant"] = self.firmware_compliant
        if self.device_states:
            data["device_state"] = [str(s) for s in self.device_states]
        if self.attribute_equals:
            data["attribute_equals"] = dict(self.attribute_equals)
        if self.attribute_in:
            data["attribute_in"] = {k: list(v) for k, v in self.attribute_in}
        return data


_NONE = Conditions()


# -- evaluation ---------------------------------------------------------------------------

Answer = bool | None
CheckFn = Callable[["Subject", "RequestContext", "Site | None"], Answer]


@dataclass(frozen=True, slots=True)
class Check:
    """One compiled condition: a name for explanations and the function answering it."""

    name: str
    answer: CheckFn


def zone_for(window: TimeWindow, site: Site | None) -> ZoneInfo | None:
    """The zone a window is read in: its own, else the device's site's, else unknown."""
    if window.timezone:
        return ZoneInfo(window.timezone)
    return site.zone if site is not None else None


def compile_conditions(conditions: Conditions, sites: Mapping[str, Site]) -> tuple[Check, ...]:
    """The checks of ``conditions``, with named site networks resolved from ``sites``."""
    checks: list[Check] = []
    window = conditions.time_window
    if window is not None:
        fixed_zone = ZoneInfo(window.timezone) if window.timezone else None

        def in_window(subject: Subject, ctx: RequestContext, site: Site | None) -> Answer:
            zone = fixed_zone or (site.zone if site is not None else None)
            return None if zone is None else window.contains(ctx.at.astimezone(zone))

        checks.append(Check("time_window", in_window))
    if conditions.source_networks:
        checks.append(Check("source_networks",
                            _source_check(conditions.source_networks, sites)))
    if conditions.min_trust_score is not None:
        floor = conditions.min_trust_score

        def trusted(subject: Subject, ctx: RequestContext, site: Site | None) -> Answer:
            score = ctx.trust_score if ctx.trust_score is not None else subject.trust_score
            return None if score is None else score >= floor

        checks.append(Check("min_trust_score", trusted))
    if conditions.trust_score_below is not None:
        ceiling = conditions.trust_score_below

        def distrusted(subject: Subject, ctx: RequestContext, site: Site | None) -> Answer:
            score = ctx.trust_score if ctx.trust_score is not None else subject.trust_score
            return None if score is None else score < ceiling

        checks.append(Check("trust_score_below", distrusted))
    if conditions.firmware_compliant is not None:
        wanted = conditions.firmware_compliant

        def firmware(subject: Subject, ctx: RequestContext, site: Site | None) -> Answer:
            known = ctx.firmware_compliant
            if known is None:
                known = subject.firmware_compliant
            return None if known is None else known is wanted

        checks.append(Check("firmware_compliant", firmware))
    if conditions.device_states:
        states = frozenset(conditions.device_states)
        checks.append(Check("device_state", lambda s, c, site: s.state in states))
    for key, value in conditions.attribute_equals:
        checks.append(Check(f"attribute_equals.{key}", _attribute_check(key, frozenset({value}))))
    for key, values in conditions.attribute_in:
        checks.append(Check(f"attribute_in.{key}", _attribute_check(key, frozenset(values))))
    return tuple(checks)


def _attribute_check(key: str, accepted: frozenset[str]) -> CheckFn:
    def check(subject: Subject, ctx: RequestContext, site: Site | None) -> Answer:
        value = subject.attributes.get(key)
        return value is not None and value in accepted

    return check


def network_masks(networks: Iterable[IpNetwork]) -> tuple[tuple[int, int, int], ...]:
    """(version, network as int, netmask as int) per network: membership in integer ops."""
    return tuple((n.version, int(n.network_address), int(n.netmask)) for n in networks)


def in_networks(version: int, value: int, masks: tuple[tuple[int, int, int], ...]) -> bool:
    """Whether the address (version, int value) is inside any of ``masks``."""
    for net_version, network, mask in masks:
        if net_version == version and value & mask == network:
            return True
    return False


def _source_check(entries: tuple[str, ...], sites: Mapping[str, Site]) -> CheckFn:
    fixed: list[IpNetwork] = []
    own_site = False
    for entry in entries:
        if entry == SITE_OF_DEVICE:
            own_site = True
        elif entry in sites:
            fixed.extend(sites[entry].networks)
        elif "/" in entry or ":" in entry or entry[:1].isdigit():
            fixed.append(ipaddress.ip_network(entry, strict=False))
        # a site name unknown at compile time matches nothing (validated at write time)
    masks = network_masks(fixed)

    def check(subject: Subject, ctx: RequestContext, site: Site | None) -> Answer:
        address = ctx.source_ip
        if address is None:
            return None
        version, value = address.version, int(address)
        if in_networks(version, value, masks):
            return True
        return own_site and site is not None and in_networks(version, value, site.masks)

    return check


# -- when the answer changes --------------------------------------------------------------


def next_window_change(window: TimeWindow, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first instant after ``after`` at which ``window.contains`` changes, or None.

    The answer depends on the local weekday and time of day, so it can change only where
    the local clock passes a window edge or midnight, or where it jumps (DST). Those
    instants are the candidates; the first whose answer differs is the exact change.
    """
    inside = window.contains(after.astimezone(zone))
    first_day = after.astimezone(zone).date()
    edges = sorted({0, window.start, window.end % DAY_SECONDS})
    candidates: set[datetime] = set()
    for offset in range(9):  # a week plus the days a window may spill into
        day = first_day + timedelta(days=offset)
        for edge in edges:
            naive = datetime.combine(day, time()) + timedelta(seconds=edge)
            for fold in (0, 1):  # both readings of an ambiguous (DST fall-back) time
                instant = naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)
                if instant > after:
                    candidates.add(instant)
    previous = after
    for instant in sorted(candidates):
        jump = _offset_change(zone, previous, instant)
        if jump is not None and window.contains(jump.astimezone(zone)) != inside:
            return jump
        if window.contains(instant.astimezone(zone)) != inside:
            return instant
        previous = instant
    return None


def _offset_change(zone: ZoneInfo, lo: datetime, hi: datetime) -> datetime | None:
    """The first instant in (lo, hi] with a UTC offset other than at ``lo`` (1 s precision)."""
    before = lo.astimezone(zone).utcoffset()
    if hi.astimezone(zone).utcoffset() == before:
        return None
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    # zone transitions fall on whole seconds: the one in (lo, hi] is the first after lo
    whole = lo.replace(microsecond=0) + timedelta(seconds=1)
    return whole if whole <= hi and whole.astimezone(zone).utcoffset() != before else hi
