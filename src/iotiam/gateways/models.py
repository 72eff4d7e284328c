"""Gateway value types: the link from a child to its gateway, and what a gateway receives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class GatewayLink:
    """``child_id`` is registered under ``gateway_id``: the gateway may speak for it."""

    child_id: str
    gateway_id: str
    linked_at: datetime


@dataclass(frozen=True)
class ChildKey:
    """One child as its gateway receives it: its PSK sealed to the gateway's key."""

    child_id: str
    #: the TLS-PSK identity the child presents to its gateway
    identity: str
    psk_id: str
    #: ``gateways.sealed_keys`` format, opened only with the gateway's private key
    sealed_key: bytes
    expires_at: datetime | None
    #: the child's next key (a scheduled rotation's), valid beside the current one
    next: bool = False


@dataclass(frozen=True)
class GatewayChildren:
    """What ``GET /v1/gateways/self/children`` answers a gateway."""

    gateway_id: str
    children: tuple[ChildKey, ...]


@dataclass(frozen=True)
class SightingResult:
    """How one reported child sighting was judged: accepted, or refused with a reason."""

    child_id: str
    accepted: bool
    reason: str = ""


#: the topic namespace iotiam keeps for gateways' reports and their answers: the broker
#: lets a gateway publish only on its own report topics and read only its own answers,
#: whatever the policies grant, and no other device anything there (docs/gateways.md)
REPORTS_NAMESPACE = "gateways"
#: what a gateway reports over MQTT: the last level of its report topic
REPORT_KINDS = ("sightings", "events")


def report_topic(gateway_id: str, kind: str) -> str:
    """Where ``gateway_id`` publishes its reports of ``kind`` (``REPORT_KINDS``)."""
    return f"{REPORTS_NAMESPACE}/{gateway_id}/reports/{kind}"


def report_filter(gateway_id: str) -> str:
    """The topic filter of every report topic of ``gateway_id``."""
    return f"{REPORTS_NAMESPACE}/{gateway_id}/reports/+"


def answers_topic(gateway_id: str) -> str:
    """Where iotiam answers ``gateway_id``'s reports (its MQTT v5 response topic)."""
    return f"{REPORTS_NAMESPACE}/{gateway_id}/answers"


def report_of_topic(topic: str) -> tuple[str, str] | None:
    """(gateway id, kind) of a report topic, or None when ``topic`` is not one."""
    levels = topic.split("/")
    if len(levels) != 4 or levels[0] != REPORTS_NAMESPACE or levels[2] != "reports" \
            or levels[3] not in REPORT_KINDS or not levels[1]:
        return None
    return levels[1], levels[3]


def in_reports_namespace(topic: str) -> bool:
    """Whether a topic lies in the namespace kept for gateways' reports."""
    return topic.partition("/")[0] == REPORTS_NAMESPACE
