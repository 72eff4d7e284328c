"""Topic-scope probing: distinct refused topics in a window."""

from __future__ import annotations

import pytest

from detection.builders import LEARN, T0, event, monitor, run
from iotiam.detection.detectors import TopicProbing
from iotiam.detection.models import Event, EventKind, FindingType


def refused(at: float, topic: str, device: str = "d1") -> Event:
    return event(EventKind.AUTHZ_FAILURE, at, device, topic=topic, action="subscribe")


def connected() -> list[Event]:
    return [event(EventKind.CONNECT, T0, source_ip="10.0.0.2")]


@pytest.mark.parametrize(("topics", "expected"), [
    pytest.param([], 0, id="ok"),
    pytest.param(["devices/d1/config"] * 20, 0, id="ok/same-topic-again-and-again"),
    pytest.param(["devices/d2/cmd", "devices/d3/cmd", "$SYS/#"], 0, id="ok/three-topics"),
    pytest.param([f"devices/d{i}/cmd" for i in range(2, 6)], 1, id="fail/four-topics"),
    # medium at four topics, escalated once to high at ten; then one episode
    pytest.param([f"devices/d{i}/#" for i in range(2, 40)], 2, id="fail/namespace-walk"),
])
def test_probing(topics: list[str], expected: int) -> None:
    engine = monitor(TopicProbing(learning_seconds=LEARN))
    start = T0 + LEARN + 60
    findings = run(engine, connected() + [refused(start + 5 * i, t) for i, t in enumerate(topics)])
    assert len(findings) == expected
    if expected:
        assert {f.type for f in findings} == {FindingType.TOPIC_PROBING}
        assert [f.severity.label for f in findings] == ["medium", "high"][:expected]


def test_ok_topics_refused_while_learning_are_normal() -> None:
    engine = monitor(TopicProbing(learning_seconds=LEARN))
    usual = [f"devices/d1/legacy/{i}" for i in range(5)]
    learning = [refused(T0 + 10 + i, t) for i, t in enumerate(usual)]
    later = [refused(T0 + LEARN + 100 + i, t) for i, t in enumerate(usual)]
    assert run(engine, connected() + learning + later) == []


def test_ok_false_positive_teaches_the_topics() -> None:
    engine = monitor(TopicProbing(learning_seconds=LEARN))
    topics = [f"devices/d{i}/cmd" for i in range(2, 6)]
    [finding] = run(engine, connected() + [refused(T0 + LEARN + i, t)
                                           for i, t in enumerate(topics)])
    engine.false_positive(finding)
    assert run(engine, [refused(T0 + 9000 + i, t) for i, t in enumerate(topics)]) == []


def subscribed(at: float, topic: str, device: str = "d1") -> Event:
    return event(EventKind.SUBSCRIBE, at, device, topic=topic)


@pytest.mark.parametrize(("topics", "expected"), [
    pytest.param(["devices/d1/cmd/#"] * 5, 0, id="ok/its-own-filter-again"),
    pytest.param([f"devices/d{i}/#" for i in range(2, 6)], 1,
                 id="fail/too-broad-grant-walked"),
])
def test_allowed_subscriptions_outside_the_topic_set(topics: list[str], expected: int) -> None:
    engine = monitor(TopicProbing(learning_seconds=LEARN))
    learning = [subscribed(T0 + 1, "devices/d1/cmd/#")]
    later = [subscribed(T0 + LEARN + 60 + 5 * i, t) for i, t in enumerate(topics)]
    assert len(run(engine, connected() + learning + later)) == expected


def test_a_young_device_is_judged_by_its_types_usual_topics() -> None:
    """A terminal that joined after the others learned: the refusals and filters every
    terminal has at start are its usual ones too (its own id in them), a walk through
    other devices' topics is not."""
    engine = monitor(TopicProbing(learning_seconds=LEARN))
    usual = []
    for device in ("t1", "t2"):
        usual += [event(EventKind.CONNECT, T0, device, "terminal"),
                  event(EventKind.SUBSCRIBE, T0 + 1, device, "terminal",
                        topic=f"devices/{device}/cmd/#"),
                  *(event(EventKind.AUTHZ_FAILURE, T0 + 2 + i, device, "terminal",
                          topic=f"fleet/terminal/config/{i}", action="subscribe")
                    for i in range(5))]
    later = T0 + LEARN + 60
    newcomer = [event(EventKind.CONNECT, later, "t9", "terminal"),
                event(EventKind.SUBSCRIBE, later + 1, "t9", "terminal", topic="devices/t9/cmd/#"),
                *(event(EventKind.AUTHZ_FAILURE, later + 2 + i, "t9", "terminal",
                        topic=f"fleet/terminal/config/{i}", action="subscribe")
                  for i in range(5))]
    assert run(engine, usual + newcomer) == []
    walk = [event(EventKind.AUTHZ_FAILURE, later + 20 + i, "t9", "terminal",
                  topic=f"devices/t{i}/cmd/set", action="publish") for i in range(1, 6)]
    assert [f.device_id for f in run(engine, walk)] == ["t9"]
