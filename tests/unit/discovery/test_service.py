"""The discovery service on the memory installation: streamed, idempotent, scoped."""

from __future__ import annotations

import gc
import io
import json
import threading
import time
from datetime import UTC, datetime

import pytest

from iotiam.audit.models import AuditTag
from iotiam.changes import SightingsImported
from iotiam.discovery.keys import batch_values
from iotiam.discovery.models import AssetStatus, IdentifierKind, Sighting, SourceContext
from iotiam.discovery.reconcile import Reconciler
from iotiam.discovery.service import OBSERVE_SECONDS, Discovery
from iotiam.errors import Forbidden, InvalidInput, NotFound
from iotiam.inventory.models import Device, DeviceState, OrgUnit, OrgUnitKind
from iotiam.kernel import ROOT_PATH, SYSTEM, Principal, Role
from iotiam.testing.fakes.services import MemoryServices, memory_services

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACME, BETA = "/root/acme/", "/root/beta/"
ACME_ADMIN = Principal("acme-admin", Role.ADMIN, "acme", ACME)
BETA_ADMIN = Principal("beta-admin", Role.ADMIN, "beta", BETA)


@pytest.fixture
def svc() -> MemoryServices:
    services = memory_services()
    with services.database() as uow:
        for unit in ("acme", "beta"):
            uow.org_units.add(OrgUnit(unit, unit, OrgUnitKind.TENANT, "root",
                                      f"/root/{unit}/", T0))
        for device_id, path, mac in (("cam-a", ACME, "02:00:00:00:00:0a"),
                                     ("cam-b", BETA, "02:00:00:00:00:0b")):
            uow.devices.add(Device(id=device_id, type_name="sensor", org_unit_id=path[6:-1],
                                   org_path=path, state=DeviceState.ACTIVE, site="hq",
                                   location=None, attributes={"mac": mac.upper()},
                                   created_at=T0, updated_at=T0))
    return services


def lines(*records: dict[str, object]) -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(r).encode() + b"\n" for r in records))


RECORDS = [
    {"seen_at": "2026-03-01T10:00:00Z", "ip": "10.0.0.9", "mac": "02:00:00:00:00:99",
     "hostname": "printer"},
    {"seen_at": 1772359200, "mac": "02-00-00-00-00-0A", "ip": "10.0.0.10", "site": "hq"},
    {"seen_at": 1772359300, "hostname": "printer", "open_ports": [631, 80]},
]


def imports(svc: MemoryServices) -> list[dict[str, object]]:
    return [r.details for r in svc.uow.audit.records if r.tag == AuditTag.SIGHTINGS_IMPORTED]


def test_import_ok_matches_and_creates_assets(svc: MemoryServices) -> None:
    seen: list[int] = []
    report = svc.discovery.import_stream(SYSTEM, "jsonl", lines(*RECORDS), SourceContext(),
                                         progress=seen.append)
    assert (report.read, report.added, report.matched, report.new_assets,
            report.refused) == (3, 3, 1, 1, 0)
    assert seen == [3]
    (asset,) = svc.discovery.assets(SYSTEM)
    assert (asset.status, asset.sightings, asset.hostname, asset.open_ports) == (
        AssetStatus.UNMANAGED, 2, "printer", (80, 631))
    assert (IdentifierKind.MAC, "02:00:00:00:00:99") in asset.identifiers
    (presence,) = svc.discovery.reader.iter_devices_seen(org_path=ROOT_PATH)
    assert (presence.device_id, presence.places) == ("cam-a", (("hq", "10.0.0.10"),))


def test_import_ok_same_file_twice_adds_nothing(svc: MemoryServices) -> None:
    svc.discovery.import_stream(SYSTEM, "jsonl", lines(*RECORDS), SourceContext())
    before = (svc.discovery.assets(SYSTEM), list(svc.uow.discovery.digests))
    again = svc.discovery.import_stream(SYSTEM, "jsonl", lines(*RECORDS), SourceContext())
    assert (again.added, again.duplicates, again.matched, again.new_assets) == (0, 3, 0, 0)
    assert (svc.discovery.assets(SYSTEM), list(svc.uow.discovery.digests)) == before


def test_import_ok_one_audit_record_per_batch(svc: MemoryServices) -> None:
    small = Discovery(svc.database, svc.clock, svc.audit, batch_size=2)
    small.import_stream(SYSTEM, "jsonl", lines(*RECORDS), SourceContext())
    records = imports(svc)
    assert [r["count"] for r in records] == [2, 1]
    assert all(len(str(r["rows_blake2b"])) == 32 for r in records)


def test_import_ok_refusals_per_line(svc: MemoryServices) -> None:
    body = io.BytesIO(lines(RECORDS[0], {"mac": "not-a-mac"}, {"colour": "red", "ip": "10.0.0.1"}
                            ).getvalue() + b"{oops\n" + b"x" * 70_000 + b"\n")
    report = svc.discovery.import_stream(SYSTEM, "jsonl", body, SourceContext())
    assert (report.added, report.refused) == (1, 4)
    assert [r.position for r in report.refusals] == [2, 3, 4, 5]
    assert "MAC" in report.refusals[0].reason and "colour" in report.refusals[1].reason
    assert "longer" in report.refusals[3].reason


def test_import_fail_not_the_format(svc: MemoryServices) -> None:
    with pytest.raises(InvalidInput) as refused:
        svc.discovery.import_stream(SYSTEM, "jsonl", io.BytesIO(b"<xml/>\n<nmaprun>\n"),
                                    SourceContext())
    assert [r["line"] for r in refused.value.extra["refusals"]] == [1, 2]
    assert not svc.uow.discovery.digests and not imports(svc)


@pytest.mark.parametrize(("who", "source"), [
    (Principal("v", Role.VIEWER, "root", ROOT_PATH), "jsonl"),
    (SYSTEM, "nosuch"),
], ids=["fail/viewer", "fail/unknown-source"])
def test_import_fail_refused_whole(svc: MemoryServices, who: Principal, source: str) -> None:
    with pytest.raises((Forbidden, InvalidInput)) as refused:
        svc.discovery.import_stream(who, source, lines(*RECORDS), SourceContext())
    if source == "nosuch":
        assert "jsonl" in refused.value.detail  # the known sources are listed
    assert not svc.uow.discovery.digests
    assert svc.uow.audit.records[-1].tag == AuditTag.DISCOVERY_IMPORT_REFUSED


def test_scope_fail_tenant_never_matches_or_sees_another(svc: MemoryServices) -> None:
    beta_view = svc.discovery.import_stream(
        BETA_ADMIN, "jsonl", lines({"mac": "02:00:00:00:00:77", "hostname": "beta-cam"}),
        SourceContext())
    assert beta_view.new_assets == 1
    # acme sees beta's device id, beta's registered MAC and beta's asset's MAC: none match
    report = svc.discovery.import_stream(ACME_ADMIN, "jsonl", lines(
        {"client_id": "cam-b"}, {"mac": "02:00:00:00:00:0b"},
        {"mac": "02:00:00:00:00:77"}), SourceContext())
    assert (report.matched, report.new_assets) == (0, 3)
    acme_assets = svc.discovery.assets(ACME_ADMIN)
    assert {a.org_path for a in acme_assets} == {ACME} and len(acme_assets) == 3
    (beta_asset,) = svc.discovery.assets(BETA_ADMIN)
    with pytest.raises(NotFound):
        svc.discovery.asset(ACME_ADMIN, beta_asset.id)
    assert svc.discovery.count_assets(ACME_ADMIN) == 3
    assert svc.discovery.count_assets(SYSTEM) == 4
    # acme's own device matches
    mine = svc.discovery.import_stream(ACME_ADMIN, "jsonl", lines({"mac": "02:00:00:00:00:0a"}),
                                       SourceContext())
    assert mine.matched == 1


def test_import_ok_keeps_full_rows_only_of_sightings_that_show_a_credential(
        svc: MemoryServices) -> None:
    report = svc.discovery.import_stream(SYSTEM, "jsonl", lines(
        {"mac": "02:00:00:00:00:71", "ip": "10.0.0.71"},
        {"psk_identity": "psk-71", "ip": "10.0.0.71"}), SourceContext())
    assert report.added == 2 and len(svc.uow.discovery.digests) == 2
    ((kept, _, _),) = svc.uow.discovery.sightings.values()
    assert kept.psk_identity == "psk-71"


def test_observe_ok_queued_then_stored(svc: MemoryServices) -> None:
    seen = Sighting(source="broker", seen_at=1772359200.0, client_id="cam-a", ip="10.1.1.1")
    svc.discovery.observe([seen, seen])
    assert not svc.uow.discovery.digests  # queued, not stored by the caller
    assert svc.discovery.flush_observed() == 2
    assert len(svc.uow.discovery.digests) == 1
    (presence,) = svc.discovery.reader.iter_devices_seen(org_path=ROOT_PATH)
    assert presence.sources == ("broker",)


def test_reads_fail_bad_filters(svc: MemoryServices) -> None:
    with pytest.raises(InvalidInput):
        svc.discovery.assets(SYSTEM, status="lost")
    with pytest.raises(InvalidInput):
        svc.discovery.assets(SYSTEM, limit=0)


def test_credentials_ok_seen_on_device_and_asset(svc: MemoryServices) -> None:
    fp = "cd" * 32
    svc.discovery.import_stream(SYSTEM, "jsonl", lines(
        {"certificate": fp, "client_id": "cam-a", "ip": "10.0.0.1", "site": "hq"},
        {"certificate": fp, "mac": "02:00:00:00:00:55", "ip": "10.0.0.2", "site": "hq"}),
        SourceContext())
    (cred,) = svc.discovery.reader.iter_credentials_seen(org_path=ROOT_PATH)
    assert cred.kind is IdentifierKind.CERTIFICATE and cred.device_ids == ("cam-a",)
    assert cred.places == (("hq", "10.0.0.1"), ("hq", "10.0.0.2"))


def test_observe_ok_the_background_loop_stores_and_stops(svc: MemoryServices) -> None:
    stop = threading.Event()
    loop = threading.Thread(target=svc.discovery.run_observer, args=(stop,))
    loop.start()
    try:
        svc.discovery.observe([Sighting(source="api", seen_at=1772359200.0, client_id="who")])
        deadline = time.monotonic() + 5
        while not svc.uow.discovery.digests and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the loop is back to waiting for the next sightings
    finally:
        stop.set()
        # it sees the stop within STOP_SECONDS, not after its OBSERVE_SECONDS wait
        loop.join(OBSERVE_SECONDS * 0.8)
    assert not loop.is_alive()
    assert len(svc.uow.discovery.digests) == 1


def test_import_ok_says_so_on_the_change_feed_only_when_it_stored_something(
        svc: MemoryServices) -> None:
    heard: list[object] = []
    svc.changes.subscribe((SightingsImported,), lambda p: heard.append(p.change))
    svc.discovery.import_stream(SYSTEM, "jsonl", lines(*RECORDS), SourceContext())
    assert heard == [SightingsImported(ROOT_PATH, 3)]
    svc.discovery.import_stream(SYSTEM, "jsonl", lines(*RECORDS), SourceContext())
    assert heard == [SightingsImported(ROOT_PATH, 3)]  # nothing new: nothing to judge again


@pytest.mark.parametrize("read_ahead", [False, True])
def test_import_ok_collector_paused_only_while_it_runs(svc: MemoryServices,
                                                       read_ahead: bool) -> None:
    # an import pauses the cyclic collector (its objects are acyclic) and hands it back
    # as it found it, on success and on failure alike
    paused: list[bool] = []
    small = Discovery(svc.database, svc.clock, svc.audit, batch_size=1, read_ahead=read_ahead)
    small.import_stream(SYSTEM, "jsonl", lines(*RECORDS), SourceContext(),
                        progress=lambda _: paused.append(not gc.isenabled()))
    assert paused == [True, True, True] and gc.isenabled()
    with pytest.raises(InvalidInput):
        small.import_stream(SYSTEM, "jsonl", io.BytesIO(b"{oops\n"), SourceContext())
    assert gc.isenabled()
    gc.disable()
    try:
        small.import_stream(SYSTEM, "jsonl", lines(RECORDS[0]), SourceContext())
        assert not gc.isenabled()  # a caller that had paused it keeps it paused
    finally:
        gc.enable()


@pytest.mark.parametrize("read_ahead", [False, True])
def test_import_ok_values_gathered_ahead_only_for_a_batch_all_new(
        svc: MemoryServices, monkeypatch: pytest.MonkeyPatch, read_ahead: bool) -> None:
    # a batch's values to look up may be gathered while the batch before is stored; they
    # are used only when every sighting of the batch is new, since the lookups of a
    # sighting already imported could change what the others decide
    used: list[bool] = []
    real = Discovery._lookups

    def checking(uow: object, scope: str, keyed: list[object], gathered: object = None
                 ) -> object:
        if gathered is not None:
            used.append(gathered == batch_values(keyed))  # type: ignore[arg-type]
        return real(uow, scope, keyed, gathered)  # type: ignore[arg-type]

    monkeypatch.setattr(Discovery, "_lookups", staticmethod(checking))
    records = [{"seen_at": 1772359200 + n, "mac": f"02:00:00:00:01:{n:02x}",
                "ip": f"10.0.1.{n}", "hostname": "printer"} for n in range(6)]
    small = Discovery(svc.database, svc.clock, svc.audit, batch_size=2, read_ahead=read_ahead)
    small.import_stream(SYSTEM, "jsonl", lines(records[5]), SourceContext())
    report = small.import_stream(SYSTEM, "jsonl", lines(*records), SourceContext())
    assert (report.read, report.added, report.duplicates) == (6, 5, 1)
    assert used and all(used)


def test_import_ok_same_rows_reading_ahead_or_not() -> None:
    # reading the next batch on another thread changes no decision and no stored row
    records = [{"seen_at": 1772359200 + n, "mac": f"02:00:00:00:02:{n % 7:02x}",
                "ip": f"10.0.2.{n % 5}", "hostname": f"box-{n % 3}"} for n in range(40)]
    results = []
    for ahead in (False, True):
        services = memory_services()
        ids = (f"as-{n:016x}" for n in range(1000))
        discovery = Discovery(services.database, services.clock, services.audit,
                              batch_size=3, read_ahead=ahead, new_id=ids.__next__)
        report = discovery.import_stream(SYSTEM, "jsonl", lines(*records), SourceContext())
        results.append((report, discovery.assets(SYSTEM), imports(services)))
    assert results[0] == results[1]
    assert results[0][0].new_assets > 1 and len(results[0][1]) > 1


@pytest.mark.parametrize("read_ahead", [False, True])
def test_import_fail_a_batch_that_fails_stops_the_import_and_keeps_the_ones_before(
        svc: MemoryServices, monkeypatch: pytest.MonkeyPatch, read_ahead: bool) -> None:
    records = [{"seen_at": 1772359200 + n, "mac": f"02:00:00:00:03:{n:02x}"}
               for n in range(6)]
    stored: list[int] = []
    real = Reconciler.outcome

    def failing_second(self: Reconciler) -> object:
        stored.append(len(stored))
        if len(stored) == 2:
            raise RuntimeError("disk full")
        return real(self)

    monkeypatch.setattr(Reconciler, "outcome", failing_second)
    small = Discovery(svc.database, svc.clock, svc.audit, batch_size=2, read_ahead=read_ahead)
    with pytest.raises(RuntimeError, match="disk full"):
        small.import_stream(SYSTEM, "jsonl", lines(*records), SourceContext())
    assert stored == [0, 1]  # the third batch is never stored
    assert sorted(a.mac or "" for a in svc.discovery.assets(SYSTEM)) == [
        "02:00:00:00:03:00", "02:00:00:00:03:01"]


class _BrokenAfter(io.RawIOBase):
    """A body whose connection breaks after ``good`` bytes."""

    def __init__(self, good: bytes) -> None:
        self._good = io.BytesIO(good)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        size = self._good.readinto(buffer)  # type: ignore[arg-type]
        if not size:
            raise InvalidInput("the client went away before the body ended")
        return size


@pytest.mark.parametrize("read_ahead", [False, True])
def test_import_fail_body_breaks_keeps_the_batches_read_before(
        svc: MemoryServices, read_ahead: bool) -> None:
    records = [{"seen_at": 1772359200 + n, "mac": f"02:00:00:00:04:{n:02x}"}
               for n in range(5)]
    body = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    small = Discovery(svc.database, svc.clock, svc.audit, batch_size=2, read_ahead=read_ahead)
    with pytest.raises(InvalidInput, match="went away"):
        small.import_stream(SYSTEM, "jsonl", io.BufferedReader(_BrokenAfter(body)),
                            SourceContext())
    # the two whole batches read before the break are stored; the half batch is not
    assert len(svc.discovery.assets(SYSTEM)) == 4
