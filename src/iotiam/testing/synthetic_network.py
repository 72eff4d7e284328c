"""A seeded synthetic site network: a registered fleet, 2-5x as many unmanaged devices,
and the truth a discovery test scores reconciliation against.

The plan is pure data made from one ``random.Random(seed)``: the same seed gives the same
devices, addresses, foreign certificates and days of presence. Registering the fleet
(``synthetic_fleet``) adds what iotiam issues; ``observations`` then turns the plan into
records, one per line or element the evidence files will hold
(``synthetic_formats`` writes them), each naming who it really is.

Traps a reconciler must not fall into, each seeded on purpose:
- DHCP churn: an address is handed to another device after its holder leaves, so the
  same IP belongs to different devices on different days (never within
  ``IP_REUSE_GAP_DAYS`` of each other, so a matcher that bounds IP by time is never
  ambiguous, and one that does not merges strangers);
- dormant devices registered with the ``ip`` attribute of an address later reused;
- one foreign certificate or PSK identity on two unmanaged devices, and a registered
  device's certificate used from a second place at the same time.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

#: the installation's frozen clock in ``tests/conftest.py``: the fleet is registered then
REGISTERED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()
#: midnight after registration: day 0 of the evidence
DAY0 = REGISTERED_AT + 12 * 3600
DAY = 86400.0
#: dormant devices are seen on these days only
DORMANT_DAYS = (0, 1)
#: the window in which every other seen device is present
WINDOW = (46, 59)
#: when the test reads the register: the day after the window
AS_OF = DAY0 + (WINDOW[1] + 1) * DAY
#: an address is free this many days before it is handed to someone else
IP_REUSE_GAP_DAYS = 2
#: a device type whose certificates live one hour: they are seen long after they expire
SHORT_LIVED_TYPE = "legacy-meter"

#: (device type, device class, criticality, weight)
TYPES = (("temp-sensor", "sensor", "low", 5), ("edge-gateway", "gateway", "high", 2),
         ("line-plc", "controller", "critical", 2), ("door-camera", "camera", "medium", 2))
#: (site, second octet, DHCP server kind)
SITES = (("plant-a", 21, "dhcpd"), ("plant-b", 22, "dnsmasq"), ("hq", 23, "dhcpd"))
#: (vendor as nmap names it, OUI, model)
VENDORS = (("Espressif", "24:0a:c4", "ESP32-DevKit"), ("Raspberry Pi Foundation",
           "b8:27:eb", "Pi 3B"), ("Hangzhou Hikvision", "44:19:b6", "DS-2CD2043"),
           ("Siemens AG", "00:1b:1b", "S7-1200"), ("Axis Communications", "00:40:8c",
           "M3045-V"))
FOREIGN_CA = "CN=Acme Device CA 1,O=Acme Industrial,C=DE"

#: risk factor names (the REST contract's kebab-case names)
SHARED = "shared-credential"
ZOMBIE = "zombie"
DORMANT = "dormant-valid-credentials"
UNKNOWN_ISSUER = "unknown-issuer"
EXPIRED = "expired-in-use"
REVOKED = "revoked-in-use"
WEAK_KEY = "weak-key"
UNMANAGED = "unmanaged"
CHECKED_FACTORS = (SHARED, ZOMBIE, DORMANT, UNKNOWN_ISSUER, EXPIRED, REVOKED, WEAK_KEY)


@dataclass(frozen=True)
class CertInfo:
    """A certificate as a network sensor sees it."""

    der: bytes
    sha256: str
    #: RFC 4514 issuer DN (most specific RDN first), as ``Sighting.issuer`` wants it
    issuer: str
    serial: str
    subject: str
    not_before: float
    not_after: float
    key: str

    @staticmethod
    def of(cert: x509.Certificate) -> CertInfo:
        """What a sensor reads of ``cert``."""
        der = cert.public_bytes(serialization.Encoding.DER)
        public = cert.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            key = f"ec:{public.curve.name}"
        elif isinstance(public, ed25519.Ed25519PublicKey):
            key = "ed25519"
        else:
            key = f"rsa:{getattr(public, 'key_size', 0)}"
        return CertInfo(der=der, sha256=hashlib.sha256(der).hexdigest(),
                        issuer=cert.issuer.rfc4514_string(),
                        serial=format(cert.serial_number, "x"),
                        subject=cert.subject.rfc4514_string(),
                        not_before=cert.not_valid_before_utc.timestamp(),
                        not_after=cert.not_valid_after_utc.timestamp(), key=key)


@dataclass
class Device:
    """One device of the plan, registered or not."""

    #: the device id (= MQTT client id) of a registered device; ``u-00042`` otherwise
    label: str
    registered: bool
    site: str
    vendor: str
    model: str
    type: str = ""
    mac: str | None = None
    hostname: str | None = None
    #: ``cert``, ``psk``, ``mqtt`` (client id only), ``plain`` (MAC/hostname/IP only)
    credential: str = "plain"
    #: ``seen``, ``dormant`` (seen long ago), ``never`` (seen never), ``zombie``
    #: (decommissioned, still seen), ``retired`` (decommissioned, gone)
    fate: str = "seen"
    #: the attributes an admin registered (``mac``, ``hostname``, ``ip``)
    attributes: dict[str, str] = field(default_factory=dict)
    #: gets its address from DHCP (has a MAC); otherwise a static one
    dhcp: bool = True
    static_ip: str | None = None
    #: (day, ip) for every day it is present
    presence: list[tuple[int, str]] = field(default_factory=list)
    cert: CertInfo | None = None
    psk_identity: str | None = None
    client_id: str | None = None
    #: registered devices: revoke the certificate after issuing it / seen from a 2nd place
    revoke: bool = False
    cloned: bool = False
    #: the other device of a shared-credential pair
    shares_with: str | None = None
    risks: set[str] = field(default_factory=set)
    in_cmdb: bool = False


@dataclass
class Network:
    """The plan: every device, and the seed it was made from."""

    seed: int
    devices: dict[str, Device]
    #: the sites, each with its own subnet (10.<octet>.0.0/16) and DHCP server
    sites: tuple[str, ...] = tuple(s[0] for s in SITES)

    @property
    def registered(self) -> list[Device]:
        """The fleet to register, in label order."""
        return [d for d in self.devices.values() if d.registered]

    @property
    def unmanaged(self) -> list[Device]:
        """The devices nobody registered."""
        return [d for d in self.devices.values() if not d.registered]


@dataclass(frozen=True)
class Record:
    """One observed thing: a line, event or element of one evidence file."""

    source: str
    #: which file of that source it goes to (``dnsmasq-plant-b-d47``)
    file: str
    #: ``lease``, ``host``, ``conn``, ``tls``, ``mqtt``, ``flow``, ``row``, ``sighting``
    event: str
    seen_at: float
    site: str
    ip: str | None = None
    mac: str | None = None
    hostname: str | None = None
    client_id: str | None = None
    cert: CertInfo | None = None
    psk_identity: str | None = None
    vendor: str | None = None
    model: str | None = None
    open_ports: tuple[int, ...] = ()
    #: the truth: which registered device this is (by the credential it presents, or
    #: the box itself), and which unmanaged device
    registered: str | None = None
    unmanaged: str | None = None


def build_network(seed: int = 13, *, registered: int = 300, ratio: float = 3.0) -> Network:
    """Plan a site network: ``registered`` devices and ``ratio`` times as many unmanaged."""
    if not 2.0 <= ratio <= 5.0:
        raise ValueError("ratio must be between 2 and 5 (issue 13)")
    # reproducible by seed on purpose: this is test data, never a secret
    rng = random.Random(seed)  # noqa: S311
    devices: dict[str, Device] = {}
    for index in range(registered):
        device = _registered_device(rng, index)
        devices[device.label] = device
    ca = _foreign_ca(seed)
    for index in range(round(registered * ratio)):
        device = _unmanaged_device(rng, index, ca)
        devices[device.label] = device
    _pair_shared_credentials(rng, devices)
    _plan_presence(rng, devices)
    _assign_addresses(rng, devices)
    return Network(seed=seed, devices=devices)


def _mac(rng: random.Random, oui: str) -> str:
    return oui + "".join(f":{rng.randrange(256):02x}" for _ in range(3))


def _registered_device(rng: random.Random, index: int) -> Device:
    type_name = rng.choices([t[0] for t in TYPES], [t[3] for t in TYPES])[0]
    site = rng.choice(SITES)[0]
    vendor, oui, model = rng.choice(VENDORS)
    roll = rng.random()
    fate = ("dormant" if roll < 0.08 else "never" if roll < 0.11
            else "zombie" if roll < 0.15 else "retired" if roll < 0.18 else "seen")
    if fate == "seen" and rng.random() < 0.04:
        type_name = SHORT_LIVED_TYPE
    label = f"{type_name.split('-')[-1]}-{site[-1]}-{index:05d}"
    device = Device(label=label, registered=True, site=site, vendor=vendor, model=model,
                    type=type_name, fate=fate)
    device.credential = rng.choices(["cert", "psk", "mqtt"], [65, 20, 15])[0]
    if fate in ("zombie", "retired"):
        device.credential = "mqtt"  # seen by client id: zombie, not also revoked-in-use
    if type_name == SHORT_LIVED_TYPE or (fate == "dormant" and device.credential == "mqtt"):
        device.credential = "cert"  # dormant *with valid credentials*
    device.client_id = label
    device.dhcp = rng.random() < 0.7 or fate in ("dormant", "retired")
    if device.dhcp:
        device.mac = _mac(rng, oui)
        device.attributes["mac"] = device.mac
    if rng.random() < 0.6:
        device.hostname = label
        device.attributes["hostname"] = device.hostname
    if device.credential == "cert" and fate == "seen":
        device.revoke = rng.random() < 0.05
        device.cloned = not device.revoke and rng.random() < 0.04
    device.in_cmdb = fate == "seen" and device.dhcp and rng.random() < 0.5
    return device


def _unmanaged_device(rng: random.Random, index: int, ca: ed25519.Ed25519PrivateKey
                      ) -> Device:
    site = rng.choice(SITES)[0]
    vendor, oui, model = rng.choice(VENDORS)
    label = f"u-{index:05d}"
    device = Device(label=label, registered=False, site=site, vendor=vendor, model=model,
                    mac=_mac(rng, oui), risks={UNMANAGED})
    device.credential = rng.choices(["cert", "psk", "mqtt", "plain"], [25, 12, 23, 40])[0]
    if rng.random() < 0.8:
        device.hostname = f"{model.split()[0].lower()}-{label}"
    if device.credential == "cert":
        expired, weak = rng.random() < 0.06, rng.random() < 0.05
        device.cert = _foreign_cert(rng, ca, label, expired=expired, weak=weak)
        device.risks |= {UNKNOWN_ISSUER} | ({EXPIRED} if expired else set()) \
            | ({WEAK_KEY} if weak else set())
    elif device.credential == "psk":
        device.psk_identity = f"{vendor.split()[0].lower()}-{rng.getrandbits(32):08x}"
    elif device.credential == "mqtt":
        device.client_id = f"{model.split()[0].lower()}_{rng.getrandbits(40):010x}"
    device.in_cmdb = rng.random() < 0.4
    return device


def _foreign_ca(seed: int) -> ed25519.Ed25519PrivateKey:
    # Ed25519 signs deterministically: the same seed gives byte-identical certificates
    return ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(f"synthetic-ca-{seed}".encode()).digest())


def _foreign_cert(rng: random.Random, ca: ed25519.Ed25519PrivateKey, label: str, *,
                  expired: bool, weak: bool) -> CertInfo:
    # P-192 is the weak key the issue names; a 20-byte scalar is below either curve's order
    curve: ec.EllipticCurve = ec.SECP192R1() if weak else ec.SECP256R1()
    key = ec.derive_private_key(int.from_bytes(rng.randbytes(20), "big") | 1, curve)
    start = datetime.fromtimestamp(DAY0, UTC) - timedelta(days=400)
    end = start + timedelta(days=420 if expired else 3650)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                        "Acme Industrial")]))
            .issuer_name(x509.Name.from_rfc4514_string(FOREIGN_CA))
            .public_key(key.public_key())
            .serial_number(rng.getrandbits(63) | (1 << 62))
            .not_valid_before(start).not_valid_after(end)
            .sign(ca, None))
    return CertInfo.of(cert)


def _pair_shared_credentials(rng: random.Random, devices: dict[str, Device]) -> None:
    """Give a few unmanaged devices the certificate or PSK identity of another."""
    for kind in ("cert", "psk"):
        pool = [d for d in devices.values() if not d.registered and d.credential == kind]
        rng.shuffle(pool)
        pairs = max(2, len(pool) // 25)
        for first, second in zip(pool[0:2 * pairs:2], pool[1:2 * pairs:2], strict=False):
            second.cert, second.psk_identity = first.cert, first.psk_identity
            second.risks = set(first.risks) | {SHARED}
            first.risks.add(SHARED)
            first.shares_with, second.shares_with = second.label, first.label
    for device in devices.values():
        if device.registered:
            device.risks |= {ZOMBIE} if device.fate == "zombie" else set()
            device.risks |= {DORMANT} if device.fate == "dormant" else set()
            device.risks |= {REVOKED} if device.revoke else set()
            device.risks |= {SHARED} if device.cloned else set()
            device.risks |= {EXPIRED} if device.type == SHORT_LIVED_TYPE else set()


def _plan_presence(rng: random.Random, devices: dict[str, Device]) -> None:
    """Which days each device is up; a shared pair is up on the same days (at once)."""
    first, last = WINDOW
    for device in devices.values():
        if device.fate in ("never", "retired"):
            continue
        if device.fate == "dormant":
            device.presence = [(day, "") for day in DORMANT_DAYS]
            continue
        length = rng.randint(3, last - first + 1)
        start = rng.randint(first, last - length + 1)
        days = list(range(start, start + length))
        if length >= 6 and rng.random() < 0.3:
            gap = rng.randint(start + 2, start + length - 3)
            days = [d for d in days if d != gap]  # offline a day: a new lease after
        device.presence = [(day, "") for day in days]
    for device in devices.values():
        if device.shares_with and device.label > device.shares_with:
            device.presence = [(d, "") for d, _ in devices[device.shares_with].presence]


def _spans(days: list[int]) -> Iterator[list[int]]:
    span: list[int] = []
    for day in days:
        if span and day != span[-1] + 1:
            yield span
            span = []
        span.append(day)
    if span:
        yield span


def _assign_addresses(rng: random.Random, devices: dict[str, Device]) -> None:
    """DHCP: each stretch of presence gets an address, the most recently freed first."""
    octet = {name: second for name, second, _ in SITES}
    free: dict[str, list[tuple[int, str]]] = {s[0]: [] for s in SITES}
    fresh = {s[0]: 0 for s in SITES}
    statics = {s[0]: 0 for s in SITES}
    wanted = sorted((span[0], device.label, tuple(span))
                     for device in devices.values() if device.dhcp
                     for span in _spans([d for d, _ in device.presence]))
    taken: dict[str, list[tuple[int, str]]] = {}
    for start, label, span in wanted:
        device = devices[label]
        pool = free[device.site]
        ready = [p for p in pool if p[0] + IP_REUSE_GAP_DAYS < start]
        if ready:
            chosen = max(ready)
            pool.remove(chosen)
            ip = chosen[1]
        else:
            fresh[device.site] += 1
            n = fresh[device.site]
            ip = f"10.{octet[device.site]}.{16 + n // 250}.{1 + n % 250}"
        pool.append((span[-1], ip))
        taken.setdefault(label, []).extend((day, ip) for day in span)
    retired = 0
    for device in devices.values():
        if device.fate == "retired":
            # its old fixed address, since handed out by DHCP: only a naive IP match sees it
            retired += 1
            device.attributes["ip"] = f"10.{octet[device.site]}.16.{1 + retired % 40}"
        if device.dhcp:
            device.presence = sorted(taken.get(device.label, []))
            if device.fate == "dormant" and device.presence and rng.random() < 0.5:
                # registered with the address it had then; DHCP has since given it away
                device.attributes["ip"] = device.presence[0][1]
        else:
            statics[device.site] += 1
            n = statics[device.site]
            device.static_ip = f"10.{octet[device.site]}.{1 + n // 250}.{1 + n % 250}"
            device.presence = [(day, device.static_ip) for day, _ in device.presence]
            if device.registered and rng.random() < 0.5:
                device.attributes["ip"] = device.static_ip


def day_time(day: int, hour: float) -> float:
    """Seconds since the epoch of ``hour`` o'clock on evidence day ``day``."""
    return DAY0 + day * DAY + hour * 3600


def digest_hex(*parts: object) -> str:
    """A short stable hex name for generated values (flow uids, asset tags)."""
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).hexdigest()


__all__ = ["AS_OF", "CHECKED_FACTORS", "DAY", "DAY0", "REGISTERED_AT", "SHORT_LIVED_TYPE",
           "TYPES", "CertInfo", "Device", "Network", "Record", "build_network", "day_time",
           "digest_hex"]
