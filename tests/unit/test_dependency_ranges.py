"""Every dependency has a range CI tests: an upper bound, and the installed version in it.

Open-ended ranges let typer 0.29 change its exceptions and httpx 0.28 drop ``cert=``
unnoticed (issue 12, items 11 and 12). CI installs from ``pyproject.toml``, so the
installed versions are the tested ones; this keeps the declared ranges honest.
"""

from __future__ import annotations

import ast
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def imported_distributions() -> set[str]:
    """Distributions that provide the top-level modules src/iotiam imports."""
    src = PYPROJECT.parent / "src" / "iotiam"
    modules: set[str] = set()
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    providers = metadata.packages_distributions()
    return {dist.lower() for module in modules - {"iotiam"}
            for dist in providers.get(module, ())}


def test_ok_packages_imported_by_src_are_declared() -> None:
    # a package src imports directly may not ride on another's dependency: that one may
    # drop it or move it a major version
    # canonical names: prometheus-client's distribution calls itself prometheus_client
    names = {canonicalize_name(r.name) for r in declared()}
    missing = {canonicalize_name(d) for d in imported_distributions()} - names
    assert not missing, f"imported by src/iotiam but not declared: {sorted(missing)}"
