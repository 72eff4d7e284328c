"""Gateways and their children: moving a child (admins), and the gateway's own API,
authenticated by the gateway's iotiam certificate over mTLS (docs/gateways.md)."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from iotiam.api.auth import Caller, Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.policy_schemas import render_decision
from iotiam.api.schemas import Body
from iotiam.api.tls import client_address, client_certificate
from iotiam.gateways.reports import MAX_EVENTS, GatewayReports
from iotiam.gateways.sealed_keys import VERSION
from iotiam.gateways.service import MAX_SIGHTINGS

router = APIRouter(prefix="/v1", tags=["gateways"], route_class=UntrustedJsonRoute)

#: how ``sealed_key`` is encrypted (``gateways/sealed_keys.py``)
SEALING = f"ecies-p256-hkdf-sha256-aes256gcm-v{VERSION}"


class MoveIn(Body):
    """Register a child under another gateway (it is re-keyed)."""

    via: str = Field(max_length=128)


class RelayIn(Body):
    """An action a gateway relays for one of its children."""

    child: str = Field(max_length=128)
    action: str = Field(max_length=64)
    resource: str = Field(max_length=65535)


class SightingsIn(Body):
    """The children a gateway saw."""

    children: list[str] = Field(max_length=MAX_SIGHTINGS)


class KeyUsedIn(Body):
    """A child connected to its gateway with its next key."""

    child: str = Field(max_length=128)
    psk_id: str = Field(max_length=32)


class EventsIn(Body):
    """Events a gateway observed, each about one of its children or itself (the fields
    of ``POST /v1/events``, docs/events.md)."""

    events: list[Any] = Field(min_length=1, max_length=MAX_EVENTS)


@router.post("/devices/{device_id}/gateway")
def move_child(device_id: str, body: MoveIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Move a child to another gateway; its PSK is replaced."""
    link = svc.gateways.move(caller, device_id, body.via)
    return {"device": link.child_id, "via": link.gateway_id,
            "linked_at": link.linked_at.isoformat()}


@router.get("/gateways/self/children")
def my_children(request: Request, svc: Wired) -> dict[str, Any]:
    """The calling gateway's live children, each PSK sealed to its certificate's key."""
    children = svc.gateways.children(client_certificate(request, svc.settings.trusted_proxies))
    return {"gateway": children.gateway_id, "sealing": SEALING, "children": [
        {"id": c.child_id, "psk_identity": c.identity, "psk_id": c.psk_id,
         "sealed_key": base64.b64encode(c.sealed_key).decode(),
         "expires_at": c.expires_at.isoformat() if c.expires_at else None,
         "next": c.next}
        for c in children.children]}


@router.post("/gateways/self/key-used")
def next_key_used(body: KeyUsedIn, request: Request, svc: Wired) -> dict[str, Any]:
    """The calling gateway saw a child connect with its next key: it becomes current."""
    psk_id = svc.gateways.next_key_used(
        client_certificate(request, svc.settings.trusted_proxies), body.child, body.psk_id)
    return {"child": body.child, "psk_id": psk_id, "status": "active"}


@router.post("/gateways/self/relay")
def relay(body: RelayIn, request: Request, svc: Wired) -> dict[str, Any]:
    """Judge an action the calling gateway relays for a child, as the child's own."""
    trusted = svc.settings.trusted_proxies
    decision = svc.gateways.relay(client_certificate(request, trusted), body.child,
                                  body.action, body.resource,
                                  source_ip=client_address(request, trusted))
    return {"child": body.child, **render_decision(decision)}


@router.post("/gateways/self/sightings")
def sightings(body: SightingsIn, request: Request, svc: Wired) -> dict[str, Any]:
    """Take the calling gateway's report of the children it saw."""
    certificate = client_certificate(request, svc.settings.trusted_proxies)
    gateway = svc.gateways.authenticate(certificate, "sightings")
    return GatewayReports(svc.gateways, svc.ingest).sightings(gateway, body.children)


@router.post("/gateways/self/events")
def child_events(body: EventsIn, request: Request, svc: Wired) -> dict[str, Any]:
    """Score the events the calling gateway reports for its children (or itself) as the
    devices' own; an event about a device it may not speak for is refused, audited and
    raised as a ``gateway_mismatch`` finding."""
    certificate = client_certificate(request, svc.settings.trusted_proxies)
    gateway = svc.gateways.authenticate(certificate, "events")
    return GatewayReports(svc.gateways, svc.ingest).events(gateway, body.events)
