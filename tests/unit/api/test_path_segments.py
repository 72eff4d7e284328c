"""An id with an encoded slash stays one segment: it never reaches another route."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from iotiam.api.path_segments import EncodedSlashRefusal


def _client() -> TestClient:
    app = FastAPI()

    @app.get("/v1/devices/{device_id}")
    def show(device_id: str) -> dict[str, str]:
        return {"device": device_id}

    @app.get("/v1/devices/{device_id}/trust")
    def trust(device_id: str) -> dict[str, str]:
        return {"trust_of": device_id}

    return TestClient(EncodedSlashRefusal(app))


def test_ok_plain_and_encoded_ids() -> None:
    with _client() as client:
        assert client.get("/v1/devices/d-1").json() == {"device": "d-1"}
        assert client.get("/v1/devices/d%2D1").json() == {"device": "d-1"}
        assert client.get("/v1/devices/d-1/trust").json() == {"trust_of": "d-1"}


def test_fail_encoded_slash_names_nothing() -> None:
    with _client() as client:
        for path in ("/v1/devices/victim%2Ftrust", "/v1/devices/victim%2ftrust",
                     "/v1/devices/a%2Fb"):
            answer = client.get(path)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["type"] == "urn:iotiam:problem:not-found"
