"""``RegisteredIdentities`` in SQL: which registered device a batch of identifier values
belongs to, one indexed query per kind (certificates by fingerprint or issuer and
serial, PSKs by identity, devices by id or by their ``mac``/``hostname``/``ip``
attribute through the expression indexes of migrations 0016 and 0023)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cryptography import x509
from sqlalchemy import Connection

from iotiam.discovery.models import IdentifierKind, RegisteredDevice
from iotiam.errors import InvalidInput
from iotiam.storage.discovery_store import IN_CHUNK
from iotiam.storage.raw import dbapi_cursor
from iotiam.storage.tables import discovery as discovery_tables

K = IdentifierKind
#: a device attribute, lower-cased (as migrations 0016 and 0023 wrote it)
_ATTRIBUTE_SQL = {
    "sqlite": "lower(json_extract(attributes, '$.{name}'))",
    "postgresql": "lower((attributes::json) ->> '{name}')",
}
#: the indexed expression of each attribute: one spelling of what an admin may have
#: written (a MAC as ``aa:bb:..``, ``aa-bb-..``, ``aabb..`` or ``aabb.ccdd.eeff``, a host
#: name with its trailing dot), so a value is one index probe (migration 0023)
_SPELLED_SQL = {
    K.MAC: "replace(replace(replace({attribute}, ':', ''), '-', ''), '.', '')",
    K.HOSTNAME: "rtrim({attribute}, '.')",
    K.IP: "{attribute}",
}
assert set(discovery_tables.DEVICE_ATTRIBUTES) == {"mac", "hostname", "ip"}


def spelled_expression(dialect: str, kind: IdentifierKind) -> str:
    """The indexed expression of the device attribute ``kind`` on ``dialect``."""
    return _SPELLED_SQL[kind].format(attribute=_ATTRIBUTE_SQL[dialect].format(name=kind))


def _spelled(kind: IdentifierKind, value: str) -> str:
    """A sighting's value as the attribute's index spells it (``normalize_mac`` leaves
    colons, ``normalize_hostname`` no trailing dot; an address is ``site|ip``)."""
    if kind is K.MAC:
        return value.replace(":", "")
    if kind is K.IP:
        return value.rpartition("|")[2]
    return value


@functools.lru_cache(maxsize=64)
def ca_subject(pem: str) -> str | None:
    """A CA's subject as RFC 4514 text (None for what is not a certificate)."""
    try:
        return x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string()
    except ValueError:
        return None


def _stored_serial(serial: str) -> str:
    """A sighting's serial (hex, no leading zeros) as the PKI stores it (even length)."""
    return serial if len(serial) % 2 == 0 else "0" + serial


class SqlRegisteredIdentities:
    """Registered identities on one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pg = conn.dialect.name == "postgresql"

    def _rows(self, sql: str, values: Sequence[str], extra: Sequence[Any]) -> Iterator[Any]:
        """``sql`` with ``{in}`` the values (``ANY`` on PostgreSQL, chunks on SQLite),
        then the ``extra`` parameters."""
        cursor = dbapi_cursor(self._conn)
        try:
            if self._pg:
                # planned for these values (see discovery_store.SqlDiscoveryStore._query)
                cursor.execute(sql.format(**{"in": "= ANY(%s::text[])"}).replace("?", "%s"),
                               [list(values), *extra], prepare=False)
                yield from cursor.fetchall()
                return
            for start in range(0, len(values), IN_CHUNK):
                chunk = values[start:start + IN_CHUNK]
                cursor.execute(sql.format(**{"in": f"IN ({', '.join('?' * len(chunk))})"}),
                               [*chunk, *extra])
                yield from cursor.fetchall()
        finally:
            cursor.close()

    def devices_for(self, kind: IdentifierKind, values: Sequence[str], *,
                    org_path: str) -> Mapping[str, RegisteredDevice]:
        """``value -> device`` for values some device under ``org_path`` has."""
        if not org_path.startswith("/") or not org_path.endswith("/"):
            raise InvalidInput(f"bad org path {org_path!r}")
        if not values:
            return {}
        scope = [len(org_path), org_path]
        if kind is K.CERTIFICATE:
            return self._pairs(self._rows(
                "SELECT fingerprint_sha256, device_id, org_path FROM certificates WHERE "
                "fingerprint_sha256 {in} AND device_id IS NOT NULL "
                "AND substr(org_path, 1, ?) = ?", values, scope))
        if kind is K.ISSUER_SERIAL:
            return self._by_issuer_serial(values, scope)
        if kind is K.PSK_IDENTITY:
            return self._pairs(self._rows(
                "SELECT identity, device_id, org_path FROM psks WHERE identity {in} "
                "AND substr(org_path, 1, ?) = ?", values, scope))
        if kind is K.CLIENT_ID:
            return self._pairs(self._rows(
                "SELECT id, id, org_path FROM devices WHERE id {in} "
                "AND substr(org_path, 1, ?) = ?", values, scope))
        return self._by_attribute(kind, values, scope)

    @staticmethod
    def _pairs(rows: Iterator[Any]) -> dict[str, RegisteredDevice]:
        found: dict[str, RegisteredDevice] = {}
        for value, device_id, org_path in sorted(rows):
            found.setdefault(value, RegisteredDevice(device_id, org_path))
        return found

    def _by_issuer_serial(self, values: Sequence[str], scope: list[Any]
                          ) -> dict[str, RegisteredDevice]:
        cursor = dbapi_cursor(self._conn)
        try:
            cursor.execute("SELECT id, certificate_pem FROM cas")
            cas = cursor.fetchall()
        finally:
            cursor.close()
        by_subject: dict[str, list[str]] = {}
        for ca_id, pem in cas:
            subject = ca_subject(pem)
            if subject is not None:
                by_subject.setdefault(subject, []).append(ca_id)
        wanted: dict[str, dict[str, str]] = {}  # ca id -> stored serial -> value
        for value in values:
            issuer, _, serial = value.rpartition("|")
            for ca_id in by_subject.get(issuer, ()):
                wanted.setdefault(ca_id, {})[_stored_serial(serial)] = value
        found: dict[str, RegisteredDevice] = {}
        for ca_id, serials in sorted(wanted.items()):
            for serial, device_id, org_path in sorted(self._rows(
                    "SELECT serial, device_id, org_path FROM certificates WHERE serial {in} "
                    "AND issuer_id = ? AND device_id IS NOT NULL AND substr(org_path, 1, ?) = ?",
                    sorted(serials), [ca_id, *scope])):
                found.setdefault(serials[serial], RegisteredDevice(device_id, org_path))
        return found

    def _by_attribute(self, kind: IdentifierKind, values: Sequence[str], scope: list[Any]
                      ) -> dict[str, RegisteredDevice]:
        # the indexed spelling -> the value (an address: the same for every site)
        spelled = {_spelled(kind, value): value for value in values}
        wanted = set(values)
        expression = spelled_expression("postgresql" if self._pg else "sqlite", kind)
        # a decommissioned device holds no address any more: its old one is someone else's
        live = " AND state <> 'decommissioned'" if kind is K.IP else ""
        found: dict[str, RegisteredDevice] = {}
        for attribute, device_id, org_path, site in sorted(self._rows(
                f"SELECT {expression}, id, org_path, coalesce(site, '') FROM devices "  # noqa: S608
                f"WHERE {expression} {{in}} AND substr(org_path, 1, ?) = ?{live}",
                sorted(spelled), scope), key=lambda row: (row[0], row[1])):
            if kind is K.IP:
                # an address an admin gave a device is its own at its own site only
                key = f"{site}|{attribute}"
                if key in wanted:
                    found.setdefault(key, RegisteredDevice(device_id, org_path))
            else:
                found.setdefault(spelled[attribute], RegisteredDevice(device_id, org_path))
        return found
