"""Judging the credential day buckets (``device_credential_days``) at an instant.

A holder's status depends on where its instants lie against a few thresholds: now (its
newest certificate's end and renewal point, its latest end), now + the expiring window,
now - the rotation age, now - each type's maximum key age. A bucket whose days are all
on another day than their thresholds' is judged whole, however many devices it counts;
a bucket with an instant on a threshold's day (or an irregular one, judged from its
certificates) is left to the rows, which :meth:`Thresholds.judge` names with a
predicate that the instants' indexes answer. With certificates spread over a year, the
rows read are a few days' worth of the fleet, not the fleet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from iotiam.inventory.models import CredentialStatus
from iotiam.storage.credential_standing import NO_DAY, day_of, day_start
from iotiam.storage.tables import inventory

_C = inventory.device_credentials.c
#: a bucket judged whole: (status, 1 when its key is older than its type allows)
Verdict = tuple[str, int]


def _on_day(column: Any, day: int) -> ColumnElement[bool]:
    """``column`` lies on UTC day ``day``."""
    return and_(column >= day_start(day), column < day_start(day + 1))


@dataclass(frozen=True)
class Thresholds:
    """The days of the thresholds a report is judged against."""

    now: datetime
    rotation_age: timedelta
    expiring_within: timedelta | None
    max_age_by_type: dict[str, timedelta]
    today: int = field(init=False)
    rotated_day: int = field(init=False)
    expiring_day: int | None = field(init=False)
    key_days: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "today", day_of(self.now))
        object.__setattr__(self, "rotated_day", day_of(self.now - self.rotation_age))
        object.__setattr__(self, "expiring_day", None if self.expiring_within is None
                           else day_of(self.now + self.expiring_within))
        object.__setattr__(self, "key_days", {kind: day_of(self.now - age)
                                              for kind, age in self.max_age_by_type.items()})

    def on_threshold_days(self) -> ColumnElement[bool]:
        """The rows with an instant on its threshold's day (the buckets left to rows)."""
        today = self.today
        found = [_on_day(_C.newest_not_after, today), _on_day(_C.renew_by, today),
                 _on_day(_C.issued_until, today),
                 _on_day(_C.newest_not_before, self.rotated_day)]
        if self.expiring_day is not None:
            found.append(_on_day(_C.newest_not_after, self.expiring_day))
        found += [and_(_C.type_name == kind, _on_day(_C.key_since, day))
                  for kind, day in sorted(self.key_days.items())]
        return or_(*found)

    def judge(self, bucket: Any) -> tuple[Verdict | None, tuple[Any, ...], Any]:
        """(verdict, None, None) for a bucket judged whole; else (None, a key and the
        predicate of the rows to read instead)."""
        kind = bucket.type_name
        not_before, not_after = bucket.not_before_day, bucket.not_after_day
        renew_by, until, key_since = (bucket.renew_by_day, bucket.issued_until_day,
                                      bucket.key_since_day)
        if not_before == NO_DAY:
            return (str(CredentialStatus.REVOKED), 0), (), None
        today, key_day = self.today, self.key_days.get(kind)
        if today in (not_after, renew_by, until) or not_before == self.rotated_day or (
                not_after == self.expiring_day) or (key_day is not None
                                                    and key_since == key_day):
            return None, ("thresholds",), None
        if not_after < today:
            if until > today:  # an older certificate outlives the newest: irregular
                return None, ("outlived", not_after, until), and_(
                    _on_day(_C.newest_not_after, not_after),
                    _on_day(_C.issued_until, until))
            return (str(CredentialStatus.EXPIRED), 0), (), None
        if key_since == NO_DAY:  # no key hash on the newest: irregular
            return None, ("keyless",), and_(
                _C.key_since.is_(None), _C.newest_not_before.is_not(None),
                _C.newest_not_after >= day_start(today + 1))
        never = int(key_day is not None and key_since < key_day)
        if renew_by < today or (self.expiring_day is not None
                                and not_after < self.expiring_day):
            return (str(CredentialStatus.EXPIRING), never), (), None
        if not_before < self.rotated_day:
            return (str(CredentialStatus.OVERDUE_ROTATION), never), (), None
        return (str(CredentialStatus.ACTIVE), never), (), None

