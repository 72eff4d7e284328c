"""Topic-scope probing: a device trying topics outside its grant, one after another.

A misconfigured device is refused on the same topic again and again; a compromised
one walks through other devices' namespaces. So what counts is *distinct* topics in a
window, not refusals: topics it was refused on, and filters it subscribed to that are
outside its topic set (a device whose grant is too broad is not refused, but its
walk through other namespaces is still new subscriptions). Refusals the device has
normally (learned while it learns, or taught by a false positive) and the filters it
subscribes to normally do not count.

A device in its own learning period is judged by its type: the refusals and filters
its type's devices have normally, with each device's own id in them read as a
placeholder (``devices/{device}/cmd/#``), so a device that joined last week is not
free to walk the broker until its learning ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Cooldown, Window, json_sets, sets_from_json
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity

WINDOW_SECONDS = 300.0
MIN_TOPICS = 4
MANY_TOPICS = 10


class TopicProbing:
    """Authorization failures (Device Defender ``aws:num-authorization-failures``) and
    new subscriptions on many distinct topics."""

    name = "topic_probing"
    kinds = frozenset({EventKind.AUTHZ_FAILURE, EventKind.SUBSCRIBE, EventKind.CONNECT})

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 600.0) -> None:
        self.learning_seconds = learning_seconds
        self._first: dict[str, float] = {}
        self._denied: dict[str, set[str]] = {}
        #: filters each device subscribed to (allowed), its topic set
        self._subscribed: dict[str, set[str]] = {}
        self._allow: dict[str, int] = {}
        #: per type, the refusals and filters its learning devices had (ids as
        #: ``{device}``), and when the type was first seen
        self._type_denied: dict[str, set[str]] = {}
        self._type_subscribed: dict[str, set[str]] = {}
        self._type_first: dict[str, float] = {}
        self._windows: dict[str, Window] = {}
        self._cooldown = Cooldown(cooldown)

    def learn(self, event: Event) -> None:
        """While the device learns, its refusals and subscriptions are its normal ones."""
        device_id, topic = event.device_id, event.topic
        if device_id is None:
            return
        first = self._first.setdefault(device_id, event.at)
        if topic is None or event.at - first >= self.learning_seconds:
            return
        type_name = event.device_type or ""
        self._type_first.setdefault(type_name, event.at)
        if event.kind is EventKind.AUTHZ_FAILURE:
            self._denied.setdefault(device_id, set()).add(topic)
            usual = self._type_denied
        elif event.kind is EventKind.SUBSCRIBE:
            self._subscribed.setdefault(device_id, set()).add(topic)
            usual = self._type_subscribed
        else:
            return
        usual.setdefault(type_name, set()).add(topic.replace(device_id, "{device}"))

    def __call__(self, event: Event) -> list[Finding]:
        """A finding once distinct unusual topics in the window reach the threshold."""
        device_id, topic, kind = event.device_id, event.topic, event.kind
        if kind is EventKind.CONNECT or device_id is None or topic is None:
            return []
        first = self._first.get(device_id)
        if first is None:
            return []
        denied = kind is EventKind.AUTHZ_FAILURE
        usual = self._denied if denied else self._subscribed
        if topic in usual.get(device_id, ()):
            return []
        if event.at - first < self.learning_seconds:
            # still learning which refusals are its normal ones: judged by its type's
            type_name = event.device_type or ""
            since = self._type_first.get(type_name)
            typical = self._type_denied if denied else self._type_subscribed
            if since is None or event.at - since < self.learning_seconds \
                    or topic.replace(device_id, "{device}") in typical.get(type_name, ()):
                return []
        window = self._windows.get(device_id)
        if window is None:
            window = self._windows[device_id] = Window(WINDOW_SECONDS)
        window.add(event.at, topic)
        topics = window.distinct()
        threshold = MIN_TOPICS + self._allow.get(device_id, 0)
        severity = Severity.HIGH if len(topics) >= MANY_TOPICS else Severity.MEDIUM
        if len(topics) < threshold or not self._cooldown.ready(device_id, event.at, severity):
            return []
        return [Finding(
            FindingType.TOPIC_PROBING, severity, event.at, device_id,
            f"{device_id} tried {len(topics)} distinct topics outside its usual set within "
            f"{WINDOW_SECONDS:.0f} s (latest {event.action or kind.value} on {topic!r})",
            self.name,
            {"metric": "aws:num-authorization-failures", "topics": sorted(map(str, topics)),
             "attempts": len(window), "window_s": WINDOW_SECONDS, "threshold": threshold},
            event.device_type)]

    def forgive(self, finding: Finding) -> None:
        """These topics are normal refusals for the device, and so is that many."""
        if finding.device_id is None:
            return
        topics = [str(t) for t in finding.evidence.get("topics", [])]
        self._denied.setdefault(finding.device_id, set()).update(topics)
        self._subscribed.setdefault(finding.device_id, set()).update(topics)
        self._allow[finding.device_id] = max(self._allow.get(finding.device_id, 0), len(topics))

    def snapshot(self) -> dict[str, Any]:
        """Normally refused topics and taught allowances per device."""
        return {"first": dict(self._first), "denied": json_sets(self._denied),
                "subscribed": json_sets(self._subscribed), "allow": dict(self._allow),
                "type_denied": json_sets(self._type_denied),
                "type_subscribed": json_sets(self._type_subscribed),
                "type_first": dict(self._type_first)}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot``."""
        self._first = {k: float(v) for k, v in state.get("first", {}).items()}
        self._denied = sets_from_json(state.get("denied", {}))
        self._subscribed = sets_from_json(state.get("subscribed", {}))
        self._allow = {k: int(v) for k, v in state.get("allow", {}).items()}
        self._type_denied = sets_from_json(state.get("type_denied", {}))
        self._type_subscribed = sets_from_json(state.get("type_subscribed", {}))
        self._type_first = {k: float(v) for k, v in state.get("type_first", {}).items()}
