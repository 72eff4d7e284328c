"""Monitor mode's answer to "is enforce safe yet?": what the playbook would have done.

The playbook decides by finding type and severity only, so the findings of a period are
counted by type, device type, severity, mode and whether they name a device (one grouped
query, ``FindingStore.would_act_counts``) and the playbook is asked once per group.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from iotiam.detection.models import UNKNOWN_TYPE, DetectionMode
from iotiam.errors import InvalidInput
from iotiam.kernel import Principal, Transactions
from iotiam.response.models import Playbook, WouldActTally
from iotiam.response.ports import ResponseUnitOfWork

#: how far back ``would_act`` counts by default, and at most
WOULD_ACT_DEFAULT_DAYS = 7
WOULD_ACT_MAX_DAYS = 90


def would_act(uow: Transactions[ResponseUnitOfWork], actor: Principal, playbook: Playbook,
              now: datetime, days: int) -> dict[str, Any]:
    """The findings raised in monitor mode under the caller's org unit in the last
    ``days``, by finding type and device type, with the actions ``playbook`` names for
    them (and the same counts for enforce mode, where it did act)."""
    if not 1 <= days <= WOULD_ACT_MAX_DAYS:
        raise InvalidInput(f"days must be between 1 and {WOULD_ACT_MAX_DAYS}")
    since = now - timedelta(days=days)
    with uow.reading() as reading:
        groups = reading.findings.would_act_counts(org_path=actor.org_path, since=since)
    by_type: dict[str, WouldActTally] = {}
    by_device_type: dict[str, WouldActTally] = {}
    total = WouldActTally()
    enforced = WouldActTally()
    for group in groups:
        actions = playbook.actions_of(group.finding_type, group.severity)
        if group.mode is DetectionMode.ENFORCE:
            enforced.count(group, actions)
        if group.mode is not DetectionMode.MONITOR:
            continue
        total.count(group, actions)
        by_type.setdefault(str(group.finding_type), WouldActTally()).count(group, actions)
        by_device_type.setdefault(group.device_type or UNKNOWN_TYPE,
                                  WouldActTally()).count(group, actions)
    return {"since": since.isoformat(), "days": days, "monitor": total.to_json(),
            "enforce": enforced.to_json(),
            "by_finding_type": [{"finding_type": k, **v.to_json()}
                                for k, v in sorted(by_type.items())],
            "by_device_type": [{"device_type": k, **v.to_json()}
                               for k, v in sorted(by_device_type.items())]}
