"""The import rules of docs/architecture.md, checked on the source so they cannot drift.

- A domain (``iotiam.<domain>``) imports the kernel, its own package, and of another
  domain only what that domain publishes: its ``models`` and ``ports`` (and the few
  pure value modules named in ``PUBLISHED``). A use case that needs another domain's
  behaviour names that domain's port; the composition root hands it the service.
- No domain imports an adapter (storage, broker, api, cli, agent, testing), the
  composition root or ``iotiam.config``.
- The kernel imports no domain.
- Only the composition root (``bootstrap``, ``installation``) and storage itself import
  ``iotiam.storage``; only ``bootstrap`` imports ``iotiam.fast``.
- Outside the domains, only the composition level (``SERVICE_USERS``), the web layer and
  the test kit import a domain's ``service``: the broker names what it needs as
  protocols and is handed the services.
- Only ``iotiam.config`` reads the environment; nothing imports by a computed name.
- No module is over about 500 lines (``MAX_MODULE_LINES``) and no function over 60,
  outside migrations.

Every rule is a function over a source directory (``Source``), run on ``src/`` and, in
the self-tests at the end, on small planted trees that try each known way around it.
What counts as an import: ``import`` and ``from`` statements anywhere in a file (inside
functions too), relative ones resolved against the module's package; ``from P import x``
counts ``P.x`` when it is a module or package, else the module that ``P`` got
``x`` from (a package or a port re-exporting a service does not launder it); attribute
chains through an imported package (``import iotiam.pki.models`` binds ``iotiam``, and
``iotiam.storage.database`` is then reachable); ``importlib.import_module`` and
``__import__`` with a string literal. The root package ``iotiam`` itself (its version)
is no layer.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

DOMAINS = ("admin", "attestation", "audit", "compliance", "credentials", "detection",
           "discovery", "enrollment", "gateways", "inventory", "pki", "policy", "response",
           "risk", "sso", "tokens")
KERNEL = {"iotiam.errors", "iotiam.clock", "iotiam.untrusted", "iotiam.kernel",
          "iotiam.changes", "iotiam.env_secrets"}
#: what each domain offers the others besides its ``models`` and ``ports``: pure values
#: and functions that read no store and call no service
PUBLISHED: dict[str, set[str]] = {
    "pki": {"keys", "csr", "profiles", "client_certificates"},
    "inventory": {"lifecycle", "credential_status", "bulk_import"},
    "policy": {"actions", "topics"},
    "tokens": {"jws"},
    # what iotiam's own traffic shows, as sightings: the broker's events, the approval
    # queue and the token endpoint hand them to discovery's SightingSink; it reads
    # certificates as every source does (``certificates``)
    "discovery": {"sources.own_traffic", "certificates"},
}
COMPOSITION = {"iotiam.bootstrap", "iotiam.ca_keyring", "iotiam.detection_wiring",
               "iotiam.group_commits", "iotiam.installation", "iotiam.serving"}
#: who builds the speed machinery into the graph (``api/oauth_token_path.py`` is handed
#: its combiner by ``group_commits.token_batches``)
FAST_USERS = {"iotiam.bootstrap", "iotiam.group_commits"}
#: outside the domains, who may import a domain's ``service`` module: the composition
#: root, and ``background.py``, composition-level like it (``serving.background_jobs``
#: wires its jobs; the CRL job drives ``pki.service.Pki``)
SERVICE_USERS = COMPOSITION | {"iotiam.background"}
#: the front ends the services are built for (the REST API and the web console beside it),
#: and the test kit that builds them over fakes
SERVICE_USER_PACKAGES = ("iotiam.api", "iotiam.web", "iotiam.testing")
#: the signature helper strips IOTIAM_* from a child's environment; the test kit reads
#: the suite's own switch
ENVIRONMENT_READERS = {"iotiam.config", "iotiam.fast.signature_helper",
                       "iotiam.testing.environment"}
#: modules that may import by a computed name (none: an import must be visible here)
DYNAMIC_IMPORTERS: set[str] = set()
MAX_MODULE_LINES = 520  # "about 500": broker/sync.py and bootstrap.py are over 500
MAX_FUNCTION_LINES = 60

_ENVIRONMENT = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
_IMPORTERS = {"import_module", "__import__"}


class Source:
    """The ``iotiam`` package under a source directory, each file parsed once."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.paths = {self._name(p): p for p in sorted((src / "iotiam").rglob("*.py"))}
        self.packages = {self._name(d / "__init__") for d in (src / "iotiam").rglob("*")
                         if d.is_dir()} | {"iotiam"}
        self._nodes: dict[str, list[ast.AST]] = {}
        self._importers: dict[str, set[str]] = {}
        self._bindings: dict[str, dict[str, tuple[str, str | None]]] = {}
        self._imports: dict[str, list[str]] = {}

    def _name(self, path: Path) -> str:
        parts = path.relative_to(self.src).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def nodes(self, module: str) -> list[ast.AST]:
        """Every node of the module's syntax tree (inside functions too)."""
        if module not in self._nodes:
            self._nodes[module] = list(ast.walk(ast.parse(self.paths[module].read_text())))
        return self._nodes[module]

    def is_init(self, module: str) -> bool:
        return module in self.paths and self.paths[module].name == "__init__.py"

    def is_module(self, name: str) -> bool:
        """A module or a package (with or without ``__init__.py``)."""
        return name in self.paths or name in self.packages

    def package_of(self, module: str) -> str:
        return module if self.is_init(module) else module.rpartition(".")[0]

    def absolute(self, module: str, node: ast.ImportFrom) -> str:
        """The module a ``from`` import names, relative ones resolved."""
        if node.level == 0:
            return node.module or ""
        package = self.package_of(module).split(".")
        base = ".".join(package[:len(package) - node.level + 1])
        return f"{base}.{node.module}" if node.module else base

    def bindings(self, module: str) -> dict[str, tuple[str, str | None]]:
        """Each name the module binds by importing: (from where, which name there), or
        (the module, None) for ``import x.y as name``."""
        if module not in self._bindings:
            bound: dict[str, tuple[str, str | None]] = {}
            for node in self.nodes(module):
                if isinstance(node, ast.ImportFrom):
                    base = self.absolute(module, node)
                    bound |= {a.asname or a.name: (base, a.name) for a in node.names}
                elif isinstance(node, ast.Import):
                    bound |= {a.asname: (a.name, None) for a in node.names if a.asname}
            self._bindings[module] = bound
        return self._bindings[module]

    def origin(self, module: str, name: str, seen: frozenset[str] = frozenset()) -> str:
        """Where ``module.name`` comes from: a submodule, else the module ``module``
        imported it from (a package's ``__init__`` or any module re-exporting), else
        ``module`` itself."""
        if self.is_module(f"{module}.{name}"):
            return f"{module}.{name}"
        if module not in self.paths or module in seen:
            return module
        base, there = self.bindings(module).get(name, (module, None))
        if base == module:
            return module
        return base if there is None else self.origin(base, there, seen | {module})

    def imports(self, module: str) -> list[str]:
        """Every ``iotiam.*`` module ``module`` imports (see the module docstring)."""
        if module not in self._imports:
            self._imports[module] = self._find_imports(module)
        return self._imports[module]

    def _find_imports(self, module: str) -> list[str]:
        found: list[str] = []
        bound: dict[str, str] = {}  # a name in the module -> the module it is bound to
        for node in self.nodes(module):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.append(alias.name)
                    top = alias.name.partition(".")[0]
                    bound[alias.asname or top] = alias.name if alias.asname else top
            elif isinstance(node, ast.ImportFrom):
                base = self.absolute(module, node)
                found.append(base)
                for alias in node.names:
                    origin = self.origin(base, alias.name)
                    found.append(origin)
                    if origin != base and self.is_module(origin):
                        bound[alias.asname or alias.name] = origin
            elif isinstance(node, ast.Call) and self.is_importer(module, node.func):
                named = _literal_argument(node)
                if named is not None:
                    found.append(named)
        for node in self.nodes(module):
            if isinstance(node, ast.Attribute) and (chain := _dotted(node)):
                head, *rest = chain
                if head in bound:
                    found.append(self._through(bound[head], rest))
        return list(dict.fromkeys(n for n in found if n.startswith("iotiam.")))

    def _through(self, name: str, attributes: list[str]) -> str:
        """The module ``name.a.b...`` reaches."""
        for attribute in attributes:
            reached = self.origin(name, attribute)
            if reached == name:
                break
            name = reached
            if not self.is_module(name):
                break
        return name

    def is_importer(self, module: str, func: ast.expr) -> bool:
        """``importlib.import_module``, ``__import__`` or a name bound to either."""
        if isinstance(func, ast.Attribute):
            return func.attr in _IMPORTERS
        if module not in self._importers:
            self._importers[module] = {"__import__"} | {
                alias.asname or alias.name for node in self.nodes(module)
                if isinstance(node, ast.ImportFrom) and node.module in ("importlib", "builtins")
                for alias in node.names if alias.name in _IMPORTERS}
        return isinstance(func, ast.Name) and func.id in self._importers[module]


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but names and attributes."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]




def _literal_argument(call: ast.Call) -> str | None:
    first = call.args[0] if call.args else next(
        (k.value for k in call.keywords if k.arg == "name"), None)
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def dynamic_imports(source: Source, module: str) -> list[str]:
    """Imports by a name this test cannot see: of iotiam, relative, or computed."""
    return [f"line {node.lineno}: {ast.unparse(node)}" for node in source.nodes(module)
            if isinstance(node, ast.Call) and source.is_importer(module, node.func)
            and ((named := _literal_argument(node)) is None
                 or named == "iotiam" or named.startswith(("iotiam.", ".")))]


def environment_reads(source: Source, module: str) -> list[str]:
    """``os.environ``, ``os.getenv``, ``os.putenv``... however ``os`` or they are bound."""
    os_names = {"os"}
    found = []
    for node in source.nodes(module):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "os" and alias.asname:
                    os_names.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"line {node.lineno}: from os import {a.name}" for a in node.names
                      if a.name in _ENVIRONMENT or a.name == "*"]
    for node in source.nodes(module):
        if (isinstance(node, ast.Attribute) and node.attr in _ENVIRONMENT
                and isinstance(node.value, ast.Name) and node.value.id in os_names):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


# -- the rules ---------------------------------------------------------------------------

def _domain_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in DOMAINS else None


def _allowed_in_domain(domain: str, imported: str) -> bool:
    if imported in KERNEL:
        return True
    parts = imported.split(".")
    if parts[1] == domain:
        return True
    if parts[1] not in DOMAINS:
        return False
    if len(parts) == 2:  # what the package's __init__ defines itself (re-exports resolved)
        return True
    return parts[2] in {"models", "ports"} or _published(parts)


def _published(parts: list[str]) -> bool:
    """``iotiam.<domain>.<name>`` (a name may be dotted: ``sources.own_traffic``) is listed
    in ``PUBLISHED``, or the package holding it is."""
    listed = PUBLISHED.get(parts[1], set())
    return any(".".join(parts[2:2 + n]) in listed for n in range(1, len(parts) - 1))


def domains_import_only_kernel_and_what_others_publish(source: Source) -> list[str]:
    return [f"{name} imports {imported}" for name in source.paths
            if (domain := _domain_of(name)) is not None
            for imported in source.imports(name) if not _allowed_in_domain(domain, imported)]


def published_modules_are_pure(source: Source) -> list[str]:
    """What a domain publishes reads no store and calls no service of anyone."""
    wrong = []
    for domain, names in PUBLISHED.items():
        for name in names:
            module = f"iotiam.{domain}.{name}"
            if module not in source.paths:
                continue  # test_published_modules_exist
            for imported in source.imports(module):
                parts = imported.split(".")
                ok = imported in KERNEL or (
                    len(parts) > 2 and parts[1] in DOMAINS
                    and (parts[2] == "models" or _published(parts)))
                if not ok:
                    wrong.append(f"{module} imports {imported}")
    return wrong


def kernel_imports_no_domain(source: Source) -> list[str]:
    return [f"{name} imports {imported}" for name in source.paths if name in KERNEL
            for imported in source.imports(name) if imported not in KERNEL]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def only_the_composition_root_opens_storage(source: Source) -> list[str]:
    return [f"{name} imports {imported}" for name in source.paths
            if name not in COMPOSITION and not _within(name, "iotiam.storage")
            for imported in source.imports(name) if _within(imported, "iotiam.storage")]


def only_the_composition_root_builds_the_fast_paths(source: Source) -> list[str]:
    return [f"{name} imports {imported}" for name in source.paths
            if name not in FAST_USERS and not _within(name, "iotiam.fast")
            for imported in source.imports(name) if _within(imported, "iotiam.fast")]


def adapters_are_handed_the_services(source: Source) -> list[str]:
    """Outside the domains (which the first rule covers), a domain's ``service`` module
    is imported by the composition level, the web layer and the test kit only."""
    return [f"{name} imports {imported}" for name in source.paths
            if _domain_of(name) is None and name not in SERVICE_USERS
            and not any(_within(name, p) for p in SERVICE_USER_PACKAGES)
            for imported in source.imports(name)
            if _domain_of(imported) is not None and imported.split(".")[2:3] == ["service"]]


def nothing_imports_by_a_computed_name(source: Source) -> list[str]:
    return [f"{name} {found}" for name in source.paths if name not in DYNAMIC_IMPORTERS
            for found in dynamic_imports(source, name)]


def only_config_reads_the_environment(source: Source) -> list[str]:
    """Settings come from ``iotiam.config``; a module reading the environment itself
    would be a setting nobody can find."""
    return [f"{name} {found}" for name in source.paths if name not in ENVIRONMENT_READERS
            for found in environment_reads(source, name)]


def _measured(source: Source) -> list[str]:
    return [name for name, path in source.paths.items() if "migrations" not in path.parts]


def modules_stay_small(source: Source) -> list[str]:
    return [f"{name}: {n} lines" for name in _measured(source)
            if (n := len(source.paths[name].read_text().splitlines())) > MAX_MODULE_LINES]


def functions_stay_short(source: Source) -> list[str]:
    return [f"{name}.{node.name}: {length} lines" for name in _measured(source)
            for node in source.nodes(name)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and (length := (node.end_lineno or node.lineno) - node.lineno + 1)
            > MAX_FUNCTION_LINES]


RULES: dict[str, Callable[[Source], list[str]]] = {rule.__name__: rule for rule in (
    domains_import_only_kernel_and_what_others_publish,
    published_modules_are_pure,
    kernel_imports_no_domain,
    only_the_composition_root_opens_storage,
    only_the_composition_root_builds_the_fast_paths,
    adapters_are_handed_the_services,
    nothing_imports_by_a_computed_name,
    only_config_reads_the_environment,
    modules_stay_small,
    functions_stay_short,
)}


def check(src: Path) -> dict[str, list[str]]:
    """Every rule broken under ``src`` (a directory holding the ``iotiam`` package)."""
    source = Source(src)
    return {name: wrong for name, rule in RULES.items() if (wrong := rule(source))}


@functools.cache
def _iotiam() -> Source:
    return Source(SRC)


@pytest.mark.parametrize("rule", RULES)
def test_rule_holds(rule: str) -> None:
    wrong = RULES[rule](_iotiam())
    assert not wrong, "\n".join(wrong)


def test_published_modules_exist() -> None:
    missing = [f"iotiam.{domain}.{name}" for domain, names in PUBLISHED.items()
               for name in names if f"iotiam.{domain}.{name}" not in _iotiam().paths]
    assert not missing, missing


def test_the_listed_exceptions_exist() -> None:
    """An exception for a module that is gone would let its next namesake through."""
    listed = COMPOSITION | FAST_USERS | SERVICE_USERS | ENVIRONMENT_READERS | DYNAMIC_IMPORTERS
    assert not [name for name in listed if name not in _iotiam().paths]


def test_the_shared_unit_of_work_is_gone() -> None:
    """Each domain declares the stores it works with in its own ``ports.py``."""
    assert not (SRC / "iotiam" / "unit_of_work.py").exists()


# -- the checker catches each way around it ----------------------------------------------

#: a small tree that breaks no rule; each case below plants one file in it
CLEAN = {
    "__init__.py": '__version__ = "0"\n',
    "kernel.py": "",
    "errors.py": "",
    "config.py": "import os\n\nHOME = os.environ.get('HOME')\n",
    "bootstrap.py": ("from iotiam.fast import batching\nfrom iotiam.pki.service import Pki\n"
                     "from iotiam.storage import database\n"),
    "background.py": "from iotiam.pki.service import Pki\n",
    "fast/__init__.py": "",
    "fast/batching.py": "from iotiam.fast import tricks\n",
    "fast/tricks.py": "",
    "storage/__init__.py": "",
    "storage/database.py": "from iotiam.storage import tables\n",
    "storage/tables/__init__.py": "",
    "pki/__init__.py": "",
    "pki/models.py": "from iotiam.errors import IamError\n",
    "pki/ports.py": "from . import models\nfrom .models import Serial\n",
    "pki/service.py": "from iotiam.pki import ports\nfrom iotiam.kernel import Principal\n",
    "policy/__init__.py": "from iotiam.policy.service import DecisionPoint\n",
    "policy/service.py": "",
    "policy/models.py": "",
    "inventory/__init__.py": "",
    "inventory/service.py": ("import importlib\nimport os\n\nfrom iotiam import __version__\n"
                             "from iotiam.pki import models\nfrom iotiam.pki.ports import X\n"
                             "from ..pki.models import Serial\n"
                             "JSON = importlib.import_module('json')\n"
                             "HERE = os.path.dirname(__file__)\n"),
    "broker/__init__.py": "",
    "broker/fleet.py": "from iotiam.pki.models import Serial\nfrom iotiam.policy import models\n",
    "api/__init__.py": "",
    "api/routes.py": "from iotiam.policy.service import DecisionPoint\n",
}


def _plant(root: Path, extra: dict[str, str]) -> dict[str, list[str]]:
    for relative, text in {**CLEAN, **extra}.items():
        path = root / "iotiam" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return check(root)


def test_the_clean_tree_passes(tmp_path: Path) -> None:
    assert _plant(tmp_path, {}) == {}


BYPASSES = {
    "relative import of a service": (
        "inventory/transfer.py", "from ..pki import service\n",
        "domains_import_only_kernel_and_what_others_publish",
        "iotiam.inventory.transfer imports iotiam.pki.service"),
    "relative import of the settings": (
        "inventory/transfer.py", "from .. import config\n",
        "domains_import_only_kernel_and_what_others_publish",
        "iotiam.inventory.transfer imports iotiam.config"),
    "relative import from a package's __init__": (
        "pki/__init__.py", "from ..storage.database import Database\n",
        "only_the_composition_root_opens_storage", "iotiam.pki imports iotiam.storage.database"),
    "storage through the root package": (
        "inventory/transfer.py", "from iotiam import storage\n",
        "only_the_composition_root_opens_storage",
        "iotiam.inventory.transfer imports iotiam.storage"),
    "fast through the root package": (
        "api/token.py", "from iotiam import fast\n",
        "only_the_composition_root_builds_the_fast_paths", "iotiam.api.token imports iotiam.fast"),
    "fast by a domain": (
        "pki/issuing.py", "from iotiam.fast.batching import LoopCombiner\n",
        "only_the_composition_root_builds_the_fast_paths",
        "iotiam.pki.issuing imports iotiam.fast.batching"),
    "a package attribute past an import": (
        "inventory/transfer.py",
        "import iotiam.pki.models\n\nDB = iotiam.storage.database.Database\n",
        "only_the_composition_root_opens_storage",
        "iotiam.inventory.transfer imports iotiam.storage.database"),
    "a service re-exported by its package": (
        "broker/sync.py", "from iotiam.policy import DecisionPoint\n",
        "adapters_are_handed_the_services", "iotiam.broker.sync imports iotiam.policy.service"),
    "a service through an imported package": (
        "broker/sync.py", "import iotiam.policy as policy\n\nD = policy.DecisionPoint\n",
        "adapters_are_handed_the_services", "iotiam.broker.sync imports iotiam.policy.service"),
    "a service imported by the broker": (
        "broker/sync.py", "from iotiam.pki.service import Pki\n",
        "adapters_are_handed_the_services", "iotiam.broker.sync imports iotiam.pki.service"),
    "a service imported by a new top-level module": (
        "jobs.py", "from iotiam.pki import service\n",
        "adapters_are_handed_the_services", "iotiam.jobs imports iotiam.pki.service"),
    "a domain imported by the kernel": (
        "kernel.py", "from iotiam.pki.models import Serial\n",
        "kernel_imports_no_domain", "iotiam.kernel imports iotiam.pki.models"),
    "an import inside a function": (
        "inventory/transfer.py",
        "def later():\n    from iotiam.storage.database import Database\n    return Database\n",
        "only_the_composition_root_opens_storage",
        "iotiam.inventory.transfer imports iotiam.storage.database"),
    "importlib with a literal": (
        "inventory/transfer.py",
        "import importlib\n\nDB = importlib.import_module('iotiam.storage.database')\n",
        "nothing_imports_by_a_computed_name",
        "iotiam.inventory.transfer line 3: importlib.import_module('iotiam.storage.database')"),
    "importlib with a literal, as an import": (
        "inventory/transfer.py",
        "import importlib\n\nDB = importlib.import_module('iotiam.storage.database')\n",
        "only_the_composition_root_opens_storage",
        "iotiam.inventory.transfer imports iotiam.storage.database"),
    "import_module under another name": (
        "inventory/transfer.py",
        "from importlib import import_module as load\n\nS = load(name='iotiam.pki.service')\n",
        "nothing_imports_by_a_computed_name",
        "iotiam.inventory.transfer line 3: load(name='iotiam.pki.service')"),
    "__import__": (
        "inventory/transfer.py", "S = __import__('iotiam.pki.service')\n",
        "domains_import_only_kernel_and_what_others_publish",
        "iotiam.inventory.transfer imports iotiam.pki.service"),
    "a computed name": (
        "broker/sync.py",
        "import importlib\n\nS = importlib.import_module('iotiam' + '.pki.service')\n",
        "nothing_imports_by_a_computed_name",
        "iotiam.broker.sync line 3: importlib.import_module('iotiam' + '.pki.service')"),
    "a relative dynamic import": (
        "broker/sync.py",
        "import importlib\n\nS = importlib.import_module('..pki.service', 'iotiam.broker')\n",
        "nothing_imports_by_a_computed_name", "iotiam.broker.sync line 3:"),
    "os.environ": (
        "broker/sync.py", "import os\n\nURL = os.environ['IOTIAM_URL']\n",
        "only_config_reads_the_environment", "iotiam.broker.sync line 3: os.environ"),
    "environ imported from os": (
        "broker/sync.py", "from os import environ as e\n\nURL = e.get('IOTIAM_URL')\n",
        "only_config_reads_the_environment", "iotiam.broker.sync line 1: from os import environ"),
    "getenv imported from os": (
        "broker/sync.py", "from os import getenv\n\nURL = getenv('IOTIAM_URL')\n",
        "only_config_reads_the_environment", "iotiam.broker.sync line 1: from os import getenv"),
    "getenv through an alias of os": (
        "broker/sync.py", "import os as system\n\nURL = system.getenv('IOTIAM_URL')\n",
        "only_config_reads_the_environment", "iotiam.broker.sync line 3: system.getenv"),
    "os.putenv": (
        "broker/sync.py", "import os\n\nos.putenv('IOTIAM_URL', 'x')\n",
        "only_config_reads_the_environment", "iotiam.broker.sync line 3: os.putenv"),
    "a long module": (
        "broker/sync.py", "X = 1\n" * (MAX_MODULE_LINES + 1),
        "modules_stay_small", f"iotiam.broker.sync: {MAX_MODULE_LINES + 1} lines"),
    "a long function": (
        "broker/sync.py", "def run():\n" + "    x = 1\n" * MAX_FUNCTION_LINES,
        "functions_stay_short", f"iotiam.broker.sync.run: {MAX_FUNCTION_LINES + 1} lines"),
}


@pytest.mark.parametrize("case", BYPASSES)
def test_the_checker_catches(case: str, tmp_path: Path) -> None:
    relative, text, rule, expected = BYPASSES[case]
    broken = _plant(tmp_path, {relative: text})
    assert any(line.startswith(expected) for line in broken.get(rule, [])), broken


def test_the_checker_follows_a_re_export_through_any_module(tmp_path: Path) -> None:
    broken = _plant(tmp_path, {"pki/ports.py": "from iotiam.pki.service import Pki\n",
                               "inventory/transfer.py": "from iotiam.pki.ports import Pki\n"})
    assert broken == {"domains_import_only_kernel_and_what_others_publish": [
        "iotiam.inventory.transfer imports iotiam.pki.service"]}
