"""One MQTT client's request, decided: what every broker that asks the PDP shares.

The EMQX HTTP hook (``api/emqx_hook.py``) and the Mosquitto plugin's socket
(``broker/decision_socket.py``) both name a device by its MQTT username (the
certificate CN or PSK identity) and ask about one topic. Anything unexpected denies:
a malformed username or topic, an unknown device, the store unavailable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from iotiam.errors import IamError
from iotiam.inventory.models import check_identifier
from iotiam.policy.models import Decision, Deny, Subject


class CachedSubjects(Protocol):
    """Device subjects as the hot path reads them (``policy.subjects.DeviceSubjects``)."""

    def cached(self, device_id: str) -> Subject | None:
        """The subject of a device (None: unknown)."""
        ...


class ForgettingSubjects(CachedSubjects, Protocol):
    """Cached subjects whose entries can be dropped (a change seen outside the feed)."""

    def forget(self, device_id: str | None = None) -> None:
        """Drop one device's entry (every entry when None)."""
        ...

    def cached_many(self, device_ids: Sequence[str]) -> dict[str, Subject | None]:
        """``cached`` for many devices, those not cached read together."""
        ...


class Decider(Protocol):
    """The decision point (``policy.service.DecisionPoint``)."""

    def decide(self, subject: Subject, action: str, resource: str, *,
               source_ip: str | None = None) -> Decision:
        """Permit or Deny in the current situation."""
        ...


def decide_mqtt_request(subjects: CachedSubjects, decisions: Decider, username: str,
                        action: str, resource: str, *, source_ip: str | None = None,
                        visible: Callable[[str], bool] | None = None) -> Decision:
    """Permit or Deny ``action`` on ``resource`` for the device named ``username``;
    ``visible`` (an org path test) hides another tenant's device as unknown (G9)."""
    try:
        check_identifier(username, "username (device id)")
        subject = subjects.cached(username)
        if subject is None or (visible is not None and not visible(subject.org_path)):
            return Deny(f"device {username!r} not found")
        return decisions.decide(subject, action, resource, source_ip=source_ip)
    except IamError as e:  # a malformed topic or address, the store unavailable, ...
        return Deny(e.detail)
