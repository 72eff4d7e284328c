"""Use cases of the response layer: take findings, act by playbook and mode, and undo.

``report`` is the one way findings come in (the event pipeline and attestation both call
it). For each finding, in one transaction: one that belongs to the episode of a live
finding of its subject (device, else source address, else fleet) and type is counted
again (or escalates it) instead of duplicated; any other is stored and audited as new,
with its own time (``docs/events.md``, *Findings and their episodes*). Then, outside the
transaction, the device type's mode decides: ``learn`` keeps it quiet (the engine raises
nothing in learn mode anyway; attestation findings still get stored), ``monitor`` alerts,
``enforce`` alerts and carries out the playbook's actions. Each action is its own
audited change and is recorded as a ``Mitigation`` that says how to undo it: lifting a
quarantine puts the device back into the state it was in, so exactly its previous
rights come back (the policy engine and the broker sync derive rights from state).
Revocation is final (G4): marking its finding a false positive cannot bring the
credential back, only a new enrollment can.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import DetectionModeChanged, Published
from iotiam.clock import Clock
from iotiam.detection.models import (
    UNKNOWN_TYPE,
    DetectionMode,
    Finding,
    FindingState,
    FindingType,
    format_timestamp,
)
from iotiam.errors import Conflict, InvalidInput, NotFound
from iotiam.inventory.models import DeviceState
from iotiam.inventory.ports import CredentialRevoker, DeviceLifecycle, visible_device
from iotiam.kernel import ROOT_PATH, Principal, Role, Transactions
from iotiam.response.alerts import AlertDispatcher
from iotiam.response.folding import fold
from iotiam.response.models import (
    DEFAULT_PLAYBOOK,
    Action,
    EventBatch,
    Mitigation,
    Playbook,
    StoredFinding,
)
from iotiam.response.ports import ResponseUnitOfWork
from iotiam.response.scoring import TrustScores
from iotiam.response.would_act import WOULD_ACT_DEFAULT_DAYS, would_act

log = logging.getLogger(__name__)

#: who acts when the playbook acts (audit records name it)
DETECTION = Principal(name="detection", role=Role.ADMIN, org_unit_id="root",
                      org_path=ROOT_PATH)
PLAYBOOK_DOCUMENT = "playbook"
#: how long an upload's link to its findings is kept (the event stream keeps events as
#: long: ``eventstream.wire``); the findings themselves stay
BATCH_RETENTION = timedelta(days=7)
#: the mode of events with no device type (``UNKNOWN_TYPE``) is kept as a document: it
#: is no device type of the inventory
UNKNOWN_MODE_DOCUMENT = "unknown_mode"
#: events with no device type are monitored unless set otherwise: their findings are
#: about clients iotiam does not know (credential stuffing, a scanner), and a baseline
#: of attackers' behaviour is nothing worth learning
UNKNOWN_DEFAULT_MODE = DetectionMode.MONITOR

#: how long the admin paths trust the cached modes and playbook (other processes may
#: change them; a mode change also arrives through the change feed: ``settings_changed``)
SETTINGS_TTL = 2.0
MAX_NOTE = 2000

_E = TypeVar("_E")
UnitOfWorkT = TypeVar("UnitOfWorkT", bound=ResponseUnitOfWork)
FalsePositiveListener = Callable[[Finding], None]


class IncidentResponse(Generic[UnitOfWorkT]):
    """Findings, their lifecycle, playbooks, modes and mitigations.

    A mitigation moves the device through the inventory (``devices``) or revokes its
    credentials (``revoker``) in the transaction that records it, so response's
    transactions are ones the lifecycle and the revoker work in too (``UnitOfWorkT``);
    response itself only reads devices.

    The per-type detection modes are held here and only here: the detection engine
    reads them through ``mode_of`` (its ``ModeSource``, ``detection/ports.py``).
    """

    def __init__(self, uow: Transactions[UnitOfWorkT], clock: Clock, audit: Auditor,
                 devices: DeviceLifecycle[UnitOfWorkT],
                 revoker: CredentialRevoker[UnitOfWorkT], alerts: AlertDispatcher,
                 trust: TrustScores) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._devices = devices
        self._revoker = revoker
        self._alerts = alerts
        self._trust = trust
        self._lock = threading.Lock()
        # one reader at a time: a read that began before a mode changed must not
        # replace the modes read after it
        self._settings_lock = threading.Lock()
        self._settings_read = 0.0
        #: None until first read; then replaced whole on every read, never edited
        self._modes: dict[str, DetectionMode] | None = None
        self._unknown_mode = UNKNOWN_DEFAULT_MODE
        self._playbook = DEFAULT_PLAYBOOK
        self._fp_listeners: list[FalsePositiveListener] = []
        self.default_mode = DetectionMode.LEARN

    # -- wiring ---------------------------------------------------------------------------

    def on_false_positive(self, listener: FalsePositiveListener) -> None:
        """Call ``listener(finding)`` when an admin marks a finding a false positive."""
        self._fp_listeners.append(listener)

    # -- settings -------------------------------------------------------------------------

    def _refresh_settings(self) -> dict[str, DetectionMode]:
        modes = self._modes
        if modes is None or time.monotonic() - self._settings_read >= SETTINGS_TTL:
            modes = self._read_settings()
        return modes

    def _read_settings(self) -> dict[str, DetectionMode]:
        with self._settings_lock:
            with self._uow.reading() as uow:
                modes = uow.detection_settings.modes()
                document = uow.detection_settings.get_document(PLAYBOOK_DOCUMENT)
                unknown = uow.detection_settings.get_document(UNKNOWN_MODE_DOCUMENT)
            self._playbook = Playbook.from_json(json.loads(document)) if document \
                else DEFAULT_PLAYBOOK
            self._unknown_mode = DetectionMode(json.loads(unknown)) if unknown \
                else UNKNOWN_DEFAULT_MODE
            self._modes = modes
            self._settings_read = time.monotonic()
        return modes

    def modes(self) -> dict[str, DetectionMode]:
        """Every device type with a mode set (others are in the default mode)."""
        return dict(self._refresh_settings())

    def unknown_mode(self) -> DetectionMode:
        """The mode of events with no device type (``UNKNOWN_TYPE``)."""
        self._refresh_settings()
        return self._unknown_mode

    def mode_of(self, device_type: str | None) -> DetectionMode:
        """The mode of a device type: the detection engine asks for every event, so this
        is one dict lookup (no lock, no clock; the database only the first time). The
        modes are read again when the change feed says one changed (``settings_changed``)
        and when the admin paths find them older than ``SETTINGS_TTL``."""
        modes = self._modes
        if modes is None:
            modes = self._read_settings()
        if device_type is None:
            return self._unknown_mode
        return modes.get(device_type, self.default_mode)

    def set_mode(self, actor: Principal, device_type: str, mode: str) -> DetectionMode:
        """Switch a device type between learn, monitor and enforce (global admins);
        ``UNKNOWN_TYPE`` sets the mode of events with no device type."""
        draft = AuditDraft(tag=AuditTag.DETECTION_MODE_SET, actor=actor.name,
                           org_path=actor.org_path, subject=f"device-type:{device_type[:128]}")
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.ADMIN, "setting a detection mode")
            if not actor.is_global:
                raise NotFound(f"device type {device_type!r} not found")
            try:
                parsed = DetectionMode(mode)
            except ValueError:
                raise InvalidInput(f"mode must be one of learn, monitor, enforce; not "
                                   f"{mode[:32]!r}") from None
            if device_type == UNKNOWN_TYPE:
                saved = uow.detection_settings.get_document(UNKNOWN_MODE_DOCUMENT)
                before = DetectionMode(json.loads(saved)) if saved else UNKNOWN_DEFAULT_MODE
                uow.detection_settings.put_document(UNKNOWN_MODE_DOCUMENT,
                                                    json.dumps(str(parsed)), self._clock.now())
            elif uow.device_types.get(device_type) is None:
                raise NotFound(f"device type {device_type!r} not found")
            else:
                before = uow.detection_settings.modes().get(device_type, self.default_mode)
                uow.detection_settings.set_mode(device_type, parsed, self._clock.now(),
                                                actor.name)
            uow.changes.record(DetectionModeChanged(device_type, str(parsed)))
            self._audit.append(uow, replace(draft, details={"from": str(before),
                                                            "to": str(parsed)}))
        return parsed

    def settings_changed(self, published: Published) -> None:
        """A mode was set (here or in another process): read the settings again now, so
        the detection engine judges the next event in the new mode (if the read fails,
        the old modes stay in force and the next admin path reads again)."""
        self._settings_read = 0.0
        self._read_settings()

    def playbook(self) -> Playbook:
        """The playbook in force."""
        self._refresh_settings()
        return self._playbook

    def set_playbook(self, actor: Principal, document: object) -> Playbook:
        """Replace the playbook (global admins); the whole document is checked first."""
        draft = AuditDraft(tag=AuditTag.PLAYBOOK_SET, actor=actor.name,
                           org_path=actor.org_path, subject="playbook")
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.ADMIN, "changing the playbook")
            if not actor.is_global:
                raise Conflict("the playbook is global: only a root-scoped admin may change it")
            playbook = Playbook.from_json(document)
            uow.detection_settings.put_document(
                PLAYBOOK_DOCUMENT, json.dumps(playbook.to_json()), self._clock.now())
            self._audit.append(uow, replace(draft, details=playbook.to_json()))
        self._settings_read = 0.0
        return playbook

    # -- findings in ----------------------------------------------------------------------

    def report(self, findings: Sequence[Finding]) -> None:
        """Store, alert and act on findings (the ``FindingSink`` of every detector)."""
        self.handle(findings)

    def handle(self, findings: Sequence[Finding]) -> list[StoredFinding]:
        """``report``, returning the findings that were new or escalated (repeats within
        a live finding's episode at the same or a lower severity are only counted; how
        findings fold: ``response/folding.py``)."""
        if not findings:
            return []
        self._refresh_settings()
        fresh: list[StoredFinding] = []
        links: dict[str, list[str]] = {}
        with self._lock, self._uow() as uow:
            now = self._clock.now()
            drafts = []
            devices = uow.devices.get_many([f.device_id for f in findings if f.device_id])
            for finding in findings:
                folded = fold(uow, finding, now, devices, self.mode_of)
                if folded.audit is not None:
                    fresh.append(folded.stored)
                    drafts.append(folded.audit)
                if finding.batch is not None:
                    links.setdefault(finding.batch, []).append(folded.stored.id)
            for batch_id, finding_ids in links.items():
                # a batch id comes with the events (through the stream, too): only an
                # upload recorded here is linked
                if uow.findings.get_batch(batch_id) is not None:
                    uow.findings.link_batch(batch_id, finding_ids)
            self._audit.append_many(uow, drafts)
        for stored in fresh:
            self._respond(stored)
        touched = sorted({s.finding.device_id for s in fresh if s.finding.device_id})
        if touched:
            self._trust.recompute(touched)
        return fresh

    def _respond(self, stored: StoredFinding) -> None:
        if stored.mode is DetectionMode.LEARN:
            return
        actions = self._playbook.actions_for(stored.finding)
        taken: list[str] = []
        if Action.ALERT in actions:
            # with no channel the dispatcher counts it as undelivered (stats), not taken
            self._alerts.send(alert_body(stored))
            if self._alerts.enabled:
                taken.append(str(Action.ALERT))
        if stored.mode is DetectionMode.ENFORCE and stored.finding.device_id is not None:
            for action in (Action.QUARANTINE, Action.REVOKE):
                if action in actions:
                    try:
                        if self._mitigate(stored, action):
                            taken.append(str(action))
                    except (Conflict, NotFound) as e:
                        # e.g. the device is decommissioned or already quarantined
                        log.info("%s of %s skipped: %s", action, stored.finding.device_id, e)
        if taken:
            with self._uow() as uow:
                uow.findings.add_actions(stored.id, taken)

    def _mitigate(self, stored: StoredFinding, action: Action) -> bool:
        device_id = stored.finding.device_id
        assert device_id is not None
        with self._uow() as uow:
            device = uow.devices.get(device_id, for_update=True)
            if device is None:
                raise NotFound(f"device {device_id!r} not found")
            now = self._clock.now()
            previous: DeviceState | None = None
            details: dict[str, Any] = {"finding": stored.id, "action": str(action)}
            if action is Action.QUARANTINE:
                if device.state is DeviceState.QUARANTINED:
                    return False
                # worse evidence of an episode an admin already lifted the quarantine
                # of (it happened before the lift, it arrived after): the admin's call
                # stands; the alert still goes out
                if uow.mitigations.lifted_since(
                        stored.id, datetime.fromtimestamp(stored.finding.at, UTC)):
                    return False
                previous = device.state
                self._devices.quarantine(uow, device)
                details.update({"from": str(previous), "to": str(DeviceState.QUARANTINED)})
            else:
                details["credentials_revoked"] = self._revoker.revoke_device_credentials(
                    uow, DETECTION, device, "keyCompromise")
            mitigation = Mitigation(id=f"mit-{secrets.token_hex(8)}", finding_id=stored.id,
                                    device_id=device.id, action=action,
                                    previous_state=previous, applied_at=now)
            uow.mitigations.add(mitigation)
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.MITIGATION_APPLIED, actor=DETECTION.name,
                org_path=device.org_path, subject=f"device:{device.id}",
                details={**details, "mitigation": mitigation.id}))
        return True

    # -- findings out ---------------------------------------------------------------------

    def list_findings(self, actor: Principal, *, state: str | None = None,
                      device_id: str | None = None, finding_type: str | None = None,
                      before_id: str | None = None, limit: int = 100) -> list[StoredFinding]:
        """Findings under the caller's subtree, newest first."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        parsed_state = _parse(FindingState, state, "state")
        parsed_type = _parse(FindingType, finding_type, "type")
        with self._uow.reading() as uow:
            return uow.findings.page(org_path=actor.org_path, state=parsed_state,
                                     device_id=device_id, finding_type=parsed_type,
                                     before_id=before_id, limit=limit)

    def open_batch(self, actor: Principal, events: int) -> EventBatch:
        """Record an upload of ``events`` events before they are scored: the findings they
        raise are linked to it (in this process now, or by a stream worker later)."""
        actor.require(Role.OPERATOR, "sending events")
        batch = EventBatch(id=f"bat-{secrets.token_hex(12)}", org_path=actor.org_path,
                           created_at=self._clock.now(), created_by=actor.name, events=events)
        with self._uow() as uow:
            uow.findings.add_batch(batch)
        return batch

    def discard_batch(self, batch: EventBatch) -> None:
        """Forget an upload whose events were refused as a whole (the stream was down)."""
        with self._uow() as uow:
            uow.findings.remove_batch(batch.id)

    def prune_batches(self) -> int:
        """Forget uploads older than ``BATCH_RETENTION`` (their findings stay); how many."""
        with self._uow() as uow:
            return uow.findings.prune_batches(self._clock.now() - BATCH_RETENTION)

    def batch_findings(self, actor: Principal, batch_id: str
                       ) -> tuple[EventBatch, list[StoredFinding]]:
        """An upload the caller may see and the findings its events raised so far that
        the caller may see (404 for another tenant's upload, G9)."""
        with self._uow.reading() as uow:
            batch = uow.findings.get_batch(batch_id)
            if batch is None or not actor.sees(batch.org_path):
                raise NotFound(f"event batch {batch_id!r} not found")
            found = [f for f in uow.findings.batch_findings(batch.id)
                     if actor.sees(f.org_path)]
        return batch, found

    def would_act(self, actor: Principal, *, days: int = WOULD_ACT_DEFAULT_DAYS
                  ) -> dict[str, Any]:
        """What the playbook would have done to the findings raised in monitor mode in the
        last ``days``, by finding type and device type (``response/would_act.py``)."""
        return would_act(self._uow, actor, self.playbook(), self._clock.now(), days)

    def get_finding(self, actor: Principal, finding_id: str) -> StoredFinding:
        """One finding the caller may see (404 otherwise, G9)."""
        with self._uow.reading() as uow:
            return _visible(uow, actor, finding_id)

    def acknowledge(self, actor: Principal, finding_id: str, note: str = "") -> StoredFinding:
        """open -> acknowledged."""
        return self._move(actor, finding_id, FindingState.ACKNOWLEDGED, note)

    def resolve(self, actor: Principal, finding_id: str, note: str = "", *,
                false_positive: bool = False) -> StoredFinding:
        """-> resolved, or -> false_positive: that also lifts the finding's mitigations
        and teaches the baseline that the behaviour is normal."""
        target = FindingState.FALSE_POSITIVE if false_positive else FindingState.RESOLVED
        stored = self._move(actor, finding_id, target, note)
        if false_positive:
            for listener in self._fp_listeners:
                listener(stored.finding)
            if stored.finding.device_id:
                self._lift(actor, stored.finding.device_id, finding_id=stored.id)
        if stored.finding.device_id:
            self._trust.recompute([stored.finding.device_id])
        return stored

    def _move(self, actor: Principal, finding_id: str, target: FindingState,
              note: str) -> StoredFinding:
        draft = AuditDraft(tag=AuditTag.FINDING_UPDATED, actor=actor.name,
                           org_path=actor.org_path, subject=f"finding:{finding_id[:64]}")
        if len(note) > MAX_NOTE:
            raise InvalidInput(f"a note has at most {MAX_NOTE} characters")
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.OPERATOR, "changing a finding")
            stored = _visible(uow, actor, finding_id, for_update=True)
            stored.can_move_to(target)
            now = self._clock.now()
            uow.findings.set_state(stored.id, target, now, actor.name, note or None)
            self._audit.append(uow, replace(
                draft, org_path=stored.org_path,
                details={"from": str(stored.state), "to": str(target), "note": note[:300]}))
        return replace(stored, state=target, updated_at=now, updated_by=actor.name,
                       note=note or stored.note)

    # -- undoing --------------------------------------------------------------------------

    def mitigations(self, actor: Principal, device_id: str) -> list[Mitigation]:
        """Mitigations in force on a device."""
        with self._uow.reading() as uow:
            device = visible_device(uow.devices, actor, device_id)
            return uow.mitigations.active_for(device.id)

    def lift_quarantine(self, actor: Principal, device_id: str) -> list[Mitigation]:
        """Undo the device's quarantine: it returns to the state it was in before."""
        lifted = self._lift(actor, device_id, finding_id=None)
        if not lifted:
            raise Conflict(f"device {device_id!r} has no quarantine to lift")
        self._trust.recompute([device_id])
        return lifted

    def _lift(self, actor: Principal, device_id: str, *, finding_id: str | None
              ) -> list[Mitigation]:
        draft = AuditDraft(tag=AuditTag.MITIGATION_LIFTED, actor=actor.name,
                           org_path=actor.org_path, subject=f"device:{device_id[:128]}")
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.OPERATOR, "lifting a mitigation")
            device = visible_device(uow.devices, actor, device_id, for_update=True)
            lifted = [m for m in uow.mitigations.active_for(device_id)
                      if m.action is Action.QUARANTINE
                      and (finding_id is None or m.finding_id == finding_id)]
            if not lifted:
                return []
            now = self._clock.now()
            # the oldest quarantine knows the state from before any of them
            restore = lifted[0].previous_state or DeviceState.ACTIVE
            for mitigation in lifted:
                uow.mitigations.lift(mitigation.id, now, actor.name)
            if device.state is DeviceState.QUARANTINED and \
                    not [m for m in uow.mitigations.active_for(device_id)
                         if m.action is Action.QUARANTINE]:
                self._devices.restore(uow, device, restore)
            self._audit.append(uow, replace(
                draft, org_path=device.org_path,
                details={"mitigations": [m.id for m in lifted], "from": str(device.state),
                         "to": str(restore)}))
        return [replace(m, lifted_at=now, lifted_by=actor.name) for m in lifted]


def _visible(uow: ResponseUnitOfWork, actor: Principal, finding_id: str, *,
             for_update: bool = False) -> StoredFinding:
    stored = uow.findings.get(finding_id, for_update=for_update)
    if stored is None or not actor.sees(stored.org_path):
        raise NotFound(f"finding {finding_id!r} not found")
    return stored


def _parse(kind: Callable[[str], _E], value: str | None, name: str) -> _E | None:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        raise InvalidInput(f"unknown {name} {value[:64]!r}") from None


def alert_body(stored: StoredFinding) -> dict[str, Any]:
    """What an alert carries."""
    finding = stored.finding
    return {"finding_id": stored.id, "type": str(finding.type),
            "severity": finding.severity.label, "device_id": finding.device_id,
            "device_type": finding.device_type, "summary": finding.summary,
            "detector": finding.detector, "at": format_timestamp(finding.at),
            "mode": str(stored.mode), "evidence": dict(finding.evidence)}
