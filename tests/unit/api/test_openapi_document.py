"""Issue 12 item 13: the OpenAPI document describes what the API really answers."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import Installation

PROBLEM = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture
def spec(installation: Installation) -> dict[str, Any]:
    answer = installation.api().get("/openapi.json")
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in spec["paths"].items()
            for method, op in ops.items()]


def test_openapi_ok_validation_is_400_problem(spec: dict[str, Any]) -> None:
    assert "422" not in str([op["responses"].keys() for _, _, op in operations(spec)])
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, method, op in operations(spec):
        if path.startswith(("/oauth2/", "/ocsp", "/v1/hooks/")):
            continue  # these refuse in their own protocol's terms (below)
        responses = op["responses"]
        assert responses["default"]["content"]["application/problem+json"]["schema"] == \
            PROBLEM, (method, path)
        if op.get("parameters") or op.get("requestBody"):
            assert responses["400"]["content"]["application/problem+json"]["schema"] == \
                PROBLEM, (method, path)


@pytest.mark.parametrize(("path", "method", "status", "media"), [
    ("/.well-known/est/cacerts", "get", "200", "application/pkcs7-mime"),
    ("/.well-known/est/simpleenroll", "post", "200", "application/pkcs7-mime"),
    ("/.well-known/est/{label}/simplereenroll", "post", "200", "application/pkcs7-mime"),
    ("/ca/chain.pem", "get", "200", "application/pem-certificate-chain"),
    ("/ca/{ca_id}.crt", "get", "200", "application/pkix-cert"),
    ("/crl/{ca_id}.crl", "get", "200", "application/pkix-crl"),
    ("/oauth2/jwks", "get", "200", "application/jwk-set+json"),
    ("/v1/audit/export", "get", "200", "application/jsonl"),
    ("/ocsp", "post", "200", "application/ocsp-response"),
    ("/ocsp/{request}", "get", "200", "application/ocsp-response"),
    ("/v1/hooks/emqx/authz", "post", "200", "application/json"),
])
def test_openapi_ok_real_media_types(spec: dict[str, Any], path: str, method: str,
                                     status: str, media: str) -> None:
    content = spec["paths"][path][method]["responses"][status]["content"]
    assert media in content
    assert "application/json" not in content or media == "application/json"


def test_openapi_ok_est_request_body_is_pkcs10(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/.well-known/est/simpleenroll"]["post"]["requestBody"]
    assert list(body["content"]) == ["application/pkcs10"]


def test_openapi_ok_oauth_errors_are_rfc6749(spec: dict[str, Any]) -> None:
    token = spec["paths"]["/oauth2/token"]["post"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
    error = token["responses"]["400"]["content"]["application/json"]["schema"]
    assert error["required"] == ["error"]
    assert "access_token" in token["responses"]["200"]["content"]["application/json"][
        "schema"]["properties"]


@pytest.mark.parametrize(("path", "method", "status", "schema"), [
    ("/v1/devices", "post", "201", "DeviceOut"),
    ("/v1/devices", "get", "200", "DevicePage"),
    ("/v1/devices/{device_id}", "get", "200", "DeviceOut"),
    ("/v1/device-types/{name}/rotation", "put", "200", "DeviceTypeOut"),
    ("/v1/certificates", "post", "201", "CertificateOut"),
    ("/v1/certificates", "get", "200", "CertificateList"),
    ("/v1/tokens", "post", "201", "TokenOut"),
    ("/v1/audit/records", "get", "200", "AuditPage"),
    ("/v1/whoami", "get", "200", "WhoamiOut"),
    ("/v1/org-units", "get", "200", "OrgUnitList"),
    ("/v1/groups", "get", "200", "GroupList"),
])
def test_openapi_ok_typed_success(spec: dict[str, Any], path: str, method: str,
                                  status: str, schema: str) -> None:
    content = spec["paths"][path][method]["responses"][status]["content"]
    assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{schema}"}
    assert spec["components"]["schemas"][schema]["required"]


def test_openapi_ok_device_answer_matches_schema(installation: Installation) -> None:
    api = installation.api()
    created = api.post("/v1/devices", json={"id": "d1", "type": "sensor",
                                            "attributes": {"fw": "1"}})
    assert created.status_code == 201, created.text
    shown = api.get("/v1/devices/d1").json()
    assert shown["attributes"] == {"fw": "1"}
    assert shown["certificates"] == []  # extra fields pass through the typed model
    assert shown["state"] == created.json()["state"]


def test_openapi_ok_no_untyped_success(spec: dict[str, Any]) -> None:
    """No success answer is documented as "anything" (an empty schema)."""
    untyped = [f"{method} {path} {status} {media}"
               for path, method, op in operations(spec)
               for status, response in op["responses"].items() if status.startswith("2")
               for media, content in response.get("content", {}).items()
               if not content.get("schema")]
    assert untyped == []
