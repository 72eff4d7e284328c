"""Auth-failure bursts: many refused connection attempts in a minute, per identity and per
source address.

Per identity (device id, else the MQTT client id) catches guessing one device's
credentials from anywhere; per source IP catches one host trying many identities
(credential stuffing), each of which fails only once or twice. A device retrying
with an expired certificate fails every half minute or so: under the threshold.

Stuffing paced under the burst threshold is still one address naming many identities:
per source address, the distinct client ids (or device ids) that failed in the last ten
minutes are counted too, whether or not they exist in the inventory. The managed
broker's own auth failures carry only the address: they count in the burst per
address, not in the spread.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Cooldown, Window
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity

WINDOW_SECONDS = 60.0
MIN_FAILURES = 6
MANY_FAILURES = 30
#: the slow view per address: this many distinct identities failing within this long
SPREAD_WINDOW_SECONDS = 600.0
MIN_SPREAD = 8
MANY_SPREAD = 30
#: the identities a finding names (the count is complete)
NAMED_IDENTITIES = 20
_PRUNE_AT = 50_000


class AuthFailureBurst:
    """Connection attempts refused (Device Defender ``aws:num-connection-attempts`` that
    failed) in bursts."""

    name = "auth_failure_burst"
    kinds = frozenset({EventKind.AUTH_FAILURE})

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 600.0) -> None:
        self.learning_seconds = learning_seconds
        self._windows: dict[str, Window] = {}
        self._allow: dict[str, int] = {}
        #: the largest window of each key's bursts, for ``forgive`` (the finding only
        #: knows the count when it was raised)
        self._peaks: dict[str, int] = {}
        self._cooldown = Cooldown(cooldown)
        #: address -> identity -> when it last failed from there, oldest first
        self._spread: dict[str, OrderedDict[str, float]] = {}

    def learn(self, event: Event) -> None:
        """Nothing to learn per event: the threshold is absolute, widened by ``forgive``."""

    def __call__(self, event: Event) -> list[Finding]:
        """Findings for the identity and the source address whose window crossed."""
        at = event.at
        identity = event.device_id or event.client_id
        keys = []
        if identity is not None:
            keys.append(("identity", identity))
        if event.source_ip is not None:
            keys.append(("source_ip", event.source_ip))
        if len(self._windows) > _PRUNE_AT:
            self._windows = {k: w for k, w in self._windows.items() if len(w) > 1}
        findings = []
        for scope, value in keys:
            key = f"{scope}:{value}"
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = Window(WINDOW_SECONDS)
            window.add(at, event.client_id or event.device_id)
            threshold = MIN_FAILURES + self._allow.get(key, 0)
            if len(window) < threshold:
                continue
            self._peaks[key] = max(self._peaks.get(key, 0), len(window))
            severity = Severity.HIGH if len(window) >= MANY_FAILURES else Severity.MEDIUM
            if not self._cooldown.ready(key, at, severity):
                continue
            clients = window.distinct()
            # one address after one device's credentials: the finding is about the device
            by_identity = scope == "identity" or (len(clients) == 1
                                                  and event.device_id is not None)
            findings.append(Finding(
                FindingType.AUTH_FAILURE_BURST,
                severity, at, event.device_id if by_identity else None,
                f"{len(window)} failed connection attempts in {WINDOW_SECONDS:.0f} s "
                + (f"for {value}" if by_identity else
                   f"from {value} ({len(clients)} identities)"),
                self.name,
                {"metric": "aws:num-connection-attempts", "scope": scope, "key": value,
                 "failures": len(window), "identities": len(clients),
                 "source_ip": event.source_ip, "client_id": event.client_id,
                 "window_s": WINDOW_SECONDS, "threshold": threshold},
                event.device_type if by_identity else None))
        if identity is not None and event.source_ip is not None:
            findings.extend(self._spread_of(event.source_ip, identity, at))
        return findings

    def _spread_of(self, source_ip: str, identity: str, at: float) -> list[Finding]:
        """The slow, address-keyed view: distinct identities failing from one address."""
        seen = self._spread.get(source_ip)
        if seen is None:
            if len(self._spread) > _PRUNE_AT:
                horizon = at - SPREAD_WINDOW_SECONDS
                self._spread = {k: v for k, v in self._spread.items()
                                if next(reversed(v.values())) >= horizon}
            seen = self._spread[source_ip] = OrderedDict()
        new = identity not in seen
        seen[identity] = at
        seen.move_to_end(identity)
        horizon = at - SPREAD_WINDOW_SECONDS
        while seen and next(iter(seen.values())) < horizon:
            seen.popitem(last=False)
        key = f"source_identities:{source_ip}"
        threshold = MIN_SPREAD + self._allow.get(key, 0)
        if not new or len(seen) < threshold:
            return []
        self._peaks[key] = max(self._peaks.get(key, 0), len(seen))
        severity = Severity.HIGH if len(seen) >= MANY_SPREAD else Severity.MEDIUM
        # one episode with the burst view of the same address
        if not self._cooldown.ready(f"source_ip:{source_ip}", at, severity):
            return []
        named = list(seen)[-NAMED_IDENTITIES:]
        return [Finding(
            FindingType.AUTH_FAILURE_BURST, severity, at, None,
            f"{len(seen)} identities failed to connect from {source_ip} within "
            f"{SPREAD_WINDOW_SECONDS / 60:.0f} min (credential stuffing?)",
            self.name,
            {"metric": "aws:num-connection-attempts", "scope": "source_identities",
             "key": source_ip, "source_ip": source_ip, "identities": len(seen),
             "client_ids": sorted(named),
             "window_s": SPREAD_WINDOW_SECONDS, "threshold": threshold})]

    def forgive(self, finding: Finding) -> None:
        """That many failures (or identities) from this identity or address are normal
        from now on."""
        scope = finding.evidence.get("scope")
        key = f"{scope}:{finding.evidence.get('key')}"
        if scope in ("source_identities", "source_ip"):
            # a burst from many identities at one address that was normal makes that
            # many identities failing there normal too
            spread = f"source_identities:{finding.evidence.get('key')}"
            seen = max(int(finding.evidence.get("identities", 0)), self._peaks.get(spread, 0))
            if seen >= MIN_SPREAD:
                self._allow[spread] = max(self._allow.get(spread, 0), seen - MIN_SPREAD + 1)
            if scope == "source_identities":
                return
        failures = max(int(finding.evidence.get("failures", MIN_FAILURES)),
                       self._peaks.get(key, 0))
        self._allow[key] = max(self._allow.get(key, 0), failures - MIN_FAILURES + 1)

    def snapshot(self) -> dict[str, Any]:
        """Taught allowances (windows are seconds long and refill)."""
        return {"allow": dict(self._allow)}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot``."""
        self._allow = {k: int(v) for k, v in state.get("allow", {}).items()}
