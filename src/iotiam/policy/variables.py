"""Policy variables (``${device.id}`` …): parsing templates and substituting safely.

A variable stands for *one literal piece of one level*. Its value must never widen a
match, so a value that could change the structure of a topic or path — containing
``/``, ``+``, ``#`` or NUL, empty, or starting with ``$`` (which would reach ``$SYS`` /
``$CONTROL`` topics) — counts as having no value at all. What "no value" does is the
caller's decision and always fails closed: an allow no longer matches, a deny widens
(the level becomes a wildcard).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from iotiam.errors import InvalidInput

BASE_VARIABLES = ("device.id", "device.type", "device.site", "device.org")
ATTRIBUTE_PREFIX = "device.attr."
# same shape as inventory attribute names (inventory.models.check_attributes)
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_UNSAFE = re.compile(r"[/+#\x00]")
_OPEN = "${"


def check_variable(name: str) -> str:
    """Validate a variable name (the text between ``${`` and ``}``)."""
    if name in BASE_VARIABLES:
        return name
    if name.startswith(ATTRIBUTE_PREFIX) and _ATTRIBUTE_NAME.fullmatch(
        name[len(ATTRIBUTE_PREFIX):]
    ):
        return name
    known = ", ".join("${" + v + "}" for v in BASE_VARIABLES)
    raise InvalidInput(
        f"unknown variable '${{{name}}}' (known: {known}, ${{device.attr.NAME}})"
    )


@dataclass(frozen=True, slots=True)
class Template:
    """Text with variables: ``parts`` alternates literal text (even) and variable names (odd)."""

    text: str
    parts: tuple[str, ...]

    @property
    def variables(self) -> tuple[str, ...]:
        """The variable names, in order."""
        return self.parts[1::2]

    @property
    def is_literal(self) -> bool:
        """No variables at all."""
        return len(self.parts) == 1

    def render(self, values: Mapping[str, str | None]) -> str | None:
        """The text with every variable substituted, or None if one has no safe value."""
        if len(self.parts) == 1:
            return self.parts[0]
        if len(self.parts) == 3 and not self.parts[0] and not self.parts[2]:
            return values.get(self.parts[1])  # the common whole-level "${device.id}"
        out: list[str] = []
        for i, part in enumerate(self.parts):
            if i % 2 == 0:
                out.append(part)
                continue
            value = values.get(part)
            if value is None:
                return None
            out.append(value)
        return "".join(out)

    def regex(self, variable: str) -> str:
        """A regular expression for this text, each variable replaced by ``variable``."""
        return "".join(
            re.escape(part) if i % 2 == 0 else variable for i, part in enumerate(self.parts)
        )


def parse_template(text: str, what: str, whole: str | None = None) -> Template:
    """Split ``text`` into literal parts and checked variables (InvalidInput on errors).

    ``whole`` is the resource ``text`` is a level of, named in errors instead.
    """
    named = whole if whole is not None else text
    parts: list[str] = []
    position = 0
    while True:
        start = text.find(_OPEN, position)
        if start < 0:
            parts.append(text[position:])
            break
        end = text.find("}", start)
        if end < 0:
            raise InvalidInput(f"{what} {named!r}: '${{' without a closing '}}'")
        parts.append(text[position:start])
        try:
            parts.append(check_variable(text[start + 2:end]))
        except InvalidInput as e:
            raise InvalidInput(f"{what} {named!r}: {e.detail}") from None
        position = end + 1
    return Template(text, tuple(parts))


def safe_value(value: str | None) -> str | None:
    """``value`` if it may stand for (part of) one level, else None."""
    if not value or value[0] == "$" or _UNSAFE.search(value):
        return None
    return value


def variable_values(
    *,
    device_id: str,
    type_name: str,
    site: str | None,
    org_unit_id: str,
    attributes: Mapping[str, str],
) -> dict[str, str | None]:
    """Every variable a subject defines, unsafe or missing values as None."""
    values: dict[str, str | None] = {
        "device.id": safe_value(device_id),
        "device.type": safe_value(type_name),
        "device.site": safe_value(site),
        "device.org": safe_value(org_unit_id),
    }
    for key, value in attributes.items():
        values[ATTRIBUTE_PREFIX + key] = safe_value(value)
    return values
