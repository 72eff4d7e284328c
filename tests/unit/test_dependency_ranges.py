"""Every dependency has a range CI tests: an upper bound, and the installed version in it.

Open-ended ranges let typer 0.29 change its exceptions and httpx 0.28 drop ``cert=``
unnoticed (issue 12, items 11 and 12). CI installs from ``pyproject.toml``, so the
installed versions are the tested ones; this keeps the declared ranges honest.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def declared() -> list[Requirement]:
    """The runtime and dev requirements of the project."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize("requirement", declared(), ids=lambda r: f"ok/{r.name}")
def test_ok_bounded_and_installed_version_inside(requirement: Requirement) -> None:
    operators = {spec.operator for spec in requirement.specifier}
    assert operators & {"<", "==", "~=", "<="}, f"{requirement} has no upper bound"
    assert operators & {">=", "==", "~="}, f"{requirement} has no lower bound"
    installed = metadata.version(requirement.name)
    assert requirement.specifier.contains(installed, prereleases=True), \
        f"{requirement.name} {installed} is installed but {requirement} is declared"


def test_ok_packages_imported_by_src_are_declared() -> None:
    # src imports these directly; a transitive dependency may drop them or move majors
    names = {r.name.lower() for r in declared()}
    for direct in ("starlette", "click", "httpx", "uvicorn", "typer"):
        assert direct in names, f"{direct} is imported by src/iotiam but not declared"
