"""A gateway agent's calls of the gateway API over mTLS (docs/gateways.md), and how the
agent reads a server's answer to them and to its attestation calls."""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from iotiam.agent.paths import AgentError
from iotiam.errors import IamError

if TYPE_CHECKING:
    from iotiam.agent.agent import Agent

#: gateway API calls, named as such in a refusal
GATEWAY_STEPS = ("children", "relay", "sightings", "events", "key-used")


class GatewayRefused(AgentError):
    """The server refused the gateway itself (its certificate revoked, the device no
    longer a gateway or no longer trusted): it must serve no child any more."""


def server_answer(response: httpx.Response, step: str) -> dict[str, Any]:
    """The JSON object of a 200 answer, or ``AgentError`` with the server's problem."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        detail = body.get("detail") if isinstance(body, dict) else None
        what = step if step in GATEWAY_STEPS else f"attestation {step}"
        refused = GatewayRefused if step in GATEWAY_STEPS and response.status_code in (
            401, 403) else AgentError
        raise refused(f"{what} refused (HTTP {response.status_code}): "
                      f"{detail or response.text[:200]}")
    return body


@dataclass(frozen=True)
class ListedKey:
    """One key of the children listing, opened: a child's current key, or its next one
    (a scheduled rotation's, valid beside the current one until the child uses it)."""

    child_id: str
    identity: str
    key: bytes = field(repr=False)
    psk_id: str = ""
    next: bool = False
    expires_at: str | None = None


def child_keys(agent: Agent) -> dict[str, bytes]:
    """A gateway's children's PSKs (identity -> key), fetched over mTLS and opened here
    with the device key (docs/gateways.md); a refusal raises ``AgentError``."""
    return {listed.identity: listed.key for listed in children(agent)}


def children(agent: Agent) -> list[ListedKey]:
    """A gateway's children's keys, fetched over mTLS and opened here with the device
    key; a refusal raises ``AgentError``."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from iotiam.gateways.sealed_keys import context_of, open_sealed

    agent.require_file_key("fetching the gateway's child keys")
    key = agent.files.load_key()
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise AgentError("child keys are sealed to EC P-256 keys; this device's is not")
    try:
        listing = gateway_call(agent, "GET", "/v1/gateways/self/children", step="children")
        return [ListedKey(str(c["id"]), str(c["psk_identity"]), open_sealed(
            key, base64.b64decode(str(c["sealed_key"])),
            context_of(agent.device_id, str(c["id"]), str(c["psk_id"]))),
            str(c["psk_id"]), c.get("next") is True,
            str(c["expires_at"]) if c.get("expires_at") else None)
            for c in listing["children"]]
    except (KeyError, TypeError, ValueError) as e:
        raise AgentError(f"the children listing is malformed: {e}") from e
    except IamError as e:
        if isinstance(e, AgentError):
            raise
        raise AgentError(f"cannot open the children's keys: {e.detail}") from e


def gateway_client(agent: Agent) -> httpx.Client:
    """An HTTPS client of the server with the device's certificate (mTLS), to keep for
    many gateway calls (one handshake); the caller closes it."""
    return httpx.Client(base_url=agent.server_url, verify=agent.ssl_context(), timeout=30)


def gateway_call(agent: Agent, method: str, path: str, body: Any = None, *, step: str,
                 http: httpx.Client | None = None) -> dict[str, Any]:
    """One call of the gateway API over mTLS, on ``http`` or a connection of its own;
    the JSON answer, or ``AgentError`` with the server's problem or why it could not be
    reached."""
    try:
        if http is not None:
            return server_answer(http.request(method, path, json=body), step)
        with gateway_client(agent) as own:
            return server_answer(own.request(method, path, json=body), step)
    except (httpx.HTTPError, ssl.SSLError, OSError) as e:
        raise AgentError(f"cannot reach {agent.server_url}: {e}") from e
