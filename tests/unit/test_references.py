"""Comments, docstrings and docs cite files that exist in this repository.

A reference is a path-like word ending in ``.py``, ``.md``, ``.toml`` or ``.mako`` in a
comment or docstring of ``src/``, ``tests/`` or ``benchmarks/``, or anywhere in the
Markdown of ``docs/`` and ``README.md``. With a directory part (``storage/raw.py``,
``docs/cli.md``) it must exist inside the repository, relative to its root, to
``src/iotiam`` (how the code names its own modules) or to the citing file's directory or
one above it. A bare Markdown name (``cli.md``) must be at the root, in ``docs/`` or
beside the citing file; a bare module name (``rules.py``) must be some file of the
repository. Files the code writes at run time (``profile.json``, ``ca.pem``) are not
references and are not checked.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "iotiam"
REFERENCE = re.compile(
    r"(?<![\w./\\-])((?:\.\./)*(?:[\w.-]+/)*[\w-]+\.(?:py|md|toml|mako))(?![\w/-]|\.\w)")


def _sources() -> list[Path]:
    return sorted(p for top in ("src", "tests", "benchmarks") for p in (ROOT / top).rglob("*.py"))


def _markdown() -> list[Path]:
    return [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]


def _prose(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of each comment and docstring of a Python file."""
    text = path.read_text()
    if not REFERENCE.search(text):
        return
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                yield body[0].lineno, body[0].value.value


def _exists(reference: str, citing: Path, file_names: set[str]) -> bool:
    if "/" not in reference:
        if reference.endswith(".md"):
            return any((base / reference).exists()
                       for base in (ROOT, ROOT / "docs", citing.parent))
        return reference in file_names
    bases = [ROOT, PACKAGE, *(p for p in citing.parents if p == ROOT or ROOT in p.parents)]
    return any(target.exists() and target.is_relative_to(ROOT)
               for target in ((base / reference).resolve() for base in bases))


def _dangling() -> list[str]:
    file_names = {p.name for top in ("src", "tests", "benchmarks", "docs")
                  for p in (ROOT / top).rglob("*")} | {p.name for p in ROOT.iterdir()}
    cited = [(path, line, text) for path in _sources() for line, text in _prose(path)]
    cited += [(path, n, line) for path in _markdown()
              for n, line in enumerate(path.read_text().splitlines(), 1)]
    return [f"{path.relative_to(ROOT)}:{line}: {match.group(1)}"
            for path, line, text in cited for match in REFERENCE.finditer(text)
            if not _exists(match.group(1), path, file_names)]


def test_every_cited_file_exists() -> None:
    dangling = _dangling()
    assert not dangling, "\n".join(dangling)


def test_fail_a_missing_file_is_found() -> None:
    """The check itself: a cited file that is not there is reported, one that is is not."""
    assert _exists("storage/raw.py", PACKAGE / "storage" / "database.py", set())
    assert _exists("docs/cli.md", ROOT / "README.md", set())
    assert not _exists("DESIGN.md", PACKAGE / "pki" / "ocsp.py", set())
    assert not _exists("../shared/STYLE.md", ROOT / "README.md", set())
    assert not _exists("storage/schema_of_old.py", PACKAGE / "bootstrap.py", set())
    assert [m.group(1) for m in REFERENCE.finditer(
        "see storage/raw.py, `docs/cli.md` and (rules.py); not ca.pem or x.py.bak")] == [
        "storage/raw.py", "docs/cli.md", "rules.py"]
