"""Overview: the fleet at a glance, drawn from the same summaries the API answers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from iotiam.audit.activity import ActivityKind, ActivitySeries
from iotiam.web.console import Signed, Wired, render

router = APIRouter(include_in_schema=False)

#: open findings counted for the overview (the newest ones; the page says so)
FINDINGS_SCANNED = 1000
SEVERITIES = ("critical", "high", "medium", "low")
#: sites drawn on the overview (the most populated; the rest summed as one bar)
SITES_SHOWN = 12
#: the bar of the devices with no site, and of the sites beyond ``SITES_SHOWN``
NO_SITE, OTHER_SITES = "(no site)", "(other sites)"


@dataclass(frozen=True)
class Bar:
    """One bar of a server-drawn chart."""

    label: str
    count: int
    #: the bar's length in the SVG's 0..300 user units
    length: int
    #: a link to the rows behind the bar, when there is a page for them
    href: str | None = None


def bars(counts: dict[str, int], order: tuple[str, ...] = (),
         href: dict[str, str] | None = None) -> list[Bar]:
    """Bars for a chart, longest first unless an order is given."""
    keys = [k for k in order if k in counts] + sorted(
        (k for k in counts if k not in order), key=lambda k: (-counts[k], k))
    top = max(counts.values(), default=0) or 1
    return [Bar(k, counts[k], round(300 * counts[k] / top), (href or {}).get(k))
            for k in keys]


def by_site(counts: dict[str, int]) -> tuple[dict[str, int], dict[str, str]]:
    """The most populated sites (``""``: none), the others summed, and their links."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = {(site or NO_SITE): n for site, n in ranked[:SITES_SHOWN]}
    rest = sum(n for _, n in ranked[SITES_SHOWN:])
    if rest:
        shown[OTHER_SITES] = rest
    links = {(site or NO_SITE): f"/console/devices?{urlencode({'site': site})}"
             for site, _ in ranked[:SITES_SHOWN] if site}
    return shown, links


@dataclass(frozen=True)
class DayBar:
    """One day's column of a server-drawn chart over time."""

    day: date
    #: what the column sums, in the order of the chart's table columns
    parts: tuple[int, ...]
    #: the column's height in the SVG's 0..100 user units
    height: int

    @property
    def count(self) -> int:
        """The column's value."""
        return sum(self.parts)


def day_bars(days: Sequence[date], *series: Sequence[int]) -> list[DayBar]:
    """A column per day, each the sum of the series' counts that day."""
    parts = [tuple(s[n] for s in series) for n in range(len(days))]
    top = max((sum(p) for p in parts), default=0) or 1
    return [DayBar(day, p, round(100 * sum(p) / top)) for day, p in zip(days, parts,
                                                                        strict=True)]


def activity_charts(activity: ActivitySeries) -> tuple[list[DayBar], list[DayBar]]:
    """The overview's two charts over time: enrollments (first ones and renewals) and
    revocations (every credential revoked), from the daily tallies."""
    return (day_bars(activity.days, activity.of(ActivityKind.ENROLLMENT),
                     activity.of(ActivityKind.REENROLLMENT)),
            day_bars(activity.days, activity.of(ActivityKind.REVOCATION)))


@router.get("/")
def overview(request: Request, session: Signed, svc: Wired) -> Response:
    """Devices by state, type, site and credential status; presence; findings;
    expiring; enrollments and revocations over time."""
    caller = session.principal
    summary = svc.inventory.summary(caller, rotation_age=svc.settings.rotation_age)
    register = svc.risk.summary(caller)
    open_findings = svc.response.list_findings(caller, state="open", limit=FINDINGS_SCANNED)
    severity = Counter(f.finding.severity.label for f in open_findings)
    states = {s: f"/console/devices?state={s}" for s in summary.by_state}
    types = {t: f"/console/devices?type={t}" for t in summary.by_type}
    credentials = {c: f"/console/devices?credential={c}" for c in summary.by_credential_status}
    sites, site_links = by_site(summary.by_site)
    enrollments, revocations = activity_charts(svc.activity.series(caller))
    return render(
        request, session, "overview.html", summary=summary, register=register,
        by_state=bars(summary.by_state, href=states), by_type=bars(summary.by_type, href=types),
        by_credential=bars(summary.by_credential_status, href=credentials),
        by_site=bars(sites, href=site_links),
        presence=bars({"managed": register.managed, "unmanaged": register.unmanaged,
                       "dormant": register.dormant, "zombie": register.zombie},
                      order=("managed", "unmanaged", "dormant", "zombie")),
        by_severity=bars({s: severity.get(s, 0) for s in SEVERITIES}, order=SEVERITIES),
        findings_capped=len(open_findings) == FINDINGS_SCANNED,
        expiring=summary.by_credential_status.get("expiring", 0),
        enrollments=enrollments, revocations=revocations)
