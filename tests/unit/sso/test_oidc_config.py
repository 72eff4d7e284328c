"""IOTIAM_OIDC_* read into an OidcConfig: what is refused at start, and the mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iotiam.errors import SetupError
from iotiam.kernel import Role
from iotiam.sso.models import RoleGrant
from iotiam.sso.settings import oidc_config

MAP = json.dumps({"iot-admins": {"role": "admin", "org": "/root/"},
                  "plant-a": {"role": "operator", "org": "/root/plant-a/"}})
BASE = {"IOTIAM_OIDC_ISSUER": "https://idp.example/realms/iot",
        "IOTIAM_OIDC_CLIENT_ID": "iotiam", "IOTIAM_OIDC_ROLE_MAP": MAP}


def test_ok_unset_is_no_sso() -> None:
    assert oidc_config({}) is None


def test_ok_reads_the_map_in_order_and_the_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    config = oidc_config({**BASE, "IOTIAM_OIDC_CLIENT_SECRET_FILE": str(secret),
                          "IOTIAM_OIDC_NAME": "Keycloak"})
    assert config is not None
    assert config.client_secret == "s3cret" and "s3cret" not in repr(config)
    assert config.role_map == (("iot-admins", RoleGrant(Role.ADMIN, "/root/")),
                               ("plant-a", RoleGrant(Role.OPERATOR, "/root/plant-a/")))
    assert config.grant_for(("plant-a", "iot-admins")) == config.role_map[0]
    assert config.grant_for(("marketing",)) is None
    assert config.display_name == "Keycloak" and config.groups_claim == "groups"


@pytest.mark.parametrize(("env", "says"), [
    ({"IOTIAM_OIDC_CLIENT_ID": ""}, "IOTIAM_OIDC_CLIENT_ID"),
    ({"IOTIAM_OIDC_ROLE_MAP": ""}, "IOTIAM_OIDC_ROLE_MAP"),
    ({"IOTIAM_OIDC_ISSUER": "http://idp.example"}, "https://"),
    ({"IOTIAM_OIDC_ROLE_MAP": "[]"}, "non-empty JSON object"),
    ({"IOTIAM_OIDC_ROLE_MAP": '{"g": {"role": "root", "org": "/root/"}}'}, "roles are"),
    ({"IOTIAM_OIDC_ROLE_MAP": '{"g": {"role": "admin", "org": "/elsewhere/"}}'}, "org unit id"),
    ({"IOTIAM_OIDC_ROLE_MAP": '{"g": {"role": "admin"}}'}, '"role": "...", "org"'),
    ({"IOTIAM_OIDC_ROLE_MAP": "{not json"}, "OIDC role map"),
    ({"IOTIAM_OIDC_CLIENT_SECRET_FILE": "/nonexistent/secret"}, "cannot read"),
    ({"IOTIAM_OIDC_CA_FILE": "/nonexistent/ca.pem"}, "is not a file"),
], ids=["fail/no-client", "fail/no-map", "fail/plain-http", "fail/map-shape", "fail/role",
        "fail/org-path", "fail/entry-shape", "fail/json", "fail/secret-file", "fail/ca-file"])
def test_fail_refused_at_start(env: dict[str, str], says: str) -> None:
    with pytest.raises(SetupError) as refused:
        oidc_config({**BASE, **env})
    assert says in refused.value.detail


def test_ok_plain_http_only_to_this_machine() -> None:
    for issuer in ("http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000"):
        config = oidc_config({**BASE, "IOTIAM_OIDC_ISSUER": issuer})
        assert config is not None and config.issuer == issuer
