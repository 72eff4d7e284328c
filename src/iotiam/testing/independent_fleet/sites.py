"""Sites of the independent fleet: where devices live, in which time zone, on which network.

Every site is a /16 of 10.0.0.0/8 reached over a site-to-site VPN, so the broker and
the flow exporter see private addresses. Each archetype has its own VLAN (the third
octet) and DHCP scope; a site runs its own DNS resolver and, at some sites, an NTP
server (others use a public one). Winter dates are used, so Berlin is UTC+1,
Helsinki UTC+2 and Newark UTC-5.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Site:
    """A plant, store or warehouse: a zone, a network and its working week."""

    name: str
    zone: str
    #: the second octet of the site's 10.x.0.0/16
    octet: int
    #: whether the shift-only staff also works on Saturdays
    saturday_shift: bool
    #: the site's own NTP server, or None for the public one
    local_ntp: bool

    @cached_property
    def tz(self) -> ZoneInfo:
        """The site's zone."""
        return ZoneInfo(self.zone)

    def address(self, vlan: int, host: int) -> str:
        """An address on the site's network; ``host`` may run past 255 into the next /24."""
        return f"10.{self.octet}.{vlan + host // 256}.{host % 256}"

    @property
    def resolver(self) -> str:
        """The site's DNS resolver."""
        return f"10.{self.octet}.0.53"

    @property
    def ntp_server(self) -> str:
        """Where the site's devices take their time from."""
        return f"10.{self.octet}.0.123" if self.local_ntp else PUBLIC_NTP

    def local(self, at: float) -> datetime:
        """``at`` as the site's wall-clock time."""
        return datetime.fromtimestamp(at, self.tz)

    def at_local(self, day: date, hour: float) -> float:
        """Epoch seconds of ``hour`` (fractional) on the local ``day``."""
        whole = int(hour)
        minute = round((hour - whole) * 60)
        moment = datetime(day.year, day.month, day.day, tzinfo=self.tz) + timedelta(
            hours=whole, minutes=minute)
        return moment.timestamp()

    def days(self, start: float, end: float) -> list[date]:
        """Local dates touched by ``[start, end)``, one day of margin either side."""
        first = self.local(start).date() - timedelta(days=1)
        last = self.local(end).date() + timedelta(days=1)
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def works_on(self, day: date) -> bool:
        """Whether shift staff work on the local ``day``."""
        weekday = day.weekday()
        return weekday < 5 or (weekday == 5 and self.saturday_shift)


PUBLIC_NTP = "162.159.200.1"

SITES = (
    Site("berlin-plant", "Europe/Berlin", 1, saturday_shift=True, local_ntp=False),
    Site("helsinki-depot", "Europe/Helsinki", 2, saturday_shift=False, local_ntp=True),
    Site("newark-warehouse", "America/New_York", 3, saturday_shift=False, local_ntp=False),
)
