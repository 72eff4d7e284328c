"""A live ``iotiam serve`` per backend, driven the way an operator drives it.

The server runs as a subprocess in its own process group on free ports, in a data
directory made by ``iotiam init``; the CLI, openssl, curl and pkilint talk to it over
real sockets. ``server`` is shared by the tests of one module; ``fresh_server`` is for
tests that break the installation on purpose (tampering, ``kill -9``).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import (
    BACKENDS,
    migrated_schema_url,
    migrated_sqlite_template,
    postgres_schema_url,
)
from iotiam.testing import require, require_binary

from .live_server import Server, launch


def serve_live(backend: str, base: Path, extra_env: dict[str, str] | None = None, *,
               broker: bool = False, migrated: bool = True,
               serve_args: tuple[str, ...] = ()) -> Iterator[Server]:
    """Launch a server for a fixture, stop it after, and check it logged no traceback.

    ``init`` finds the database ``migrated`` already (on PostgreSQL a schema from the pool
    of ``conftest.migrated_schema_url``, on SQLite a copy of this process's
    ``conftest.migrated_sqlite_template``: migrating costs ~1.6 s a server), or migrates
    an empty one itself."""
    schema = None
    if backend == "postgresql":
        schema = migrated_schema_url() if migrated else postgres_schema_url()
    elif migrated:
        (base / "data").mkdir(mode=0o700)
        shutil.copyfile(migrated_sqlite_template(), base / "data" / "iotiam.db")
    url = next(schema) if schema is not None else None
    try:
        server = launch(backend, base, url, extra_env, broker=broker, serve_args=serve_args)
        try:
            yield server
        finally:
            crashed = server.process is None
            server.stop()
            log = server.log_text()
        # G10: no request made any test's server raise (uvicorn logs a traceback on a 500)
        assert crashed or "Traceback" not in log, f"the server logged a traceback:\n{log}"
    finally:
        if schema is not None:
            for _ in schema:
                pass


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """A live server shared by the tests of one module, on each configured backend."""
    yield from serve_live(request.param, tmp_path_factory.mktemp(f"iotiam-{request.param}"))


@pytest.fixture(params=BACKENDS)
def fresh_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A live server of one's own, for tests that tamper with or crash it (on PostgreSQL,
    ``init`` migrates an empty schema, as it does a new database)."""
    yield from serve_live(request.param, tmp_path, migrated=False)


@pytest.fixture(scope="session")
def openssl() -> str:
    """The openssl binary (a missing one skips, or fails under IOTIAM_REQUIRE_INTEGRATION)."""
    return require_binary("openssl")


@pytest.fixture(scope="session")
def curl() -> str:
    """The curl binary."""
    return require_binary("curl")


@pytest.fixture(scope="session")
def pkilint_bin() -> Path:
    """Directory holding pkilint's ``lint_*`` entry points."""
    tool = Path(sys.executable).with_name("lint_pkix_cert")
    require(tool.exists(), "pkilint is not installed (pip install -e '.[dev]')")
    return tool.parent
