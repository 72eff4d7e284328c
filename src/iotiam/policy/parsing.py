"""Policy documents from YAML or JSON, with every problem located by line or field.

```yaml
name: sensor-telemetry          # letters, digits, '.', '_', '-'
version: 3                      # each write stores the next version
description: What sensors may do
guardrail: false                # true: its denies bound every policy below it
statements:
  - sid: own-namespace          # optional, unique; named in decisions and errors
    effect: allow               # allow | deny
    actions: [mqtt:publish, mqtt:subscribe, mqtt:receive]
    topics: ["devices/${device.id}/#"]     # MQTT filters (publish/subscribe/receive)
    # clients: ["${device.id}"]            # client ids (mqtt:connect, est:enroll); "*" any
    # paths: ["/v1/devices/${device.id}/#"]  # HTTP paths, '+'/'#' as in topics
    conditions:
      time_window: {days: [mon-fri], start: "07:00", end: "19:00"}  # site time zone
      source_networks: ["10.20.0.0/16", plant-a, "${device.site}"]
      min_trust_score: 60       # also: trust_score_below
      firmware_compliant: true
      device_state: [active]
      attribute_equals: {zone: north}
      attribute_in: {line: ["1", "2"]}
```
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from iotiam.errors import InvalidInput
from iotiam.inventory.models import DeviceState
from iotiam.policy.actions import ACTION_KINDS, ResourceKind, expand_action
from iotiam.policy.conditions import DAYS, SITE_OF_DEVICE, Conditions, TimeWindow
from iotiam.policy.models import Effect, PolicyDocument, Statement
from iotiam.policy.patterns import check_pattern
from iotiam.policy.source import Located, Reader, load_source, wrap

MAX_STATEMENTS = 200
MAX_ENTRIES = 256
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NETWORK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9 ._-]{0,127}")
_CLOCK = re.compile(r"([01][0-9]|2[0-4]):([0-5][0-9])")
DOCUMENT_FIELDS = ("name", "version", "description", "guardrail", "statements")
STATEMENT_FIELDS = ("sid", "effect", "actions", *(k.value for k in ResourceKind), "conditions")
CONDITION_FIELDS = ("time_window", "source_networks", "min_trust_score", "trust_score_below",
                    "firmware_compliant", "device_state", "attribute_equals", "attribute_in")


def parse_policy(text: str | bytes, *, fmt: str = "auto") -> PolicyDocument:
    """Parse a YAML or JSON policy document (PolicySyntaxError naming line or field)."""
    return _read_document(load_source(text, fmt))


def policy_from_mapping(data: Mapping[str, Any]) -> PolicyDocument:
    """A policy from already decoded data (a JSON request body); errors name the field."""
    return _read_document(wrap(data))


def _read_document(root: Located) -> PolicyDocument:
    reader = Reader()
    fields = reader.mapping(root, "", "a policy document")
    if fields is None:
        reader.check()
        raise AssertionError("unreachable")
    reader.known_fields(fields, DOCUMENT_FIELDS, "", root)
    name = _name(reader, fields, root)
    version = None
    if "version" not in fields:
        reader.fail(root, "", "field 'version' is missing")
    else:
        version = reader.integer(fields["version"], "", "'version'")
        if version is not None and not 1 <= version <= 2**31 - 1:
            reader.fail(fields["version"], "", "'version' must be a positive integer")
    description = ""
    if "description" in fields:
        description = reader.text(fields["description"], "", "'description'") or ""
        if len(description) > 2000:
            reader.fail(fields["description"], "", "'description' is longer than 2000 characters")
    guardrail = False
    if "guardrail" in fields:
        guardrail = bool(reader.boolean(fields["guardrail"], "", "'guardrail'"))
    statements = _statements(reader, fields, root)
    reader.check()
    assert name is not None and version is not None
    return PolicyDocument(name, version, tuple(statements), description, guardrail)


def _name(reader: Reader, fields: dict[str, Located], root: Located) -> str | None:
    if "name" not in fields:
        reader.fail(root, "", "field 'name' is missing")
        return None
    name = reader.text(fields["name"], "", "'name'")
    if name is not None and not NAME.fullmatch(name):
        reader.fail(fields["name"], "", f"policy name {name!r} is not valid: use 1-128 "
                    "letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def _statements(reader: Reader, fields: dict[str, Located], root: Located) -> list[Statement]:
    src = fields.get("statements")
    if src is None:
        reader.fail(root, "", "field 'statements' is missing")
        return []
    if not isinstance(src.value, list) or not src.value:
        reader.fail(src, "", "'statements' must be a non-empty list")
        return []
    if len(src.value) > MAX_STATEMENTS:
        reader.fail(src, "", f"at most {MAX_STATEMENTS} statements per policy")
        return []
    statements: list[Statement] = []
    sids: dict[str, int] = {}
    for number, item in enumerate(src.value, 1):
        statement = _statement(reader, number, item)
        if statement is None:
            continue
        if statement.sid is not None:
            if statement.sid in sids:
                reader.fail(item, f"statement {number}",
                            f"sid {statement.sid!r} is already used by statement "
                            f"{sids[statement.sid]}")
            sids[statement.sid] = number
        statements.append(statement)
    return statements


def _statement(reader: Reader, number: int, src: Located) -> Statement | None:
    where = f"statement {number}"
    fields = reader.mapping(src, where, "a statement")
    if fields is None:
        return None
    before = len(reader.problems)
    reader.known_fields(fields, STATEMENT_FIELDS, where, src)
    sid = None
    if "sid" in fields:
        sid = reader.text(fields["sid"], where, "'sid'")
        if sid is not None and not SID.fullmatch(sid):
            reader.fail(fields["sid"], where, f"sid {sid!r} is not valid: use 1-64 letters, "
                        "digits, '.', '_' or '-'")
    effect = _effect(reader, fields, where, src)
    actions = _actions(reader, fields, where, src)
    resources: dict[ResourceKind, tuple[str, ...] | None] = {}
    for kind in ResourceKind:
        resources[kind] = _resources(reader, fields, kind, effect, where)
    conditions = _conditions(reader, fields["conditions"], where) if "conditions" in fields \
        else Conditions()
    if len(reader.problems) > before or effect is None:
        return None
    _check_coverage(reader, actions, resources, where, src)
    return Statement(effect, tuple(actions), resources[ResourceKind.TOPIC],
                     resources[ResourceKind.CLIENT], resources[ResourceKind.PATH],
                     conditions, sid, src.line)


def _effect(reader: Reader, fields: dict[str, Located], where: str, src: Located) -> Effect | None:
    if "effect" not in fields:
        reader.fail(src, where, "field 'effect' is missing (allow or deny)")
        return None
    text = reader.text(fields["effect"], where, "'effect'")
    if text is None:
        return None
    if text not in ("allow", "deny"):
        reader.fail(fields["effect"], where, f"effect {text!r} is unknown (allow or deny)")
        return None
    return Effect(text)


def _actions(reader: Reader, fields: dict[str, Located], where: str, src: Located) -> list[str]:
    if "actions" not in fields:
        reader.fail(src, where, "field 'actions' is missing")
        return []
    actions: list[str] = []
    for text, item in reader.texts(fields["actions"], where, "'actions'", MAX_ENTRIES):
        try:
            expand_action(text)
        except InvalidInput as e:
            reader.fail(item, where, e.detail)
            continue
        if text not in actions:
            actions.append(text)
    return actions


def _resources(
    reader: Reader, fields: dict[str, Located], kind: ResourceKind, effect: Effect | None,
    where: str,
) -> tuple[str, ...] | None:
    src = fields.get(kind.value)
    if src is None:
        return None
    values: list[str] = []
    for text, item in reader.texts(src, where, f"'{kind.value}'", MAX_ENTRIES):
        try:
            check_pattern(kind, text)
        except InvalidInput as e:
            reader.fail(item, where, e.detail)
            continue
        if effect is Effect.ALLOW and kind is ResourceKind.TOPIC and (
            text == "$CONTROL" or text.startswith("$CONTROL/")
        ):
            reader.fail(item, where, f"topic filter {text!r}: the broker's $CONTROL topics "
                        "cannot be granted by a policy")
            continue
        if text not in values:
            values.append(text)
    return tuple(values)


def _check_coverage(
    reader: Reader, actions: list[str], resources: Mapping[ResourceKind, tuple[str, ...] | None],
    where: str, src: Located,
) -> None:
    if all(v is None for v in resources.values()):
        return  # unrestricted: covers every resource of its actions
    used: set[ResourceKind] = set()
    for pattern in actions:
        kinds = {ACTION_KINDS[a] for a in expand_action(pattern)}
        if pattern in ACTION_KINDS and resources[ACTION_KINDS[pattern]] is None:
            kind = ACTION_KINDS[pattern]
            listed = ", ".join(k.value for k, v in resources.items() if v is not None)
            reader.fail(src, where, f"action {pattern!r} needs '{kind.value}' "
                        f"(this statement lists only {listed})")
        used |= kinds
    for kind, values in resources.items():
        if values is not None and kind not in used:
            reader.fail(src, where, f"'{kind.value}' is given but no action of this statement "
                        f"acts on {kind.value}")


def _conditions(reader: Reader, src: Located, where: str) -> Conditions:
    where = f"{where}: conditions"
    fields = reader.mapping(src, where, "'conditions'")
    if fields is None:
        return Conditions()
    reader.known_fields(fields, CONDITION_FIELDS, where, src)
    window = _time_window(reader, fields["time_window"], where) if "time_window" in fields \
        else None
    networks: list[str] = []
    if "source_networks" in fields:
        for text, item in reader.texts(fields["source_networks"], where, "'source_networks'",
                                       MAX_ENTRIES):
            network = _network(text)
            if network is None:
                reader.fail(item, where, f"source network {text!r} is neither a CIDR nor a "
                            f"site name nor {SITE_OF_DEVICE}")
            elif network not in networks:
                networks.append(network)
    scores: dict[str, float | None] = {}
    for key in ("min_trust_score", "trust_score_below"):
        scores[key] = None
        if key in fields:
            score = reader.number(fields[key], where, f"'{key}'")
            if score is not None and not 0 <= score <= 100:
                reader.fail(fields[key], where, f"'{key}' must be between 0 and 100")
            scores[key] = score
    firmware = reader.boolean(fields["firmware_compliant"], where, "'firmware_compliant'") \
        if "firmware_compliant" in fields else None
    states: list[DeviceState] = []
    if "device_state" in fields:
        for text, item in reader.texts(fields["device_state"], where, "'device_state'", 8):
            try:
                states.append(DeviceState(text))
            except ValueError:
                known = ", ".join(DeviceState)
                reader.fail(item, where, f"device state {text!r} is unknown ({known})")
    equals = _attribute_map(reader, fields.get("attribute_equals"), where, many=False)
    within = _attribute_map(reader, fields.get("attribute_in"), where, many=True)
    return Conditions(
        time_window=window,
        source_networks=tuple(networks),
        min_trust_score=scores["min_trust_score"],
        trust_score_below=scores["trust_score_below"],
        firmware_compliant=firmware,
        device_states=tuple(dict.fromkeys(states)),
        attribute_equals=tuple((k, v) for k, v in equals if isinstance(v, str)),
        attribute_in=tuple((k, v) for k, v in within if isinstance(v, tuple)),
    )


def valid_site_name(text: str) -> bool:
    """Whether ``text`` can name a site in ``source_networks`` (not taken for a CIDR)."""
    return _NETWORK_NAME.fullmatch(text) is not None


def _network(text: str) -> str | None:
    if text == SITE_OF_DEVICE:
        return text
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError:
        pass
    if any(c in text for c in "/:") or text[:1].isdigit():
        return None  # meant as a CIDR, but not a valid one
    return text if _NETWORK_NAME.fullmatch(text) else None


def _time_window(reader: Reader, src: Located, where: str) -> TimeWindow | None:
    where = f"{where}.time_window"
    fields = reader.mapping(src, where, "'time_window'")
    if fields is None:
        return None
    reader.known_fields(fields, ("days", "start", "end", "timezone"), where, src)
    days: list[int] = list(range(7))
    if "days" in fields:
        days = []
        for text, item in reader.texts(fields["days"], where, "'days'", 7):
            first, _, last = text.lower().partition("-")
            if first not in DAYS or (last and last not in DAYS):
                reader.fail(item, where, f"day {text!r} is unknown (mon … sun, or a range "
                            "like mon-fri)")
                continue
            low, high = DAYS.index(first), DAYS.index(last or first)
            days += [(low + i) % 7 for i in range((high - low) % 7 + 1)]
    bounds: dict[str, int | None] = {}
    for key in ("start", "end"):
        bounds[key] = None
        if key not in fields:
            reader.fail(src, where, f"field {key!r} is missing (HH:MM)")
            continue
        clock = reader.text(fields[key], where, f"'{key}'")
        match = _CLOCK.fullmatch(clock or "")
        seconds = int(match[1]) * 3600 + int(match[2]) * 60 if match else -1
        if clock is not None and (not match or seconds > 86400
                                  or (key == "start" and seconds == 86400)):
            reader.fail(fields[key], where, f"{key} {clock!r} is not a time of day (HH:MM"
                        + (", 24:00 allowed as end)" if key == "end" else ")"))
            continue
        bounds[key] = seconds if match else None
    zone = None
    if "timezone" in fields:
        zone = reader.text(fields["timezone"], where, "'timezone'")
        try:
            ZoneInfo(zone or "")
        except (ZoneInfoNotFoundError, ValueError):
            reader.fail(fields["timezone"], where, f"time zone {zone!r} is unknown")
    start, end = bounds["start"], bounds["end"]
    if start is None or end is None:
        return None
    if start == end % 86400 and end != 86400:
        reader.fail(src, where, "start and end are equal; use 00:00-24:00 for the whole day")
        return None
    return TimeWindow(tuple(sorted(set(days))), start, end, zone)


def _attribute_map(
    reader: Reader, src: Located | None, where: str, *, many: bool
) -> list[tuple[str, str | tuple[str, ...]]]:
    if src is None:
        return []
    what = "'attribute_in'" if many else "'attribute_equals'"
    fields = reader.mapping(src, where, what)
    if fields is None:
        return []
    if not fields:
        reader.fail(src, where, f"{what} is empty")
    out: list[tuple[str, str | tuple[str, ...]]] = []
    for key, value in fields.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", key):
            reader.fail(value, where, f"attribute name {key!r} is not valid")
            continue
        if many:
            values = [text for text, _ in reader.texts(value, where, f"{what}.{key}",
                                                        MAX_ENTRIES)]
            out.append((key, tuple(dict.fromkeys(values))))
        else:
            text = reader.text(value, where, f"{what}.{key}")
            if text is not None:
                out.append((key, text))
    return out


__all__ = ["parse_policy", "policy_from_mapping"]
