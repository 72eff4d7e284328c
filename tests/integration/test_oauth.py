"""OAuth2 against a live server with real clients.

authlib's OAuth2 client authenticates with ``private_key_jwt``; httpx presents a device
certificate (``tls_client_auth``) and gets a certificate-bound token; a resource server
built with ``iotiam.tokens.verify`` runs over real mTLS and accepts that token only with
the matching certificate, and stops accepting it the moment the certificate is revoked.
The CLI registers, lists and revokes clients, introspects tokens and approves device codes.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from authlib.integrations.base_client.errors import OAuthError as AuthlibError
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc.jwk import ECKey
from starlette.requests import Request
from starlette.responses import JSONResponse

from iotiam.agent import Agent
from iotiam.api.tls import TlsAwareHttpToolsProtocol, verified_client_certificate
from iotiam.pki.keys import PrivateKey
from iotiam.testing import free_port, make_csr, make_key
from iotiam.tokens.verify import IntrospectionCheck, RemoteJwks, TokenRejected, TokenVerifier

from .live_server import Server

pytestmark = pytest.mark.integration

SCOPE = "mqtt:publish:devices/{}/#"


@dataclass
class Device:
    """A device with its key and certificate on disk, and an OAuth client."""

    device_id: str
    key: PrivateKey
    cert_file: Path
    key_file: Path
    serial: str

    def tls(self, server: Server) -> ssl.SSLContext:
        """A client TLS context presenting this device's certificate."""
        context = server.tls_context()
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


def certified(server: Server, device_id: str) -> Device:
    """Register and certify a device (admin API)."""
    server.register(device_id)
    key = make_key()
    with server.api() as api:
        answer = api.post("/v1/certificates", json={"device": device_id,
                                                    "csr": make_csr(device_id, key).decode()})
    assert answer.status_code == 201, answer.text
    cert_file = server.work_dir / f"{device_id}.pem"
    key_file = server.work_dir / f"{device_id}.key"
    cert_file.write_text(answer.json()["pem"])
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Device(device_id, key, cert_file, key_file, answer.json()["serial"])


def enroll(server: Server, device_id: str, *grants: str, audiences: tuple[str, ...] = ()
           ) -> Device:
    """A certified device with an OAuth client (admin API: ``iotiam client create`` is
    checked in ``test_ok_cli_clients_and_revocation``)."""
    device = certified(server, device_id)
    body: dict[str, Any] = {"device": device_id}
    if grants:
        body["grant_types"] = list(grants)
    if audiences:
        body["audiences"] = list(audiences)
    with server.api() as api:
        created = api.post("/v1/oauth/clients", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["client_id"] == device_id
    return device


def issuer(server: Server) -> str:
    """RFC 8414 metadata's issuer."""
    answer = httpx.get(f"{server.api_url}/.well-known/oauth-authorization-server",
                       verify=server.tls_context())
    assert answer.status_code == 200
    value: str = answer.json()["issuer"]
    return value


def mtls_token(server: Server, device: Device, **form: str) -> httpx.Response:
    """The token endpoint over mTLS (tls_client_auth)."""
    with httpx.Client(verify=device.tls(server), timeout=30) as http:
        return http.post(f"{server.api_url}/oauth2/token",
                         data={"grant_type": "client_credentials",
                               "client_id": device.device_id, **form})


def introspect_cli(server: Server, token: str) -> dict[str, Any]:
    """``iotiam token introspect``."""
    result = server.cli("token", "introspect", token, check=False)
    body: dict[str, Any] = json.loads(result.out)
    assert result.rc == (0 if body["active"] else 1)
    return body


# -- a resource server built with the helper -----------------------------------------------


def self_signed(work: Path) -> tuple[Path, Path]:
    """A TLS certificate for the resource server itself (127.0.0.1)."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "resource-server")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = work / "rs.pem", work / "rs.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@dataclass
class ResourceServer:
    """An HTTPS service that accepts iotiam tokens through ``TokenVerifier``."""

    url: str
    ca_file: Path


@pytest.fixture(scope="module")
def resource_server(server: Server) -> Iterator[ResourceServer]:
    """``GET /readings`` needs a token with a publish scope, bound or not (real mTLS)."""
    check = IntrospectionCheck(f"{server.api_url}/oauth2/introspect",
                               headers={"Authorization": f"Bearer {server.token}"},
                               verify=server.tls_context())
    verifier = TokenVerifier(
        issuer=issuer(server), audience="urn:iotiam:fleet",
        jwks=RemoteJwks(f"{server.api_url}/oauth2/jwks", verify=server.tls_context()),
        revocation_check=check)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        certificate = verified_client_certificate(request)
        try:
            token = verifier.verify(bearer if scheme.lower() == "bearer" else "",
                                    certificate=certificate)
            response = JSONResponse({"client": token.client_id,
                                     "scopes": sorted(token.scopes)})
        except TokenRejected as e:
            response = JSONResponse({"error": "invalid_token", "error_description": e.detail},
                                    status_code=401)
        await response(scope, receive, send)

    cert_file, key_file = self_signed(server.work_dir)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
        ssl_certfile=str(cert_file), ssl_keyfile=str(key_file),
        ssl_ca_certs=str(server.chain_pem), ssl_cert_reqs=ssl.CERT_OPTIONAL,
        http=TlsAwareHttpToolsProtocol)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started, "the resource server did not start"
    try:
        yield ResourceServer(f"https://127.0.0.1:{port}", cert_file)
    finally:
        check.close()
        uv.should_exit = True
        thread.join(timeout=10)


def call(rs: ResourceServer, token: str, device: Device | None, server: Server
         ) -> httpx.Response:
    """``GET /readings`` with a bearer token, presenting ``device``'s certificate or none."""
    context = ssl.create_default_context(cafile=str(rs.ca_file))
    if device is not None:
        context.load_cert_chain(str(device.cert_file), str(device.key_file))
    with httpx.Client(verify=context, timeout=30) as http:
        return http.get(f"{rs.url}/readings", headers={"Authorization": f"Bearer {token}"})


# -- tests ---------------------------------------------------------------------------------


def test_ok_authlib_private_key_jwt(server: Server) -> None:
    device = enroll(server, "rc-authlib")
    client = OAuth2Client(
        client_id="rc-authlib", client_secret=ECKey.import_key(device.key),
        # rfc7523bis: the audience is the issuer identifier, not the token endpoint
        token_endpoint_auth_method=PrivateKeyJWT(token_endpoint=issuer(server), alg="ES256"),
        scope=SCOPE.format("rc-authlib"), verify=server.tls_context())
    with client:
        token = client.fetch_token(f"{server.api_url}/oauth2/token",
                                   grant_type="client_credentials")
        again = client.fetch_token(f"{server.api_url}/oauth2/token",
                                   grant_type="client_credentials")
    assert token["token_type"] == "Bearer" and token["scope"] == SCOPE.format("rc-authlib")
    assert again["access_token"] != token["access_token"]  # a fresh jti each time
    info = introspect_cli(server, token["access_token"])
    assert info["active"] is True and info["client_id"] == "rc-authlib" and "cnf" not in info


def test_ok_mtls_bound_token_only_with_the_matching_certificate(
        server: Server, resource_server: ResourceServer) -> None:
    device = enroll(server, "rc-mtls")
    other = enroll(server, "rc-other")
    answer = mtls_token(server, device, scope=SCOPE.format("rc-mtls"))
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert "x5t#S256" in introspect_cli(server, token)["cnf"]
    ok = call(resource_server, token, device, server)
    assert ok.status_code == 200 and ok.json()["client"] == "rc-mtls"
    stolen = call(resource_server, token, other, server)
    assert stolen.status_code == 401 and "another client certificate" in stolen.text
    bare = call(resource_server, token, None, server)
    assert bare.status_code == 401 and "none was presented" in bare.text


def test_ok_g3_certificate_revocation_ends_the_token_at_once(
        server: Server, resource_server: ResourceServer) -> None:
    device = enroll(server, "rc-g3")
    token = mtls_token(server, device).json()["access_token"]
    assert call(resource_server, token, device, server).status_code == 200
    server.cli("cert", "revoke", device.serial, "--reason", "keyCompromise")
    assert introspect_cli(server, token) == {"active": False}
    refused = call(resource_server, token, device, server)
    assert refused.status_code == 401 and "revoked" in refused.text
    # and the device cannot get a new one
    assert mtls_token(server, device).status_code in (400, 401)


def test_ok_cli_clients_and_revocation(server: Server) -> None:
    device = certified(server, "rc-cli")
    out = server.cli("client", "create", "--device", "rc-cli").out
    assert out.startswith("OAuth client rc-cli "), out
    listed = server.cli("client", "list").out
    assert "rc-cli" in listed and "private_key_jwt" in listed
    token = mtls_token(server, device).json()["access_token"]
    server.cli("client", "revoke", "rc-cli")
    assert introspect_cli(server, token) == {"active": False}
    again = server.cli("client", "revoke", "rc-cli", check=False)
    assert again.rc == 1 and again.err.startswith("error: ") and "final" in again.err
    bad = server.cli("client", "create", "--device", "no-such-device", check=False)
    assert bad.rc == 1 and "not found" in bad.err


def test_ok_device_code_approved_through_the_cli(server: Server) -> None:
    device = enroll(server, "rc-panel", "device_code")
    with httpx.Client(verify=device.tls(server), timeout=30) as http:
        started = http.post(f"{server.api_url}/oauth2/device_authorization",
                            data={"client_id": "rc-panel"}).json()
        assert started["user_code"] in server.cli("device-code", "list").out
        server.cli("device-code", "approve", started["user_code"])
        answer = http.post(f"{server.api_url}/oauth2/token", data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": started["device_code"], "client_id": "rc-panel"})
    assert answer.status_code == 200, answer.text
    assert introspect_cli(server, answer.json()["access_token"])["sub"].startswith("token:")


def test_ok_agent_access_token(server: Server) -> None:
    server.register("rc-agent", "sensor")
    claim = server.cli("claim", "create", "--device", "rc-agent").out.strip().splitlines()[-1]
    agent = Agent(server.work_dir / "rc-agent", server_url=server.api_url, device_id="rc-agent",
                  server_ca=server.tls_ca_file)
    agent.enroll(claim)
    server.cli("client", "create", "--device", "rc-agent")
    scope = SCOPE.format("rc-agent")
    bound = agent.access_token(scope)
    assert agent.access_token(scope) == bound  # cached
    signed = agent.access_token(scope, method="private_key_jwt")
    assert signed != bound
    assert "cnf" in introspect_cli(server, bound)
    assert "cnf" not in introspect_cli(server, signed)


def test_fail_token_endpoint_garbage_is_a_4xx(server: Server) -> None:
    with httpx.Client(verify=server.tls_context(), timeout=30) as http:
        for body in (b"", b"grant_type=client_credentials", b"\xff\xfe=\x00",
                     b"grant_type=client_credentials&client_assertion_type=x&client_assertion=y",
                     b"a=" + b"x" * 20000):
            answer = http.post(f"{server.api_url}/oauth2/token", content=body,
                               headers={"content-type": "application/x-www-form-urlencoded"})
            assert 400 <= answer.status_code < 500, (body[:40], answer.text)
            assert "error" in answer.json()


def test_ok_introspection_check_over_mtls_with_file_paths(server: Server) -> None:
    """``IntrospectionCheck(cert=(pem, key), verify="ca.pem")`` as documented: the device's
    certificate reaches the issuer (httpx ≥ 0.28 dropped it), so a live token is active."""
    device = enroll(server, "rc-introspect")
    token = mtls_token(server, device).json()["access_token"]
    check = IntrospectionCheck(f"{server.api_url}/oauth2/introspect",
                               client_id=device.device_id,
                               cert=(str(device.cert_file), str(device.key_file)),
                               verify=str(server.tls_ca_file))
    verifier = TokenVerifier(
        issuer=issuer(server), audience="urn:iotiam:fleet",
        jwks=RemoteJwks(f"{server.api_url}/oauth2/jwks", verify=str(server.tls_ca_file)),
        revocation_check=check)
    certificate = x509.load_pem_x509_certificate(device.cert_file.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    try:
        verified = verifier.verify(token, certificate=certificate)
        assert verified.client_id == "rc-introspect"
        server.cli("token", "revoke-access", token)
        with pytest.raises(TokenRejected):
            verifier.verify(token, certificate=certificate)
    finally:
        check.close()


# -- issue 12 items 5, 6 and 14 with a third-party client (authlib) over real mTLS -----------


def authlib_client(server: Server, device: Device, presenting: Device | None) -> OAuth2Client:
    """authlib signing private_key_jwt assertions with ``device``'s key over TLS that
    presents ``presenting``'s certificate (or none)."""
    return OAuth2Client(
        client_id=device.device_id, client_secret=ECKey.import_key(device.key),
        # the one line authlib needs: rfc7523bis wants the issuer as the audience
        token_endpoint_auth_method=PrivateKeyJWT(token_endpoint=issuer(server), alg="ES256"),
        verify=presenting.tls(server) if presenting else server.tls_context())


def fetch(client: OAuth2Client, server: Server) -> dict[str, Any]:
    """client_credentials through authlib."""
    token: dict[str, Any] = client.fetch_token(f"{server.api_url}/oauth2/token",
                                               grant_type="client_credentials")
    return token


def quarantine_by_detection(server: Server, device_id: str) -> None:
    """An auth-failure burst makes the enforce-mode playbook quarantine the device."""
    server.cli("detect", "mode", "sensor", "enforce")
    playbook = server.work_dir / "quarantine.json"
    playbook.write_text(json.dumps({"rules": [
        {"finding_type": "auth_failure_burst", "min_severity": "medium",
         "actions": ["quarantine"]}]}))
    server.cli("detect", "playbook", "--set", playbook)
    events = server.work_dir / f"{device_id}-events.jsonl"
    start = int(time.time()) - 60
    events.write_text("".join(json.dumps({
        "kind": "auth_failure", "ts": start + i, "device_id": device_id,
        "source_ip": "203.0.113.9"}) + "\n" for i in range(40)))
    server.cli("detect", "replay", events, check=False)
    with server.api() as api:
        assert api.get(f"/v1/devices/{device_id}").json()["state"] == "quarantined"


def test_ok_authlib_validates_the_metadata(server: Server) -> None:
    answer = httpx.get(f"{server.api_url}/.well-known/oauth-authorization-server",
                       verify=server.tls_context())
    metadata = AuthorizationServerMetadata(answer.json())
    metadata.validate()
    assert metadata["response_types_supported"]
    assert "mqtt:publish:{topic-or-filter}" in metadata["scopes_supported"]


def test_fail_authlib_presenting_another_devices_certificate(server: Server) -> None:
    device = enroll(server, "rc-own")
    other = enroll(server, "rc-stranger")
    with authlib_client(server, device, presenting=other) as client, \
            pytest.raises(AuthlibError) as refused:
        fetch(client, server)
    assert refused.value.error == "invalid_client"
    assert "does not belong to client 'rc-own'" in str(refused.value.description)
    with authlib_client(server, device, presenting=device) as client:
        token = fetch(client, server)
    assert "x5t#S256" in introspect_cli(server, token["access_token"])["cnf"]


def test_ok_quarantine_is_told_and_its_tokens_stay_dead_after_the_lift(
        server: Server, resource_server: ResourceServer) -> None:
    device = enroll(server, "rc-quarantine")
    with authlib_client(server, device, presenting=device) as client:
        before = fetch(client, server)["access_token"]
        assert call(resource_server, before, device, server).status_code == 200
        time.sleep(1.1)  # iat has whole seconds
        quarantine_by_detection(server, "rc-quarantine")
        with pytest.raises(AuthlibError) as refused:
            fetch(client, server)
        assert refused.value.error == "access_denied"
        assert str(refused.value.description).startswith("device quarantined: ")
        time.sleep(1.1)
        server.cli("detect", "lift", "rc-quarantine")
        # trusted again, but what it had before the quarantine is not
        assert introspect_cli(server, before) == {"active": False}
        assert call(resource_server, before, device, server).status_code == 401
        after = fetch(client, server)["access_token"]
    assert introspect_cli(server, after)["active"] is True
    assert call(resource_server, after, device, server).status_code == 200


def test_ok_several_resources_and_empty_parameters_over_mtls(server: Server) -> None:
    a, b = "https://a.example/api", "https://b.example/api"
    device = enroll(server, "rc-resources", audiences=(a, b))
    with httpx.Client(verify=device.tls(server), timeout=30) as http:
        answer = http.post(f"{server.api_url}/oauth2/token", content=urlencode([
            ("grant_type", "client_credentials"), ("client_id", "rc-resources"),
            ("resource", a), ("resource", b), ("scope", ""), ("client_secret", "")]),
            headers={"content-type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200, answer.text
        assert introspect_cli(server, answer.json()["access_token"])["aud"] == [a, b]
        basic = http.post(f"{server.api_url}/oauth2/token", auth=("rc-resources", "secret"),
                          data={"grant_type": "client_credentials"})
    assert basic.status_code == 401
    assert basic.headers["www-authenticate"] == 'Basic realm="iotiam"'


def _segment(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def test_fail_deep_assertions_spoil_no_legitimate_token_request(server: Server) -> None:
    """Issue 12 item 1 over real TLS: two attacker connections send client assertions
    whose header or payload is ``[[[…]]]`` 1,000 deep while four devices ask for tokens
    over mTLS; each attack gets invalid_client, every legitimate request its token (the
    requests share group-commit batches), and the server logs no traceback."""
    from concurrent.futures import ThreadPoolExecutor

    devices = [enroll(server, f"rc-flood-{i}") for i in range(4)]
    deep = "[" * 1000 + "]" * 1000
    header = _segment('{"alg": "ES256", "typ": "client-authentication+jwt"}')
    attacks = [f"{_segment(deep)}.{_segment('{}')}.AAAA", f"{header}.{_segment(deep)}.AAAA"]
    url = f"{server.api_url}/oauth2/token"

    def attacker(assertion: str) -> list[tuple[int, str]]:
        form = {"grant_type": "client_credentials", "client_assertion": assertion,
                "client_assertion_type":
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
        with httpx.Client(verify=server.tls_context(), timeout=30) as http:
            answers = [http.post(url, data=form) for _ in range(40)]
        return [(a.status_code, a.json()["error"]) for a in answers]

    def device(d: Device) -> list[int]:
        form = {"grant_type": "client_credentials", "client_id": d.device_id}
        with httpx.Client(verify=d.tls(server), timeout=30) as http:
            return [http.post(url, data=form).status_code for _ in range(40)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        attacked = [pool.submit(attacker, a) for a in attacks]
        legitimate = [pool.submit(device, d) for d in devices]
        for future in attacked:
            assert set(future.result()) == {(401, "invalid_client")}
        for future in legitimate:
            assert future.result() == [200] * 40
