"""A bulk import's batch: every row judged in Python against what one lookup per kind
found, then the good rows written in one statement.

``Inventory.import_devices`` used to register row by row, each in a savepoint, with the
lookups of a single registration (its org unit, its type, its id): five round trips a
row. A batch here asks the store once for the org units, once for the types and once
for the ids its rows name, judges each row with the checks and the messages of a single
registration (``Inventory.add_device``), in row order, and hands the devices that
passed to ``DeviceStore.add_new``. A row that fails stores nothing and fails alone
(G12); an id another writer took meanwhile is reported as taken, like one stored before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from iotiam.errors import IamError, IdNotAvailable, InvalidInput, NotFound
from iotiam.inventory.models import (
    Device,
    DeviceDraft,
    DeviceState,
    ImportRowResult,
    OrgUnit,
    check_attributes,
    check_identifier,
    is_identifier,
    is_reserved_id,
)
from iotiam.kernel import Principal

#: what ``IdNotAvailable`` names when a device id is taken
DEVICE_ID = "device id"
#: how many landed device ids an import's audit record lists (its digest covers them all)
AUDITED_IDS = 100
#: how many failed rows an import's audit record lists (its ``failed`` counts them all)
AUDITED_FAILURES = 100

Row = tuple[int, Any]


@dataclass(frozen=True)
class Lookups:
    """What a batch's rows refer to, found with one query per kind."""

    org_units: Mapping[str, OrgUnit]
    type_names: frozenset[str]
    taken_ids: frozenset[str]


@dataclass
class Judged:
    """A batch judged: one result per row in row order, and the devices to write."""

    results: list[ImportRowResult | None] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    #: where each device's result goes in ``results``
    slots: list[int] = field(default_factory=list)


def drafts_of(rows: Sequence[Row]) -> list[DeviceDraft | ImportRowResult]:
    """Each row as a draft, or the failed result saying why it is not one."""
    drafts: list[DeviceDraft | ImportRowResult] = []
    for number, raw in rows:
        try:
            draft = DeviceDraft.from_mapping(raw)
            check_row(draft)
        except IamError as e:
            drafts.append(ImportRowResult(number, named_id(raw), False, e.detail))
            continue
        drafts.append(draft)
    return drafts


def named_id(raw: Any) -> str | None:
    """The id a row names (cut to 128 characters), for its report even when it is bad."""
    named = raw.get("id") if isinstance(raw, dict) else None
    return named[:128] if isinstance(named, str) and named else None


def check_row(draft: DeviceDraft) -> None:
    """What a draft must be before anything is looked up (``Inventory.add_device``'s
    checks, in its order)."""
    check_identifier(draft.id, "device id")
    if is_reserved_id(draft.id):
        raise InvalidInput(f"device id {draft.id!r} is reserved")
    check_attributes(draft.attributes)
    if draft.via is not None:
        check_identifier(draft.via, "gateway id")
    for label, value in (("site", draft.site), ("location", draft.location)):
        if value is not None and (len(value) > 256 or "\x00" in value):
            raise InvalidInput(f"{label} is too long or has a NUL byte")


def wanted(actor: Principal, drafts: Sequence[DeviceDraft | ImportRowResult]
           ) -> tuple[set[str], set[str], set[str]]:
    """The org unit ids, type names and device ids the drafts name: what to look up.

    Org units and types are created with ``check_identifier``, so a name that is no
    identifier names none of them and is not sent to the database (where a NUL byte
    would fail the whole batch on PostgreSQL).
    """
    units: set[str] = set()
    types: set[str] = set()
    ids: set[str] = set()
    for draft in drafts:
        if isinstance(draft, DeviceDraft):
            unit = draft.org_unit_id or actor.org_unit_id
            if is_identifier(unit):
                units.add(unit)
            if is_identifier(draft.type_name):
                types.add(draft.type_name)
            ids.add(draft.id)
    return units, types, ids


def judge(actor: Principal, rows: Sequence[Row], drafts: Sequence[DeviceDraft | ImportRowResult],
          lookups: Lookups, now: datetime) -> Judged:
    """Each row's fate, in row order: an id is taken by a stored device or by an earlier
    row of the batch that passed (as if the rows were registered one after another)."""
    judged = Judged()
    claimed: set[str] = set()
    for (number, raw), draft in zip(rows, drafts, strict=True):
        if isinstance(draft, ImportRowResult):
            judged.results.append(draft)
            continue
        try:
            device = _device(actor, draft, lookups, claimed, now)
        except IamError as e:
            taken = isinstance(e, IdNotAvailable) and e.what == DEVICE_ID
            judged.results.append(ImportRowResult(number, named_id(raw), False, e.detail,
                                                  id_taken=taken))
            continue
        claimed.add(device.id)
        judged.slots.append(len(judged.results))
        judged.results.append(None)
        judged.devices.append(device)
    return judged


def _device(actor: Principal, draft: DeviceDraft, lookups: Lookups, claimed: set[str],
            now: datetime) -> Device:
    unit_id = draft.org_unit_id or actor.org_unit_id
    unit = lookups.org_units.get(unit_id)
    if unit is None or not actor.sees(unit.path):  # G9: another tenant's is not found
        raise NotFound(f"org unit {unit_id!r} not found")
    if draft.type_name not in lookups.type_names:
        raise InvalidInput(f"unknown device type {draft.type_name!r}")
    if draft.id in lookups.taken_ids or draft.id in claimed:
        raise IdNotAvailable(DEVICE_ID, draft.id)
    return Device(
        id=draft.id, type_name=draft.type_name, org_unit_id=unit.id, org_path=unit.path,
        state=DeviceState.PENDING, site=draft.site, location=draft.location,
        attributes=dict(draft.attributes), created_at=now, updated_at=now,
    )


def refuse(judged: Judged, rows: Sequence[Row], device_id: str, error: IamError) -> None:
    """Take a judged device out of the batch: its row fails with ``error`` (a check made
    after the batch was judged, e.g. its gateway)."""
    index = next(i for i, d in enumerate(judged.devices) if d.id == device_id)
    slot = judged.slots.pop(index)
    judged.devices.pop(index)
    number, raw = rows[slot]
    judged.results[slot] = ImportRowResult(number, named_id(raw), False, error.detail)


def settle(rows: Sequence[Row], judged: Judged, taken_meanwhile: set[str]
           ) -> tuple[list[ImportRowResult], list[Device]]:
    """Every row's result once the devices were written; ``taken_meanwhile`` are the ids
    another writer stored between the lookup and the write (reported as taken)."""
    results = judged.results
    landed: list[Device] = []
    for slot, device in zip(judged.slots, judged.devices, strict=True):
        number, raw = rows[slot]
        if device.id in taken_meanwhile:
            results[slot] = ImportRowResult(
                number, named_id(raw), False, IdNotAvailable(DEVICE_ID, device.id).detail,
                id_taken=True)
        else:
            results[slot] = ImportRowResult(number, device.id, True)
            landed.append(device)
    return [r for r in results if r is not None], landed


def rows_digest(devices: Sequence[Device]) -> str:
    """SHA-256 of what the batch stored: the compact JSON array, keys sorted, of each
    landed device's ``[id, type, org unit, site, location, attributes]``, in row order."""
    content = [[d.id, d.type_name, d.org_unit_id, d.site, d.location, d.attributes]
               for d in devices]
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def audit_details(results: Sequence[ImportRowResult], landed: Sequence[Device]
                  ) -> dict[str, Any]:
    """The import's audit record: its counts, the digest of its rows, and the first
    landed ids and failed rows (bounded, so a record stays small at any batch size)."""
    failed = [r for r in results if not r.ok]
    return {
        "imported": len(landed),
        "rows_sha256": rows_digest(landed),
        "devices": [d.id for d in landed[:AUDITED_IDS]],
        "failed": len(failed),
        "failed_rows": [{"row": r.row, "error": r.error} for r in failed[:AUDITED_FAILURES]],
    }
