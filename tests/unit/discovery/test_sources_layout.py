"""Each discovery source stands alone: a source module imports no other source, only what
the sources share (``_common``, ``lines``) and the neutral discovery modules
(``models``, ``certificates``). A log source reaching into ``own_traffic`` (published to
the broker, enrollment and token code) for a certificate reader would tie every log
format to what iotiam's own traffic is allowed to import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCES = Path(__file__).resolve().parents[3] / "src" / "iotiam" / "discovery" / "sources"
PACKAGE = "iotiam.discovery.sources"
SHARED = {f"{PACKAGE}._common", f"{PACKAGE}.lines"}


def imported_sources(path: Path) -> set[str]:
    """The ``iotiam.discovery.sources`` modules ``path`` imports (relative ones resolved)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([PACKAGE, *([base] if base else [])])
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith(f"{PACKAGE}.")
            and (SOURCES / f"{name.removeprefix(PACKAGE + '.')}.py").exists()}


@pytest.mark.parametrize("path", sorted(SOURCES.glob("*.py")), ids=lambda p: p.stem)
def test_sources_ok_no_source_imports_another(path: Path) -> None:
    own = f"{PACKAGE}.{path.stem}"
    others = imported_sources(path) - SHARED - {own}
    assert not others, f"{own} imports {sorted(others)}"


def test_sources_fail_the_check_sees_a_source_importing_another(tmp_path: Path) -> None:
    planted = tmp_path / "zeek.py"
    planted.write_text("from iotiam.discovery.sources.own_traffic import read_certificate\n"
                       "from .nmap import NmapXml\nfrom . import lines\n")
    assert imported_sources(planted) == {f"{PACKAGE}.own_traffic", f"{PACKAGE}.nmap",
                                         f"{PACKAGE}.lines"}
