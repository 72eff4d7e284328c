"""Secrets handed over in the environment: a variable's value, or the file its
``_FILE`` twin names (the convention of container secrets, e.g. ``/run/secrets/...``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from iotiam.errors import SetupError


def env_or_file(env: Mapping[str, str], name: str) -> str | None:
    """``env[name]``, else the stripped text of the file ``env[name + "_FILE"]`` names;
    ``None`` when neither is set or the value is empty."""
    value = env.get(name)
    if value:
        return value
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except (OSError, UnicodeDecodeError) as e:
        raise SetupError(f"cannot read {name}_FILE: {e}") from e
