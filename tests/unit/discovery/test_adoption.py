"""Adoption's retry of a taken guessed id, on the memory services: it goes by the row's
``id_taken`` (the inventory's ``IdNotAvailable``), never by the wording of the error."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from iotiam.discovery.adoption import Adoption, propose, unique_id
from iotiam.discovery.models import SourceContext
from iotiam.inventory.models import ImportRowResult
from iotiam.kernel import SYSTEM, Principal
from iotiam.testing.fakes.services import MemoryServices, memory_services


class Reworded:
    """The inventory's bulk import with every refusal reworded (a translation, a new
    message): what each row's result says apart from its text is unchanged."""

    def __init__(self, services: MemoryServices) -> None:
        self._inventory = services.inventory
        self.calls: list[list[str]] = []

    def import_devices(self, actor: Principal, rows: Sequence[tuple[int, dict[str, Any]]]
                       ) -> list[ImportRowResult]:
        self.calls.append([data["id"] for _, data in rows])
        return [result if result.ok else replace(result, error=f"refused ({result.row})")
                for result in self._inventory.import_devices(actor, rows)]


@pytest.fixture
def svc() -> MemoryServices:
    services = memory_services()
    record = {"seen_at": 1772359200, "hostname": "raspberrypi", "ip": "10.0.0.9",
              "mac": "02:00:00:00:00:99"}
    services.discovery.import_stream(SYSTEM, "jsonl", io.BytesIO(json.dumps(record).encode()
                                                                  + b"\n"), SourceContext())
    return services


def test_adopt_ok_taken_guessed_id_is_made_unique_whatever_the_error_says(
        svc: MemoryServices) -> None:
    (asset,) = svc.discovery.assets(SYSTEM)
    guessed = propose(asset).device_id
    assert svc.inventory.import_devices(SYSTEM, [(1, {"id": guessed, "type": "sensor"})])[0].ok
    registration = Reworded(svc)
    adoption = Adoption(svc.discovery, registration, svc.enrollment, svc.audit)
    (adopted,) = adoption.adopt(SYSTEM, [asset.id], type_name="sensor")
    assert (adopted.ok, adopted.device_id) == (True, unique_id(propose(asset)))
    assert registration.calls == [[guessed], [unique_id(propose(asset))]]


def test_adopt_fail_other_refusals_are_not_retried(svc: MemoryServices) -> None:
    (asset,) = svc.discovery.assets(SYSTEM)
    registration = Reworded(svc)
    adoption = Adoption(svc.discovery, registration, svc.enrollment, svc.audit)
    (adopted,) = adoption.adopt(SYSTEM, [asset.id], type_name="no-such-type")
    assert (adopted.ok, adopted.error) == (False, "refused (1)")
    assert registration.calls == [[propose(asset).device_id]]


def test_import_ok_a_taken_id_is_flagged_other_refusals_are_not(svc: MemoryServices) -> None:
    rows: list[tuple[int, dict[str, Any]]] = [
        (1, {"id": "cam-1", "type": "sensor"}), (2, {"id": "cam-1", "type": "sensor"}),
        (3, {"id": "cam-3", "type": "no-such-type"}), (4, {"id": "admin", "type": "sensor"})]
    results = svc.inventory.import_devices(SYSTEM, rows)
    assert [(r.ok, r.id_taken) for r in results] == [
        (True, False), (False, True), (False, False), (False, False)]
