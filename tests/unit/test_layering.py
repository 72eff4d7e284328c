"""The import rules of docs/architecture.md, checked on the source so they cannot drift.

- A domain (``iotiam.<domain>``) imports the kernel, its own package, and of another
  domain only what that domain publishes: its ``models`` and ``ports`` (and the few
  pure value modules named in ``PUBLISHED``). A use case that needs another domain's
  behaviour names that domain's port; the composition root hands it the service.
- No domain imports an adapter (storage, broker, api, cli, agent, testing), the
  composition root or ``iotiam.config``.
- Only the composition root (``bootstrap``, ``installation``) and storage itself import
  ``iotiam.storage``.
- No module is over ~500 lines and no function over ~60 outside migrations.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "iotiam"

DOMAINS = ("admin", "attestation", "audit", "credentials", "detection", "enrollment",
           "inventory", "pki", "policy", "response", "tokens")
KERNEL = {"iotiam.errors", "iotiam.clock", "iotiam.untrusted", "iotiam.kernel",
          "iotiam.changes"}
#: what each domain offers the others besides its ``models`` and ``ports``: pure values
#: and functions that read no store and call no service
PUBLISHED: dict[str, set[str]] = {
    "pki": {"keys", "csr", "profiles"},
    "inventory": {"lifecycle", "credential_status", "bulk_import"},
    "policy": {"actions", "topics"},
    "tokens": {"jws"},
}
COMPOSITION = {"iotiam.bootstrap", "iotiam.installation"}
MAX_MODULE_LINES = 520
MAX_FUNCTION_LINES = 62


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> list[tuple[str, Path]]:
    return [(_module_name(p), p) for p in sorted(SRC.rglob("*.py"))]


def _imports(path: Path) -> list[str]:
    """Every ``iotiam`` module the file imports (``from iotiam.x import y`` counts
    ``iotiam.x.y`` when ``y`` is a module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if (SRC.parent / (candidate.replace(".", "/") + ".py")).exists():
                    found.append(candidate)
    return [name for name in found if name == "iotiam" or name.startswith("iotiam.")]


def _allowed_in_domain(domain: str, imported: str) -> bool:
    if imported in KERNEL or imported == "iotiam":
        return True
    parts = imported.split(".")
    if parts[1] == domain:
        return True
    if parts[1] not in DOMAINS:
        return False
    if len(parts) == 2:  # ``from iotiam.pki import keys`` also names the module itself
        return True
    return parts[2] in {"models", "ports"} | PUBLISHED.get(parts[1], set())


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_imports_only_kernel_and_other_domains_ports(domain: str) -> None:
    wrong = [f"{name} imports {imported}"
             for name, path in _modules() if name.split(".")[1:2] == [domain]
             for imported in _imports(path) if not _allowed_in_domain(domain, imported)]
    assert not wrong, "\n".join(wrong)


def test_published_modules_are_pure() -> None:
    """What a domain publishes reads no store and calls no service of anyone."""
    wrong = []
    for domain, names in PUBLISHED.items():
        for name in names:
            module = f"iotiam.{domain}.{name}"
            path = SRC / domain / f"{name}.py"
            for imported in _imports(path):
                parts = imported.split(".")
                ok = imported in KERNEL or (
                    len(parts) > 2 and parts[1] in DOMAINS
                    and (parts[2] in {"models"} | PUBLISHED.get(parts[1], set())))
                if not ok:
                    wrong.append(f"{module} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_kernel_imports_no_domain() -> None:
    wrong = [f"{name} imports {imported}" for name, path in _modules() if name in KERNEL
             for imported in _imports(path) if imported not in KERNEL]
    assert not wrong, "\n".join(wrong)


def test_only_the_composition_root_opens_storage() -> None:
    wrong = [f"{name} imports {imported}" for name, path in _modules()
             if name not in COMPOSITION and not name.startswith("iotiam.storage")
             for imported in _imports(path) if imported.startswith("iotiam.storage")]
    assert not wrong, "\n".join(wrong)


def test_the_shared_unit_of_work_is_gone() -> None:
    """Each domain declares the stores it works with in its own ``ports.py``."""
    assert not (SRC / "unit_of_work.py").exists()


def test_modules_stay_small() -> None:
    long = [f"{name}: {n} lines" for name, path in _modules()
            if "migrations" not in path.parts
            and (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, "\n".join(long)


def test_functions_stay_short() -> None:
    long = []
    for name, path in _modules():
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, "\n".join(long)


def test_only_config_reads_the_environment() -> None:
    """Settings come from ``iotiam.config``; a module reading ``os.environ`` itself
    would be a setting nobody can find. (The signature helper strips IOTIAM_* from a
    child's environment; the test kit reads the suite's own switch.)"""
    allowed = {"iotiam.config", "iotiam.fast.signature_helper", "iotiam.testing.environment"}
    wrong = [name for name, path in _modules() if name not in allowed
             and ("os.environ" in path.read_text() or "getenv(" in path.read_text())]
    assert not wrong, wrong
