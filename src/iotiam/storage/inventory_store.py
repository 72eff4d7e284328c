"""SQL implementation of the inventory stores."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from iotiam.inventory.models import (
    Criticality,
    Device,
    DeviceClass,
    DeviceState,
    DeviceType,
    Group,
    OrgUnit,
    OrgUnitKind,
    RotationPolicy,
)
from iotiam.storage.raw import (
    ByIds,
    ParsedRows,
    RawSql,
    RawStatement,
    dbapi_cursor,
    row_object,
    select_sql,
    utc,
    utc_required,
)
from iotiam.storage.rows import dump_json, load_json, one_of, under_path
from iotiam.storage.tables import inventory as t

_DEVICE_COLUMNS = ("id", "type_name", "org_unit_id", "org_path", "state", "site", "location",
                   "attributes", "created_at", "updated_at", "tokens_not_before")
_DEVICE_TIMES = frozenset({"created_at", "updated_at", "tokens_not_before"})
#: parsed devices by their stored row (every read still goes to the database)
_PARSED_DEVICES: ParsedRows[Device] = ParsedRows()
_GET_DEVICE = RawStatement(select_sql("devices", _DEVICE_COLUMNS, "id = :id"))
_GET_DEVICE_FOR_UPDATE = RawStatement(_GET_DEVICE.sqlite + " FOR UPDATE")
_ACTIVATE_IF_PENDING = RawStatement(
    "UPDATE devices SET state = :active, updated_at = :at WHERE id = :id AND state = :pending")
_TOUCH = RawStatement("UPDATE devices SET updated_at = :at WHERE id = :id")
_TYPE_COLUMNS = ("name", "device_class", "criticality", "description", "certificate_profile",
                 "created_at", "certificate_lifetime_seconds", "grace_seconds",
                 "max_credential_age_seconds")
# ids per ``IN (…)``: far below every driver's parameter limit
_IN_CHUNK = 500
_GET_DEVICES = ByIds(select_sql("devices", _DEVICE_COLUMNS, "id {ids}"))
_GET_TYPE = RawStatement(select_sql("device_types", _TYPE_COLUMNS, "name = :name"))
_EXISTING_PG = "SELECT id FROM devices WHERE id = ANY(%b::varchar[])"
#: a bulk import's rows per ``INSERT``: 11 columns, far below SQLite's 32,766 parameters
_ADD_CHUNK = 500
_NEW_DEVICE_COLUMNS = _DEVICE_COLUMNS[:-1]  # a new device has no ``tokens_not_before``
_NAMES = ", ".join(_NEW_DEVICE_COLUMNS)
# one statement for every row of a batch: a row costs the driver microseconds, not a
# round trip; the ids it does not return were taken by another transaction meanwhile
_ADD_NEW_PG = (
    f"INSERT INTO devices ({_NAMES}) SELECT * FROM unnest("  # noqa: S608 (constants)
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::timestamp[], %b::timestamp[]) ON CONFLICT (id) DO NOTHING RETURNING id")


@functools.lru_cache(maxsize=8)
def _add_new_sqlite(count: int) -> str:
    """``INSERT`` of ``count`` new devices, naming the ones it wrote (SQLite 3.35+)."""
    row = f"({', '.join('?' for _ in _NEW_DEVICE_COLUMNS)})"
    return (f"INSERT INTO devices ({_NAMES}) VALUES {', '.join([row] * count)} "  # noqa: S608
            "ON CONFLICT (id) DO NOTHING RETURNING id")


def _org_unit(row: Any) -> OrgUnit:
    return OrgUnit(
        id=row.id,
        name=row.name,
        kind=OrgUnitKind(row.kind),
        parent_id=row.parent_id,
        path=row.path,
        created_at=row.created_at,
    )


def _rotation_columns(rotation: RotationPolicy) -> dict[str, int | None]:
    lifetime = rotation.certificate_lifetime
    return {
        "certificate_lifetime_seconds": int(lifetime.total_seconds()) if lifetime else None,
        "grace_seconds": int(rotation.grace_period.total_seconds()),
        "max_credential_age_seconds": int(rotation.max_credential_age.total_seconds()),
    }


def device_from_row(row: Any) -> Device:
    return Device(
        id=row.id,
        type_name=row.type_name,
        org_unit_id=row.org_unit_id,
        org_path=row.org_path,
        state=DeviceState(row.state),
        site=row.site,
        location=row.location,
        attributes=load_json(row.attributes),
        created_at=row.created_at,
        updated_at=row.updated_at,
        tokens_not_before=row.tokens_not_before,
    )


def _device_of(values: Any) -> Device:
    """A device from a row of ``_DEVICE_COLUMNS`` as the driver returns it (a batch's
    reads build thousands: no row object in between)."""
    (device_id, type_name, org_unit_id, org_path, state, site, location, attributes,
     created_at, updated_at, tokens_not_before) = values
    return Device(
        id=device_id, type_name=type_name, org_unit_id=org_unit_id, org_path=org_path,
        state=DeviceState(state), site=site, location=location,
        attributes=load_json(attributes), created_at=utc_required(created_at),
        updated_at=utc_required(updated_at), tokens_not_before=utc(tokens_not_before))


class SqlOrgUnitStore:
    """Org units in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, unit: OrgUnit) -> None:
        """Insert a new org unit."""
        self._c.execute(
            insert(t.org_units).values(
                id=unit.id,
                name=unit.name,
                kind=str(unit.kind),
                parent_id=unit.parent_id,
                path=unit.path,
                created_at=unit.created_at,
            )
        )

    def get(self, unit_id: str) -> OrgUnit | None:
        """One org unit by id."""
        row = self._c.execute(select(t.org_units).where(t.org_units.c.id == unit_id)).first()
        return _org_unit(row) if row else None

    def get_many(self, unit_ids: Sequence[str]) -> dict[str, OrgUnit]:
        """The org units among these ids, by id."""
        found: dict[str, OrgUnit] = {}
        for start in range(0, len(unit_ids), _IN_CHUNK):
            chunk = list(unit_ids[start:start + _IN_CHUNK])
            for row in self._c.execute(select(t.org_units).where(t.org_units.c.id.in_(chunk))):
                found[row.id] = _org_unit(row)
        return found

    def list_under(self, path: str) -> list[OrgUnit]:
        """Every org unit inside the subtree at ``path``."""
        rows = self._c.execute(
            select(t.org_units).where(under_path(t.org_units.c.path, path)).order_by(
                t.org_units.c.path
            )
        )
        return [_org_unit(r) for r in rows]


class SqlDeviceTypeStore:
    """Device types in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, device_type: DeviceType) -> None:
        """Insert a device type."""
        self._c.execute(
            insert(t.device_types).values(
                name=device_type.name,
                device_class=str(device_type.device_class),
                criticality=str(device_type.criticality),
                description=device_type.description,
                certificate_profile=device_type.certificate_profile,
                created_at=device_type.created_at,
                **_rotation_columns(device_type.rotation),
            )
        )

    def set_rotation(self, name: str, rotation: RotationPolicy) -> None:
        """Replace a device type's rotation policy."""
        self._c.execute(
            update(t.device_types)
            .where(t.device_types.c.name == name)
            .values(**_rotation_columns(rotation))
        )

    def get(self, name: str) -> DeviceType | None:
        """One device type by name (hot: every issuance reads it)."""
        row = RawSql(self._c).first(_GET_TYPE, {"name": name})
        if row is None:
            return None
        return self._to_model(row_object(_TYPE_COLUMNS, row, frozenset({"created_at"})))

    def known(self, names: Sequence[str]) -> set[str]:
        """Which of these device type names exist."""
        found: set[str] = set()
        for start in range(0, len(names), _IN_CHUNK):
            chunk = list(names[start:start + _IN_CHUNK])
            found.update(self._c.execute(select(t.device_types.c.name)
                                         .where(t.device_types.c.name.in_(chunk))).scalars())
        return found

    def list_all(self) -> list[DeviceType]:
        """All device types, by name."""
        rows = self._c.execute(select(t.device_types).order_by(t.device_types.c.name))
        return [self._to_model(r) for r in rows]

    @staticmethod
    def _to_model(row: Any) -> DeviceType:
        return DeviceType(
            name=row.name,
            device_class=DeviceClass(row.device_class),
            criticality=Criticality(row.criticality),
            description=row.description,
            certificate_profile=row.certificate_profile,
            created_at=row.created_at,
            rotation=RotationPolicy(
                certificate_lifetime=timedelta(seconds=row.certificate_lifetime_seconds)
                if row.certificate_lifetime_seconds
                else None,
                grace_period=timedelta(seconds=row.grace_seconds),
                max_credential_age=timedelta(seconds=row.max_credential_age_seconds),
            ),
        )


class SqlDeviceStore:
    """Devices in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, device: Device) -> None:
        """Insert a device."""
        self._c.execute(
            insert(t.devices).values(
                id=device.id,
                type_name=device.type_name,
                org_unit_id=device.org_unit_id,
                org_path=device.org_path,
                state=str(device.state),
                site=device.site,
                location=device.location,
                attributes=dump_json(device.attributes),
                created_at=device.created_at,
                updated_at=device.updated_at,
            )
        )

    def add_new(self, devices: Sequence[Device]) -> set[str]:
        """Insert many new devices in one statement per backend (``ON CONFLICT DO
        NOTHING``); the ids another transaction stored first are returned, unwritten."""
        if not devices:
            return set()
        raw = RawSql(self._c)
        # a batch's devices share their instants: each converted once
        when = functools.cache(raw.when)
        rows = [(d.id, d.type_name, d.org_unit_id, d.org_path, d.state.value, d.site,
                 d.location, dump_json(d.attributes), when(d.created_at),
                 when(d.updated_at)) for d in devices]
        dbapi = self._c.dialect.loaded_dbapi
        cursor = dbapi_cursor(self._c)
        written: set[str] = set()
        try:
            if raw.is_sqlite:
                for start in range(0, len(rows), _ADD_CHUNK):
                    chunk = rows[start:start + _ADD_CHUNK]
                    cursor.execute(_add_new_sqlite(len(chunk)),
                                   [value for row in chunk for value in row])
                    written.update(r[0] for r in cursor.fetchall())
            else:
                cursor.execute(_ADD_NEW_PG, [list(c) for c in zip(*rows, strict=True)])
                written.update(r[0] for r in cursor.fetchall())
        except dbapi.Error as e:
            # the same IntegrityError / DataError Core would raise (storage/database.py)
            raise DBAPIError.instance("INSERT INTO devices", None, e, dbapi.Error) from e
        finally:
            cursor.close()
        return {d.id for d in devices} - written

    def get(self, device_id: str, *, for_update: bool = False) -> Device | None:
        """One device by id (hot: every issuance and enrollment reads it)."""
        raw = RawSql(self._c)
        # SQLite's write transaction already serialises; PostgreSQL locks the row
        statement = _GET_DEVICE_FOR_UPDATE if for_update and not raw.is_sqlite else _GET_DEVICE
        row = raw.first(statement, {"id": device_id})
        if row is None:
            return None
        return _PARSED_DEVICES.get(tuple(row), lambda values: device_from_row(
            row_object(_DEVICE_COLUMNS, values, _DEVICE_TIMES)))

    def get_many(self, device_ids: Sequence[str]) -> dict[str, Device]:
        """The registered devices among these ids, by id (hot: batch issuance)."""
        found: dict[str, Device] = {}
        if not device_ids:
            return found
        for row in _GET_DEVICES.rows(RawSql(self._c), list(dict.fromkeys(device_ids))):
            device = _device_of(row)
            found[device.id] = device
        return found

    def exists(self, device_ids: Sequence[str]) -> set[str]:
        """Which of these ids are already registered (a bulk import's whole batch)."""
        if not device_ids:
            return set()
        if self._c.dialect.name == "postgresql":
            # one query for the batch (``varchar[]``: a ``text[]`` would compare
            # ``id::text``, which the primary key cannot answer); IN lists of 500 scanned
            # the table once each while a fast-growing table's statistics were stale
            cursor = dbapi_cursor(self._c)
            try:
                cursor.execute(_EXISTING_PG, [list(device_ids)])
                return {r[0] for r in cursor.fetchall()}
            finally:
                cursor.close()
        # the ids as one parameter (``one_of``): an expanded ``IN`` bound 500 a statement
        rows = self._c.execute(select(t.devices.c.id)
                               .where(one_of(self._c, t.devices.c.id, device_ids)))
        return {device_id for device_id, in rows}

    def set_state(self, device_id: str, state: DeviceState, at: datetime) -> None:
        """Move a device to another lifecycle state; leaving ``active`` ends its tokens."""
        values: dict[str, Any] = {"state": str(state), "updated_at": at}
        if state is not DeviceState.ACTIVE:
            values["tokens_not_before"] = at
        self._c.execute(update(t.devices).where(t.devices.c.id == device_id).values(**values))

    def end_tokens(self, device_id: str, at: datetime) -> None:
        """Access tokens of the device issued until ``at`` stay dead from now on."""
        self._c.execute(update(t.devices).where(t.devices.c.id == device_id)
                        .values(tokens_not_before=at))

    def activate_if_pending(self, device_ids: Sequence[str], at: datetime) -> None:
        """Move pending devices to active (first certificate); other states stay."""
        raw = RawSql(self._c)
        when = raw.when(at)
        raw.defer(_ACTIVATE_IF_PENDING, [{
            "id": device_id, "at": when,
            "active": str(DeviceState.ACTIVE), "pending": str(DeviceState.PENDING),
        } for device_id in device_ids])

    def touch(self, device_ids: Sequence[str], at: datetime) -> None:
        """Move the devices' ``updated_at`` (a new credential changes their standing)."""
        raw = RawSql(self._c)
        when = raw.when(at)
        raw.defer(_TOUCH, [{"id": device_id, "at": when} for device_id in device_ids])

    def page(
        self,
        *,
        org_path: str,
        type_name: str | None = None,
        state: DeviceState | None = None,
        after_id: str | None = None,
        limit: int = 100,
        site: str | None = None,
    ) -> list[Device]:
        """Devices under ``org_path`` in id order, keyset-paginated."""
        query = _filtered(select(t.devices), org_path, type_name, state)
        if site:
            query = query.where(t.devices.c.site == site)
        if after_id:
            query = query.where(t.devices.c.id > after_id)
        rows = self._c.execute(query.order_by(t.devices.c.id).limit(limit))
        return [device_from_row(r) for r in rows]

    def count(self, *, org_path: str, type_name: str | None = None,
              state: DeviceState | None = None, site: str | None = None) -> int:
        """How many devices under ``org_path`` match the filters."""
        # the maintained counts (migration 0022): a few rows, not the million devices
        c = t.device_counts.c
        query = select(func.coalesce(func.sum(c.n), 0)).where(under_path(c.org_path, org_path))
        if type_name:
            query = query.where(c.type_name == type_name)
        if state:
            query = query.where(c.state == str(state))
        if site:
            query = query.where(c.site == site)
        return int(self._c.execute(query).scalar_one())

    def iter_all(self, *, org_path: str) -> Iterator[Device]:
        """Every device under ``org_path``."""
        rows = self._c.execute(
            select(t.devices).where(under_path(t.devices.c.org_path, org_path))
        )
        for row in rows:
            yield device_from_row(row)


def _filtered(query: Select[Any], org_path: str, type_name: str | None,
              state: DeviceState | None) -> Select[Any]:
    """``query`` over devices narrowed to a subtree, a type and a state."""
    query = query.where(under_path(t.devices.c.org_path, org_path))
    if type_name:
        query = query.where(t.devices.c.type_name == type_name)
    if state:
        query = query.where(t.devices.c.state == str(state))
    return query


class SqlGroupStore:
    """Groups in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, group: Group) -> None:
        """Insert a group."""
        self._c.execute(
            insert(t.groups).values(
                id=group.id,
                name=group.name,
                org_unit_id=group.org_unit_id,
                org_path=group.org_path,
                description=group.description,
                created_at=group.created_at,
            )
        )

    def get(self, group_id: str) -> Group | None:
        """One group."""
        row = self._c.execute(select(t.groups).where(t.groups.c.id == group_id)).first()
        return self._to_model(row) if row else None

    def list_under(self, *, org_path: str) -> list[Group]:
        """Groups under ``org_path``."""
        rows = self._c.execute(
            select(t.groups).where(under_path(t.groups.c.org_path, org_path)).order_by(
                t.groups.c.id
            )
        )
        return [self._to_model(r) for r in rows]

    def add_member(self, group_id: str, device_id: str, at: datetime) -> None:
        """Put a device into a group; adding it twice is a no-op. A new membership moves
        the device's ``updated_at``: its rights may change (broker sync, PDP caches)."""
        dialect_insert = pg_insert if self._c.dialect.name == "postgresql" else sqlite_insert
        added = self._c.execute(
            dialect_insert(t.group_members)
            .values(group_id=group_id, device_id=device_id)
            .on_conflict_do_nothing()
        )
        if added.rowcount:
            self._c.execute(update(t.devices).where(t.devices.c.id == device_id)
                            .values(updated_at=at))

    def members(self, group_id: str) -> list[str]:
        """Device ids in a group."""
        rows = self._c.execute(
            select(t.group_members.c.device_id)
            .where(t.group_members.c.group_id == group_id)
            .order_by(t.group_members.c.device_id)
        )
        return [r.device_id for r in rows]

    @staticmethod
    def _to_model(row: Any) -> Group:
        return Group(
            id=row.id,
            name=row.name,
            org_unit_id=row.org_unit_id,
            org_path=row.org_path,
            description=row.description,
            created_at=row.created_at,
        )
