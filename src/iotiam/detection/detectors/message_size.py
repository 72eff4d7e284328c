"""Message size: payloads far larger than the device's (or its type's) usual ones.

Exfiltration and tunnelling show up as bigger messages at an unchanged rate. Sizes are
judged per topic, because one device often sends several kinds of message (a camera's
snapshots and its small motion events, a handheld's scans and its sync uploads), and
against the topic's own distribution, not only its mean:

* one message alone (z >= 8 over the topic's mean, and above the largest size the topic
  has sent, ``ceiling``: a kind of message that is sometimes 5x its mean is allowed 5x;
  for a topic known from hundreds of messages the ceiling is the guard, and z >= 5, or
  3x the largest of the topic's last 8: its largest of the week is from its busy hours);
* the last 8 of the topic without their largest (a gateway relays sizes spread over an
  order of magnitude; averaging cuts the noise by ~2.7, and leaving the largest out
  keeps one legitimate big message from moving the average), when this message is
  large itself (a window that still holds an episode's messages is not a new one);
* right after a connect a device does what it does after connecting (a sync upload, a
  state report): messages then are held to the largest size seen after earlier
  connects as well (a young device, or one that connected only a few times: to what
  its type's devices sent then).

A topic with too few messages of its own is judged by the device's sizes over all its
topics, and a young device by its type's. Its own largest message still counts once it
sent a few: a kind of message sent once a shift (a sync upload, 4-7x a scan) needs weeks
to reach a baseline of its own, and the ceiling of messages after a connect fades
towards the device's usual size over the days between shifts.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Ceiling, Cooldown, RobustLog, time_weight
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity

RECENT = 8
Z_ONE, Z_MEAN = 8.0, 5.0
#: one message of a topic with a long history needs only this z once it passes twice the
#: largest size the topic sent: that ceiling, drawn from hundreds of messages, is the
#: guard then (a camera whose snapshots are larger by day has a wide spread over the
#: day, and a 6x snapshot at night stays under z 8)
Z_ONE_KNOWN = 5.0
KNOWN_SAMPLES = 200
#: a topic whose sizes follow the day (a camera's snapshots, larger by day) has a
#: spread drawn from both levels, and a 5x snapshot at night stays under z 5 of it. Its
#: spread around its last 8 (``_TopicSize.local``) is the hour's own: a message above
#: the topic's largest of the week, 3x the largest of its last 8 and this many of those
#: spreads above their mean is news (a gateway relaying sizes over an order of
#: magnitude has a wide local spread too, and stays quiet)
Z_LOCAL = 6.0
#: and such a topic's largest of the week is its busiest hours' (a camera's by day): at
#: other hours a message this far above the largest of the topic's last 8 counts too
#: (not right after a connect: a sync upload is far above the scans before it)
ABOVE_RECENT = math.log(3.0)
#: a firmware update adding fields grows messages up to ~2x (with jitter): not news
MIN_RATIO = math.log(2.3)
#: and one message must pass the largest the topic (or a connect) sent by this much (a
#: sync upload's size varies with the work it carries: 4-7x a scan, seen once or twice)
ABOVE_CEILING = math.log(2.0)
SIGMA_FLOOR = 0.05
#: a device's learning period ends after ``learning_seconds`` or this many messages,
#: whichever comes first; until then it is judged by its type's sizes. Devices of a
#: type differ in size, so the type's spread is the between-device one and a busy
#: device is better off with its own baseline soon
LEARNED_SAMPLES = 100
TYPE_MIN_SAMPLES = 200
#: a device past its learning period is judged by its own sizes once it sent this many
OWN_SAMPLES = 5
#: a topic is judged by its own sizes after this many messages (before, the device's)
TOPIC_SAMPLES = 20
#: before that, a topic's own largest size counts from this many messages
TOPIC_CEILING_SAMPLES = 3
#: topics kept apart per device; more share one baseline (topics naming ids or times)
MAX_TOPICS = 8
OTHER_TOPICS = "*"
#: messages this soon after a connect are what a device does on connecting
AFTER_CONNECT = 120.0
#: until a device connected this often, its type's uploads on connecting count as its own
FEW_CONNECTS = 5
#: the type's prior is a population statistic: one message in 4 describes it as well
TYPE_SAMPLING = 3
_CONNECT = EventKind.CONNECT


class _TopicSize:
    __slots__ = ("ceiling", "local", "recent", "stat")

    def __init__(self) -> None:
        self.stat = RobustLog()
        self.ceiling = Ceiling()
        self.recent: deque[float] = deque(maxlen=RECENT)
        #: each size less the mean of the 8 before it: the spread within the hour
        self.local = RobustLog()

    def learn_local(self, value: float, weight: float) -> None:
        """Fold in how far ``value`` is from the topic's last 8 (before it joins them)."""
        recent = self.recent
        if len(recent) == RECENT:
            self.local.add(value - sum(recent) / RECENT, weight)


class _AfterConnect:
    """A type's largest message sent soon after a connect (what its devices upload on
    connecting), fading to the type's usual size: the ceiling of its young devices."""

    __slots__ = ("ceiling", "last_at")

    def __init__(self) -> None:
        self.ceiling = Ceiling()
        self.last_at = 0.0


class _DeviceSize:
    __slots__ = ("after_connect", "allow", "ceiling", "connected_at", "connects", "first_at",
                 "last_at", "stat", "topics")

    def __init__(self, first_at: float) -> None:
        self.first_at = first_at
        self.last_at = first_at
        #: every topic together: the baseline of a topic too young for its own
        self.stat = RobustLog()
        self.ceiling = Ceiling()
        self.topics: dict[str, _TopicSize] = {}
        #: the largest size sent within ``AFTER_CONNECT`` of a connect
        self.after_connect = Ceiling()
        self.connected_at = -math.inf
        self.connects = 0
        self.allow = 0.0

    def topic(self, name: str | None) -> _TopicSize:
        key = name or ""
        topic = self.topics.get(key)
        if topic is None:
            if len(self.topics) >= MAX_TOPICS:
                key = OTHER_TOPICS
                topic = self.topics.get(key)
            if topic is None:
                topic = self._new_topic(key)
        return topic

    def _new_topic(self, key: str) -> _TopicSize:
        topic = _TopicSize()
        if not self.topics:
            # most devices send one kind of message: its topic's baseline is the device's
            # (one object, learned once) until a second kind comes
            topic.stat, topic.ceiling = self.stat, self.ceiling
        elif len(self.topics) == 1:
            [first] = self.topics.values()
            if first.stat is self.stat:
                first.stat = RobustLog.from_json(self.stat.to_json())
                first.ceiling = Ceiling(self.ceiling.value)
        self.topics[key] = topic
        return topic


def _far_above(value: float, ceiling: float, topic: _TopicSize | None) -> bool:
    """Whether one message is far above the largest size sent: the ceiling, or for a
    long-known ``topic`` the largest of its last 8 (given only for such a topic)."""
    if value > ceiling + ABOVE_CEILING:
        return True
    recent = topic.recent if topic is not None else ()
    return len(recent) == RECENT and value > max(recent) + ABOVE_RECENT


def _far_above_local(value: float, ceiling: float, topic: _TopicSize) -> bool:
    """Whether one message of a long-known topic is far above the topic's level of the
    hour: above its largest of the week, 3x its last 8's largest, ``Z_LOCAL`` spreads."""
    recent, local = topic.recent, topic.local
    if len(recent) < RECENT or local.count < KNOWN_SAMPLES or value <= ceiling:
        return False
    if value <= max(recent) + ABOVE_RECENT:
        return False
    return value - sum(recent) / RECENT - local.mean > Z_LOCAL * local.sigma(SIGMA_FLOOR)


def _window_growth(recent: deque[float], value: float, mean: float, floor: float
                   ) -> float | None:
    """The growth of the last 8 with this message, without the largest of them; None
    when they are too few or their mean (with the largest) does not pass ``floor``.

    The last 8 judge only a large message: after an episode they hold its messages for 8
    more (two hours of a 15-minute heartbeat), and normal ones are no news. Leaving out
    the largest (at least their mean: when that does not pass, this cannot) keeps one
    legitimate big message from moving the average."""
    if len(recent) < RECENT or (sum(recent) - recent[0] + value) / RECENT - mean <= floor:
        return None
    values = list(recent)[1:]
    values.append(value)
    return (sum(values) - max(values)) / (RECENT - 1) - mean


def _young_topic_ceiling(state: _DeviceSize, topic: _TopicSize | None) -> float:
    """The largest size allowed a topic too young for its own baseline: the device's, or
    the topic's own largest once it sent a few (a kind of message sent once a shift, a
    sync upload, is far from its own baseline for weeks, but its largest tells its size)."""
    ceiling = state.ceiling.value
    if topic is not None and topic.stat.count >= TOPIC_CEILING_SAMPLES:
        return max(ceiling, topic.ceiling.value)
    return ceiling


class MessageSize:
    """Message size (Device Defender ``aws:message-byte-size``) far above baseline."""

    name = "message_size"
    kinds = frozenset({EventKind.PUBLISH, EventKind.CONNECT})

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 600.0) -> None:
        self.learning_seconds = learning_seconds
        self._devices: dict[str, _DeviceSize] = {}
        self._types: dict[str, RobustLog] = {}
        self._type_after_connect: dict[str, _AfterConnect] = {}
        self._cooldown = Cooldown(cooldown)
        self._outlier: Event | None = None
        self._tick = 0

    def learn(self, event: Event) -> None:
        """Fold the size into the topic's, the device's and its type's baseline."""
        device_id, size = event.device_id, event.size
        if device_id is None:
            return
        state = self._devices.get(device_id)
        if state is None:
            state = self._devices[device_id] = _DeviceSize(event.at)
        at = event.at
        if event.kind is _CONNECT:
            state.connected_at = at
            state.connects += 1
            return
        if size is None:
            return
        value = math.log(size + 1.0)
        topic = state.topic(event.topic)
        elapsed = at - state.last_at  # before last_at moves: the weight needs it
        state.last_at = at
        weight = time_weight(elapsed)
        if event is not self._outlier:
            topic.learn_local(value, weight)
        topic.recent.append(value)
        if event is self._outlier:
            return
        state.stat.add(value, weight)
        state.ceiling.add(value, state.stat.mean, elapsed)
        if topic.stat is not state.stat:
            topic.stat.add(value, weight)
            topic.ceiling.add(value, topic.stat.mean, elapsed)
        if at - state.connected_at < AFTER_CONNECT:
            state.after_connect.add(value, state.stat.mean, elapsed)
            self._learn_after_connect(event.device_type, value, at)
        self._tick += 1
        if not self._tick & TYPE_SAMPLING:
            prior = self._types.get(event.device_type or "")
            if prior is None:
                prior = self._types[event.device_type or ""] = RobustLog()
            prior.add(value)

    def _learn_after_connect(self, device_type: str | None, value: float, at: float) -> None:
        kind = self._type_after_connect.get(device_type or "")
        if kind is None:
            kind = self._type_after_connect[device_type or ""] = _AfterConnect()
        prior = self._types.get(device_type or "")
        kind.ceiling.add(value, value if prior is None else prior.mean,
                         at - kind.last_at if kind.last_at else 0.0)
        kind.last_at = at

    def _after_connect(self, state: _DeviceSize, device_type: str | None, own: bool) -> float:
        """The largest size the device sent soon after a connect; a young device, or one
        that connected only a few times, does on connecting what its type's devices do
        (a sync upload at the start of a shift)."""
        after = state.after_connect.value
        if not own or state.connects < FEW_CONNECTS:
            kind = self._type_after_connect.get(device_type or "")
            if kind is not None and kind.ceiling.value > after:
                after = kind.ceiling.value
        return after

    def __call__(self, event: Event) -> list[Finding]:
        """A finding when this message, or the last 8 of its topic, is far too big."""
        device_id, size = event.device_id, event.size
        if device_id is None or size is None:
            return []
        state = self._devices.get(device_id)
        if state is None:
            return []
        at = event.at
        topic = state.topics.get(event.topic or "") or state.topics.get(OTHER_TOPICS)
        ceiling = -math.inf
        spread_of_mean = 1.0 / math.sqrt(RECENT - 1)
        own = True
        if topic is not None and topic.stat.count >= TOPIC_SAMPLES:
            stat, ceiling = topic.stat, topic.ceiling.value
        elif state.stat.count >= LEARNED_SAMPLES or (
                at - state.first_at >= self.learning_seconds and state.stat.count >= OWN_SAMPLES):
            # a topic too young for its own: one message against the device's sizes
            # over all its topics (the last 8 of this topic are not theirs)
            stat = state.stat
            ceiling = _young_topic_ceiling(state, topic)
            topic = None
        else:
            own = False
            prior = self._types.get(event.device_type or "")
            if prior is None or prior.count < TYPE_MIN_SAMPLES // (TYPE_SAMPLING + 1):
                return []
            stat = prior
            # the type's spread is mostly between devices, which averaging one
            # device's messages does not shrink
            spread_of_mean = 1.0
        connecting = at - state.connected_at < AFTER_CONNECT
        if connecting:
            ceiling = max(ceiling, self._after_connect(state, event.device_type, own))
        value, sigma = math.log(size + 1.0), stat.sigma(SIGMA_FLOOR)
        floor, growth = MIN_RATIO + state.allow, value - stat.mean
        known = own and topic is not None and stat.count >= KNOWN_SAMPLES and not connecting
        hit = growth > floor and growth > (Z_ONE_KNOWN if known else Z_ONE) * sigma \
            and _far_above(value, ceiling, topic if known else None)
        if not hit and known and topic is not None:
            hit = growth > floor and _far_above_local(value, ceiling, topic)
        n = 1
        if not hit and topic is not None and growth > floor:
            window = _window_growth(topic.recent, value, stat.mean, floor)
            if window is not None:
                growth, n = window, RECENT - 1
                hit = growth > floor and growth > Z_MEAN * sigma * spread_of_mean
        if not hit:
            return []
        # while a device learns (judged by its type), what it does is its baseline all
        # the same: its own habits are what the type's cannot tell
        self._outlier = event if own else None
        if not self._cooldown.ready(device_id, at):
            return []
        return self._finding(event, growth, stat, n)

    def _finding(self, event: Event, growth: float, stat: RobustLog, n: int) -> list[Finding]:
        device_id, size = event.device_id or "", event.size
        factor = math.exp(growth)
        usual = math.exp(stat.mean) - 1.0
        return [Finding(
            FindingType.MESSAGE_SIZE,
            Severity.HIGH if factor >= 10 else Severity.MEDIUM, event.at, device_id,
            f"{device_id} sends messages {factor:.1f}x larger than usual "
            f"({size} bytes, usually ~{usual:.0f})",
            self.name,
            {"metric": "aws:message-byte-size", "observed_bytes": size,
             "baseline_bytes": round(usual, 1), "factor": round(factor, 2),
             "messages": n, "topic": event.topic},
            event.device_type)]

    def forgive(self, finding: Finding) -> None:
        """Tolerate messages this much larger (and a margin) from now on."""
        state = self._devices.get(finding.device_id or "")
        if state is not None:
            factor = float(finding.evidence.get("factor", 2.0))
            state.allow = max(state.allow, math.log(max(factor, 1.0)) * 1.5)
            observed = finding.evidence.get("observed_bytes")
            if isinstance(observed, int):
                topic = state.topic(finding.evidence.get("topic"))
                topic.ceiling.raise_to(math.log(observed + 1.0))

    def snapshot(self) -> dict[str, Any]:
        """Per-device (per topic) and per-type size baselines."""
        return {"version": 2,
                "devices": {d: [s.first_at, s.stat.to_json(), s.allow,
                                s.after_connect.to_json(), s.ceiling.to_json(),
                                {t: [x.stat.to_json(), x.ceiling.to_json(),
                                     x.local.to_json()]
                                 for t, x in s.topics.items()}, s.connects]
                            for d, s in self._devices.items()},
                "types": {t: s.to_json() for t, s in self._types.items()},
                "type_after_connect": {t: [a.ceiling.to_json(), a.last_at]
                                       for t, a in self._type_after_connect.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot`` (an older one, without topics, is read too)."""
        self._devices.clear()
        for device_id, saved in state.get("devices", {}).items():
            entry = _DeviceSize(float(saved[0]))
            entry.stat, entry.allow = RobustLog.from_json(saved[1]), float(saved[2])
            if len(saved) > 3:
                entry.after_connect = Ceiling.from_json(saved[3])
                entry.ceiling = Ceiling.from_json(saved[4])
                for name, (stat, ceiling, *local) in saved[5].items():
                    topic = entry.topic(str(name))
                    if topic.stat is not entry.stat:
                        topic.stat, topic.ceiling = RobustLog.from_json(stat), \
                            Ceiling.from_json(ceiling)
                    if local:  # a snapshot older than the local spread has none
                        topic.local = RobustLog.from_json(local[0])
            if len(saved) > 6:
                entry.connects = int(saved[6])
            self._devices[device_id] = entry
        self._types = {t: RobustLog.from_json(s) for t, s in state.get("types", {}).items()}
        self._type_after_connect = {}
        for name, (ceiling, last_at) in state.get("type_after_connect", {}).items():
            kind = self._type_after_connect[str(name)] = _AfterConnect()
            kind.ceiling, kind.last_at = Ceiling.from_json(ceiling), float(last_at)
