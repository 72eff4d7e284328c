"""From a planned network (and what iotiam issued its fleet) to observed records and
the truth: who each observed thing really is, and which risks each identity carries."""

from __future__ import annotations

import bisect
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from iotiam.testing.synthetic_network import (
    AS_OF,
    DAY,
    SITES,
    CertInfo,
    Device,
    Network,
    Record,
    day_time,
    digest_hex,
)

#: nmap scans each site on these days
SCAN_DAYS = (48, 55)
DHCP_KIND = {name: kind for name, _, kind in SITES}
PORTS = {"Espressif": (80, 1883), "Raspberry Pi Foundation": (22, 80, 1883),
         "Hangzhou Hikvision": (80, 554, 8000), "Siemens AG": (102, 502),
         "Axis Communications": (80, 443, 554)}


@dataclass(frozen=True)
class Issued:
    """What iotiam issued a registered device (filled in by registration)."""

    cert: CertInfo | None = None
    psk_identity: str | None = None


@dataclass
class Truth:
    """Who every observed thing is, and the risks seeded on each identity."""

    network: Network
    records: list[Record]
    issued: dict[str, Issued] = field(default_factory=dict)
    #: (site, ip) -> sorted [(first_seen, last_seen, label)] of who held it when
    _holders: dict[tuple[str, str], list[tuple[float, float, str]]] = field(
        default_factory=dict)

    def keys(self, label: str) -> set[str]:
        """Values that name identity ``label`` in an asset or a risk entry (never an IP)."""
        device = self.network.devices[label]
        found = {label} if device.registered else set()
        cert = self.issued.get(label, Issued()).cert if device.registered else device.cert
        psk = (self.issued.get(label, Issued()).psk_identity if device.registered
               else device.psk_identity)
        if cert is not None:
            found |= {cert.sha256, cert.serial, f"{cert.issuer}|{cert.serial}"}
        found |= {v for v in (psk, device.client_id, device.mac) if v}
        if device.hostname:
            found |= {device.hostname, f"{device.hostname}.{device.site}.example.net"}
        return found

    def owners(self) -> dict[str, set[str]]:
        """Every identifying value -> the identities it names (two for a shared one)."""
        index: dict[str, set[str]] = defaultdict(set)
        for label in self.network.devices:
            for key in self.keys(label):
                index[key].add(label)
        return dict(index)

    def holder(self, site: str | None, ip: str, first: float, last: float) -> set[str]:
        """Who held ``ip`` at ``site`` at some time between ``first`` and ``last``."""
        if not self._holders:
            spans: dict[tuple[str, str], list[tuple[float, float, str]]] = defaultdict(list)
            for record in self.records:
                clone = (record.unmanaged or "").startswith("clone:")
                who = record.unmanaged or record.registered
                if record.ip and who and not clone:
                    day = int((record.seen_at - day_time(0, 0)) // DAY)
                    spans[(record.site, record.ip)].append(
                        (day_time(day, 0), day_time(day + 1, 0), who))
            self._holders = {k: sorted(set(v)) for k, v in spans.items()}
        found: set[str] = set()
        sites = [site] if site is not None else [s[0] for s in SITES]
        for spans_at in (self._holders.get((s, ip), []) for s in sites):
            start = bisect.bisect_left(spans_at, (first - DAY, 0.0, ""))
            for begin, end, who in spans_at[start:]:
                if begin > last:
                    break
                if end >= first:
                    found.add(who)
        return found

    def groups(self) -> dict[str, str]:
        """Identity -> its group: a shared-credential pair is one group, others alone."""
        return {label: min(label, d.shares_with) if d.shares_with else label
                for label, d in self.network.devices.items()}

    def risks(self) -> dict[str, set[str]]:
        """Identity -> the risk factors seeded on it."""
        return {label: set(d.risks) for label, d in self.network.devices.items() if d.risks}

    def observed_unmanaged(self) -> set[str]:
        """The unmanaged devices some record shows."""
        return {r.unmanaged for r in self.records
                if r.unmanaged and not r.unmanaged.startswith("clone:")}

    def counts(self) -> dict[str, int]:
        """Headline counts: devices, records per source, seeded risks per factor."""
        devices = self.network.devices.values()
        out: dict[str, int] = Counter(f"records.{r.source}" for r in self.records)
        out["records"] = len(self.records)
        out["registered"] = sum(d.registered for d in devices)
        out["unmanaged"] = sum(not d.registered for d in devices)
        out["unmanaged.observed"] = len(self.observed_unmanaged())
        for d in devices:
            for factor in d.risks:
                out[f"risk.{factor}"] += 1
            if d.registered:
                out[f"fate.{d.fate}"] += 1
        return dict(out)


def observations(network: Network, issued: dict[str, Issued]) -> Truth:
    """Every record the evidence files will hold, in a stable order, with the truth."""
    # reproducible by seed on purpose: this is test data, never a secret
    rng = random.Random(network.seed * 7919 + 1)  # noqa: S311
    records: list[Record] = []
    for device in network.devices.values():
        records.extend(_device_records(rng, device, issued.get(device.label, Issued())))
    records.extend(_scans(rng, network))
    records.extend(_cmdb(network))
    records.sort(key=lambda r: (r.file, r.seen_at, r.ip or "", r.mac or "", r.event))
    return Truth(network=network, records=records, issued=dict(issued))


def _who(device: Device) -> tuple[str | None, str | None]:
    """(registered, unmanaged): the truth of what ``device`` is."""
    return (device.label, None) if device.registered else (None, device.label)


def _device_records(rng: random.Random, device: Device, issued: Issued) -> Iterator[Record]:
    cert = issued.cert if device.registered else device.cert
    psk = issued.psk_identity if device.registered else device.psk_identity
    who = _who(device)
    for day, ip in device.presence:
        site = device.site
        if device.dhcp:
            yield _lease(rng, device, day, ip, who)
        for _ in range(rng.randint(1, 2)):
            yield Record(source="zeek", file=f"zeek-{site}", event="conn", site=site,
                         seen_at=day_time(day, rng.uniform(7, 21)), ip=ip, registered=who[0],
                         unmanaged=who[1])
        hour = rng.uniform(7, 21)
        if device.credential == "cert" and cert is not None:
            yield Record(source="suricata", file=f"eve-{site}", event="tls", site=site,
                         seen_at=day_time(day, hour), ip=ip, cert=cert, registered=who[0],
                         unmanaged=who[1])
            if device.cloned:
                # the same certificate from a second address at once: a cloned device
                host = 1 + int(digest_hex(device.label), 16) % 250
                other = f"10.{200 + len(device.label) % 50}.9.{host}"
                yield Record(source="suricata", file=f"eve-{site}", event="tls", site=site,
                             seen_at=day_time(day, hour + 0.05), ip=other, cert=cert,
                             registered=device.label, unmanaged=f"clone:{device.label}")
        elif device.credential == "mqtt" and device.client_id:
            yield Record(source="suricata", file=f"eve-{site}", event="mqtt", site=site,
                         seen_at=day_time(day, hour), ip=ip, client_id=device.client_id,
                         registered=who[0],
                         unmanaged=who[1])
        elif device.credential == "psk" and psk:
            yield Record(source="jsonl", file="broker-psk", event="sighting", site=site,
                         seen_at=day_time(day, hour), ip=ip, psk_identity=psk,
                         client_id=device.label if device.registered else None, registered=who[0],
                         unmanaged=who[1])
        if device.credential in ("cert", "mqtt") and rng.random() < 0.5:
            yield Record(source="suricata", file=f"eve-{site}", event="flow", site=site,
                         seen_at=day_time(day, hour + 0.01), ip=ip, registered=who[0],
                         unmanaged=who[1])


def _lease(rng: random.Random, device: Device, day: int, ip: str,
           who: tuple[str | None, str | None]) -> Record:
    kind = DHCP_KIND[device.site]
    file = f"dhcpd-{device.site}" if kind == "dhcpd" else f"dnsmasq-{device.site}-d{day:02d}"
    return Record(source=kind, file=file, event="lease", site=device.site,
                  seen_at=day_time(day, 6 + rng.uniform(0, 0.9)), ip=ip, mac=device.mac,
                  hostname=device.hostname, registered=who[0],
                         unmanaged=who[1])


def _scans(rng: random.Random, network: Network) -> Iterator[Record]:
    """nmap on the local segment: every host up answers with its IP and MAC."""
    for device in network.devices.values():
        for day, ip in device.presence:
            if day not in SCAN_DAYS or not device.dhcp or rng.random() > 0.85:
                continue
            yield Record(source="nmap", file=f"nmap-{device.site}-d{day}", event="host",
                         site=device.site, seen_at=day_time(day, 2), ip=ip, mac=device.mac,
                         hostname=(f"{device.hostname}.{device.site}.example.net"
                                   if device.hostname else None),
                         vendor=device.vendor, open_ports=PORTS[device.vendor],
                         registered=_who(device)[0], unmanaged=_who(device)[1])


def _cmdb(network: Network) -> Iterator[Record]:
    """The asset database knows some boxes by hostname, MAC and a serial number."""
    for device in network.devices.values():
        if device.in_cmdb and device.mac:
            yield Record(source="cmdb", file="cmdb", event="row", site=device.site,
                         seen_at=AS_OF, mac=device.mac, hostname=device.hostname,
                         vendor=device.vendor, model=device.model,
                         registered=_who(device)[0], unmanaged=_who(device)[1])


__all__ = ["SCAN_DAYS", "Issued", "Truth", "observations"]
