"""MQTT topic matching, subsumption and overlap (MQTT 3.1.1 / 5 §4.7), and validation."""

from __future__ import annotations

import pytest

from iotiam.errors import InvalidInput
from iotiam.policy.topics import (
    check_topic_filter,
    check_topic_name,
    covers,
    matches,
    overlap,
    split_shared,
)


def _matches(topic_filter: str, topic: str) -> bool:
    return matches(check_topic_filter(topic_filter), check_topic_name(topic))


@pytest.mark.parametrize(("topic_filter", "topic"), [
    ("a/b", "a/b"),
    ("a/+", "a/b"),
    ("a/+/c", "a/b/c"),
    ("+/+", "a/b"),
    ("a/#", "a/b/c/d"),
    ("a/#", "a"),  # '#' also matches the parent level (§4.7.1.2)
    ("a/#", "a/"),
    ("#", "a/b/c"),
    ("+", "a"),
    ("a/+", "a/"),  # '+' matches an empty level
    ("/+", "/a"),
    ("+/a", "/a"),  # leading empty level is a level
    ("a//b", "a//b"),
    ("$SYS/#", "$SYS/broker/load"),
    ("$SYS/+/load", "$SYS/broker/load"),
    ("a/+/#", "a/b"),
], ids=lambda v: v)
def test_matches_ok(topic_filter: str, topic: str) -> None:
    assert _matches(topic_filter, topic)


@pytest.mark.parametrize(("topic_filter", "topic"), [
    ("a/+", "a/b/c"),  # '+' does not cross '/'
    ("a/+", "a"),
    ("+", "a/b"),
    ("a/b", "a/b/c"),
    ("a/b/c", "a/b"),
    ("a/+/c", "a/b/d"),
    ("#", "$SYS/broker/load"),  # leading wildcards never match $-topics (§4.7.2)
    ("+/broker/load", "$SYS/broker/load"),
    ("+/#", "$SYS/x"),
    ("#", "$CONTROL/dynamic-security/v1"),
    ("a/+/#", "a"),
    ("/a", "a"),
    ("a", "A"),
], ids=lambda v: v)
def test_matches_fail(topic_filter: str, topic: str) -> None:
    assert not _matches(topic_filter, topic)


@pytest.mark.parametrize(("outer", "inner"), [
    ("a/#", "a/#"),
    ("a/#", "a/b/#"),
    ("a/#", "a/+/c"),
    ("a/#", "a"),
    ("#", "a/+/#"),
    ("#", "+/+"),
    ("a/+", "a/b"),
    ("a/+", "a/+"),
    ("+/+/#", "a/+/c/#"),
    ("$SYS/#", "$SYS/+"),
], ids=lambda v: " ⊇ ".join(v))
def test_covers_ok(outer: str, inner: str) -> None:
    assert covers(check_topic_filter(outer), check_topic_filter(inner))


@pytest.mark.parametrize(("outer", "inner"), [
    ("a/+", "a/#"),  # '#' reaches deeper and the parent
    ("a/b", "a/+"),  # a literal never covers a wildcard
    ("a/+/#", "a/#"),  # "a/#" matches "a", "a/+/#" does not
    ("a/b/#", "a/#"),
    ("a/+", "a/b/c"),
    ("#", "$SYS/#"),  # leading wildcard does not reach $-topics
    ("+/#", "$SYS/broker"),
    ("a/b", "a/b/c"),
], ids=lambda v: " ⊉ ".join(v))
def test_covers_fail(outer: str, inner: str) -> None:
    assert not covers(check_topic_filter(outer), check_topic_filter(inner))


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("a/#", "a/b/c", True),
    ("a/+/c", "a/b/+", True),
    ("a/+", "a/b/c", False),
    ("a/b", "a/c", False),
    ("#", "x", True),
    ("a/#", "a", True),
    ("a/+", "a", False),
    ("#", "$SYS/x", False),
    ("+/x", "$SYS/x", False),
    ("$SYS/#", "$SYS/+/x", True),
    ("+/+", "+/+/+", False),
    ("+/#", "a", True),
], ids=lambda v: str(v))
def test_overlap(a: str, b: str, expected: bool) -> None:
    assert overlap(check_topic_filter(a), check_topic_filter(b)) is expected
    assert overlap(check_topic_filter(b), check_topic_filter(a)) is expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty"),
    ("a\x00b", "NUL"),
    ("a/#/b", "'#' must be a whole level and the last one"),
    ("a#", "'#' must be a whole level"),
    ("a/b+", r"'\+' must be a whole level"),
    ("a/+b/c", r"'\+' must be a whole level"),
    ("x" * 65536, "65536 bytes of UTF-8; MQTT allows at most 65535"),
    ("é" * 32768, "65536 bytes"),
    ("\ud800", "not valid UTF-8"),
], ids=["fail/empty", "fail/nul", "fail/hash-not-last", "fail/hash-in-level",
        "fail/plus-in-level", "fail/plus-prefix", "fail/too-long", "fail/too-long-utf8",
        "fail/surrogate"])
def test_filter_validation(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_topic_filter(text)


def test_filter_validation_ok_limits_and_empty_levels() -> None:
    assert check_topic_filter("x" * 65535) == ("x" * 65535,)
    assert check_topic_filter("/") == ("", "")
    assert check_topic_filter("a//#") == ("a", "", "#")


@pytest.mark.parametrize("name", ["a/+", "#", "a/#"], ids=lambda v: f"fail/{v}")
def test_topic_name_refuses_wildcards(name: str) -> None:
    with pytest.raises(InvalidInput, match="wildcard"):
        check_topic_name(name)


def test_shared_subscription_ok() -> None:
    assert split_shared("$share/g1/devices/d1/#") == ("g1", "devices/d1/#")
    assert split_shared("devices/d1/#") == (None, "devices/d1/#")


@pytest.mark.parametrize("text", ["$share/g1", "$share//a", "$share/g+/a", "$share/g/"],
                         ids=lambda v: f"fail/{v}")
def test_shared_subscription_fail(text: str) -> None:
    with pytest.raises(InvalidInput, match="shared subscription"):
        split_shared(text)
