"""The claim mapping: provider groups -> an iotiam role and org unit, read from JSON."""

from __future__ import annotations

from typing import Any

from iotiam.errors import InvalidInput
from iotiam.kernel import Role
from iotiam.sso.models import RoleGrant
from iotiam.untrusted import load_json

#: a group name as providers spell them (Entra ID: an object id; Keycloak: ``/path``)
MAX_GROUP = 256
MAX_ENTRIES = 200


def parse_role_map(text: str) -> tuple[tuple[str, RoleGrant], ...]:
    """``{"group": {"role": "operator", "org": "/root/plant-a/"}, ...}`` in its order."""
    value: Any = load_json(text.encode(), what="the OIDC role map", max_bytes=256 * 1024)
    if not isinstance(value, dict) or not value:
        raise InvalidInput("the OIDC role map must be a non-empty JSON object "
                           '{"<group>": {"role": "...", "org": "..."}}')
    if len(value) > MAX_ENTRIES:
        raise InvalidInput(f"the OIDC role map holds at most {MAX_ENTRIES} groups")
    entries = []
    for group, grant in value.items():
        if not group or len(group) > MAX_GROUP:
            raise InvalidInput(f"an OIDC role map group must be 1-{MAX_GROUP} characters")
        if not isinstance(grant, dict) or set(grant) != {"role", "org"}:
            raise InvalidInput(f"the OIDC role map entry for {group!r} must be "
                               '{"role": "...", "org": "..."}')
        role, org = grant["role"], grant["org"]
        if role not in set(Role):
            raise InvalidInput(f"the OIDC role map gives {group!r} the role {role!r}; "
                               f"roles are {', '.join(Role)}")
        if not isinstance(org, str) or not org or len(org) > 1024 or (
                org.startswith("/") and not (org.startswith("/root/") and org.endswith("/"))):
            raise InvalidInput(f"the OIDC role map gives {group!r} the org {org!r}: use an "
                               "org unit id or a path such as /root/plant-a/")
        entries.append((group, RoleGrant(role=Role(role), org=org)))
    return tuple(entries)
