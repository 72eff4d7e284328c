"""Conditions: time windows in the site's zone (DST too), networks, trust, firmware, state,
attributes; unknown answers fail closed."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from iotiam.clock import FrozenClock
from iotiam.errors import InvalidInput
from iotiam.inventory.models import DeviceState
from iotiam.policy.actions import PUBLISH
from iotiam.policy.conditions import TimeWindow, next_window_change
from iotiam.policy.models import Deny, PolicyDocument, RequestContext, Site
from policy.fakes import ROOT, context, engine, policy, subject

BERLIN = ZoneInfo("Europe/Berlin")


def _allow_if(conditions: str) -> PolicyDocument:
    return policy("name: cond\nversion: 1\nstatements:\n  - effect: allow\n"
                  "    actions: [mqtt:publish]\n    topics: [x]\n    conditions:\n      "
                  + conditions.replace("\n", "\n      ") + "\n")


def _deny_if(conditions: str) -> PolicyDocument:
    return policy("name: cond\nversion: 1\nstatements:\n"
                  "  - {effect: allow, actions: [mqtt:publish], topics: [x]}\n"
                  "  - sid: guard\n    effect: deny\n    actions: [mqtt:publish]\n"
                  "    topics: [x]\n    conditions:\n      "
                  + conditions.replace("\n", "\n      ") + "\n")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


WORK_HOURS = "time_window: {days: [mon-fri], start: '08:00', end: '18:00'}"


@pytest.mark.parametrize(("at", "site", "allowed"), [
    ("2026-01-07T12:00", "berlin", True),  # Wed 13:00 CET
    ("2026-01-07T06:59", "berlin", False),  # Wed 07:59 CET
    ("2026-01-07T07:00", "berlin", True),  # Wed 08:00 CET: start is inclusive
    ("2026-01-07T17:00", "berlin", False),  # Wed 18:00 CET: end is exclusive
    ("2026-01-10T12:00", "berlin", False),  # Saturday
    ("2026-01-07T12:00", "tokyo", False),  # Wed 21:00 JST: the site's zone counts
    ("2026-01-07T00:30", "tokyo", True),  # Wed 09:30 JST
    ("2026-07-08T06:30", "berlin", True),  # summer: 08:30 CEST
    ("2026-01-07T06:30", "berlin", False),  # winter: 07:30 CET
], ids=lambda v: str(v))
def test_time_window_in_site_zone(at: str, site: str, allowed: bool) -> None:
    pdp = engine((_allow_if(WORK_HOURS), ROOT))
    decision = pdp.decide(subject(site=site), PUBLISH, "x", context(_utc(at)))
    assert decision.allowed is allowed


def test_time_window_across_dst_switch() -> None:
    doc = _allow_if("time_window: {start: '07:00', end: '08:00'}")
    pdp = engine((doc, ROOT))
    # 06:30 UTC is 07:30 CET on Saturday 28 March and 08:30 CEST on Monday 30 March 2026
    assert pdp.decide(subject(), PUBLISH, "x", context(_utc("2026-03-28T06:30"))).allowed
    assert not pdp.decide(subject(), PUBLISH, "x", context(_utc("2026-03-30T06:30"))).allowed
    assert pdp.decide(subject(), PUBLISH, "x", context(_utc("2026-03-30T05:30"))).allowed


def test_time_window_explicit_zone_and_overnight() -> None:
    doc = _allow_if("time_window: {days: [fri], start: '22:00', end: '06:00', timezone: UTC}")
    pdp = engine((doc, ROOT))
    no_site = subject(site=None)
    assert pdp.decide(no_site, PUBLISH, "x", context(_utc("2026-01-09T23:00"))).allowed  # Fri
    assert pdp.decide(no_site, PUBLISH, "x", context(_utc("2026-01-10T05:59"))).allowed  # Sat
    assert not pdp.decide(no_site, PUBLISH, "x", context(_utc("2026-01-10T06:00"))).allowed
    assert not pdp.decide(no_site, PUBLISH, "x", context(_utc("2026-01-09T05:00"))).allowed


def test_time_window_unknown_zone_fails_closed() -> None:
    no_site = subject(site=None)
    unknown_site = subject(site="atlantis")
    assert not engine((_allow_if(WORK_HOURS), ROOT)).decide(
        no_site, PUBLISH, "x", context()).allowed
    pdp = engine((_deny_if(WORK_HOURS), ROOT))
    for who in (no_site, unknown_site):
        decision = pdp.decide(who, PUBLISH, "x", context(_utc("2026-01-10T12:00")))
        assert isinstance(decision, Deny)
        assert "condition time_window unknown, fails closed" in decision.reason
    assert pdp.decide(subject(), PUBLISH, "x", context(_utc("2026-01-10T12:00"))).allowed


@pytest.mark.parametrize(("after", "expected"), [
    ("2026-01-07T12:00", "2026-01-07T17:00"),  # Wed, until 18:00 CET
    ("2026-01-09T18:00", "2026-01-12T07:00"),  # Fri evening -> Mon 08:00 CET
    ("2026-03-27T18:00", "2026-03-30T06:00"),  # across the switch: Mon 08:00 CEST
], ids=lambda v: v)
def test_next_window_change(after: str, expected: str) -> None:
    window = TimeWindow((0, 1, 2, 3, 4), 8 * 3600, 18 * 3600)
    assert next_window_change(window, BERLIN, _utc(after)) == _utc(expected)


def test_next_window_change_spring_forward_jump() -> None:
    # daily 01:00-02:30: on 29 March 2026 02:00 CET jumps to 03:00 CEST at 01:00 UTC,
    # leaving the window at the jump, not at a wall-clock 02:30 that never comes
    window = TimeWindow(tuple(range(7)), 3600, 2 * 3600 + 1800)
    assert next_window_change(window, BERLIN, _utc("2026-03-29T00:30")) == _utc(
        "2026-03-29T01:00")


def test_next_window_change_fall_back_twice() -> None:
    # daily 02:15-02:45: on 25 October 2026 that local time happens twice
    window = TimeWindow(tuple(range(7)), 2 * 3600 + 900, 2 * 3600 + 2700)
    times = ["2026-10-25T00:00", "2026-10-25T00:15", "2026-10-25T00:45", "2026-10-25T01:15",
             "2026-10-25T01:45"]
    for before, after in itertools.pairwise(times):
        assert next_window_change(window, BERLIN, _utc(before)) == _utc(after)


def test_next_window_change_never() -> None:
    window = TimeWindow(tuple(range(7)), 0, 86400)
    assert next_window_change(window, BERLIN, _utc("2026-01-07T12:00")) is None


@pytest.mark.parametrize(("networks", "ip", "site", "allowed"), [
    ("['10.1.0.0/16']", "10.1.2.3", "berlin", True),
    ("['10.1.0.0/16']", "10.9.2.3", "berlin", False),
    ("[tokyo]", "10.2.0.9", "berlin", True),  # a named site network
    ("[tokyo]", "10.1.0.9", "berlin", False),
    ("['${device.site}']", "10.1.0.9", "berlin", True),  # the device's own site
    ("['${device.site}']", "10.2.0.9", "berlin", False),
    ("['${device.site}']", "10.1.0.9", None, False),
    ("['2001:db8::/32', '10.0.0.0/8']", "2001:db8::1", "berlin", True),
    ("['2001:db8::/32']", "10.1.2.3", "berlin", False),
    ("['10.1.0.0/16']", None, "berlin", False),  # unknown source
], ids=lambda v: str(v))
def test_source_networks(networks: str, ip: str | None, site: str | None,
                         allowed: bool) -> None:
    pdp = engine((_allow_if(f"source_networks: {networks}"), ROOT))
    assert pdp.decide(subject(site=site), PUBLISH, "x", context(ip=ip)).allowed is allowed


def test_source_networks_unknown_fails_closed_for_deny() -> None:
    pdp = engine((_deny_if("source_networks: ['192.168.0.0/16']"), ROOT))
    assert pdp.decide(subject(), PUBLISH, "x", context(ip="10.1.1.1")).allowed
    assert not pdp.decide(subject(), PUBLISH, "x", context(ip="192.168.1.1")).allowed
    assert not pdp.decide(subject(), PUBLISH, "x", context(ip=None)).allowed


@pytest.mark.parametrize(("condition", "trust", "firmware", "allowed"), [
    ("min_trust_score: 60", 60.0, True, True),
    ("min_trust_score: 60", 59.9, True, False),
    ("min_trust_score: 60", None, True, False),
    ("trust_score_below: 30", 10.0, True, True),
    ("trust_score_below: 30", 30.0, True, False),
    ("firmware_compliant: true", 50.0, True, True),
    ("firmware_compliant: true", 50.0, False, False),
    ("firmware_compliant: true", 50.0, None, False),
    ("firmware_compliant: false", 50.0, False, True),
], ids=lambda v: str(v))
def test_trust_and_firmware(condition: str, trust: float | None, firmware: bool | None,
                            allowed: bool) -> None:
    pdp = engine((_allow_if(condition), ROOT))
    assert pdp.decide(subject(), PUBLISH, "x",
                      context(trust=trust, firmware=firmware)).allowed is allowed


@pytest.mark.parametrize(("trust", "allowed"), [(90.0, True), (10.0, False), (None, False)],
                         ids=["ok", "fail/low", "fail/unknown"])
def test_low_trust_deny(trust: float | None, allowed: bool) -> None:
    pdp = engine((_deny_if("trust_score_below: 40"), ROOT))
    assert pdp.decide(subject(), PUBLISH, "x", context(trust=trust)).allowed is allowed


def test_device_state_and_attributes() -> None:
    # pending devices are refused before any condition (inventory/lifecycle.py)
    doc = _allow_if("device_state: [active]\nattribute_equals: {vendor: acme}\n"
                    "attribute_in: {line: ['1', '2']}")
    pdp = engine((doc, ROOT))
    good = {"vendor": "acme", "line": "2"}
    assert pdp.decide(subject(state=DeviceState.ACTIVE, attributes=good), PUBLISH, "x",
                      context()).allowed
    for state, attributes in [(DeviceState.QUARANTINED, good), (DeviceState.PENDING, good),
                              (DeviceState.ACTIVE, {**good, "vendor": "other"}),
                              (DeviceState.ACTIVE, {**good, "line": "3"}),
                              (DeviceState.ACTIVE, {"vendor": "acme"})]:
        assert not pdp.decide(subject(state=state, attributes=attributes), PUBLISH, "x",
                              context()).allowed


def test_yaml_boolean_like_attribute_values_stay_text() -> None:
    doc = _allow_if("attribute_equals: {enabled: yes}")
    assert doc.statements[0].conditions.attribute_equals == (("enabled", "yes"),)
    pdp = engine((doc, ROOT))
    assert pdp.decide(subject(attributes={"enabled": "yes"}), PUBLISH, "x", context()).allowed


def test_context_and_site_validation() -> None:
    clock = FrozenClock(_utc("2026-01-07T12:00"))
    ctx = RequestContext.now(clock, source_ip="2001:db8::1", trust_score=5.0)
    assert (ctx.at, str(ctx.source_ip), ctx.trust_score) == (clock.now(), "2001:db8::1", 5.0)
    with pytest.raises(InvalidInput, match=r"source address '10\.0\.0\.256' is not an IP address"):
        RequestContext.now(clock, source_ip="10.0.0.256")
    with pytest.raises(InvalidInput, match="needs an aware datetime"):
        RequestContext(datetime(2026, 1, 1))
    with pytest.raises(InvalidInput, match="site 'x': unknown time zone 'Mars/Base'"):
        Site("x", "Mars/Base")
