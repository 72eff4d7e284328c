"""Console single sign-on's settings, from the IOTIAM_OIDC_* variables ``config``
hands over (``config.load_settings``; docs/console.md)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from iotiam.env_secrets import env_or_file
from iotiam.errors import InvalidInput, SetupError
from iotiam.sso.models import OidcConfig
from iotiam.sso.pkce import check_provider_url
from iotiam.sso.role_map import parse_role_map


def oidc_config(env: Mapping[str, str]) -> OidcConfig | None:
    """Console single sign-on from IOTIAM_OIDC_* (None when IOTIAM_OIDC_ISSUER is unset)."""
    issuer = env.get("IOTIAM_OIDC_ISSUER")
    if not issuer:
        return None
    client_id = env.get("IOTIAM_OIDC_CLIENT_ID")
    if not client_id:
        raise SetupError("IOTIAM_OIDC_ISSUER is set: set IOTIAM_OIDC_CLIENT_ID too")
    role_map_text = env_or_file(env, "IOTIAM_OIDC_ROLE_MAP")
    if not role_map_text:
        raise SetupError("IOTIAM_OIDC_ISSUER is set: set IOTIAM_OIDC_ROLE_MAP (or "
                         "IOTIAM_OIDC_ROLE_MAP_FILE) to map groups to roles and org units")
    try:
        check_provider_url(issuer, "issuer (IOTIAM_OIDC_ISSUER)")
        role_map = parse_role_map(role_map_text)
    except InvalidInput as e:
        raise SetupError(e.detail) from e
    ca_file = env.get("IOTIAM_OIDC_CA_FILE")
    if ca_file and not Path(ca_file).is_file():
        raise SetupError(f"IOTIAM_OIDC_CA_FILE {ca_file!r} is not a file")
    return OidcConfig(
        issuer=issuer, client_id=client_id, role_map=role_map,
        client_secret=env_or_file(env, "IOTIAM_OIDC_CLIENT_SECRET"),
        display_name=env.get("IOTIAM_OIDC_NAME") or "single sign-on",
        groups_claim=env.get("IOTIAM_OIDC_GROUPS_CLAIM") or "groups",
        scopes=env.get("IOTIAM_OIDC_SCOPES") or "openid email profile",
        ca_file=Path(ca_file) if ca_file else None,
        redirect_uri=env.get("IOTIAM_OIDC_REDIRECT_URI") or None)
