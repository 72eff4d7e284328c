"""``iotiam db``: local maintenance of the database (the data directory's settings)."""

from __future__ import annotations

import time

import typer

from iotiam.cli.main import Context, console
from iotiam.config import Settings, load_settings
from iotiam.errors import SetupError

db_app = typer.Typer(help="Database maintenance (runs locally, not through the API).",
                     no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``db``."""
    app.add_typer(db_app, name="db")


def _installed(ctx: typer.Context) -> Settings:
    """The settings of an installation that exists (never a new empty database)."""
    obj: Context = ctx.obj
    settings = load_settings(obj.data_dir)
    if settings.database_url is None and not (obj.data_dir / "iotiam.db").is_file():
        raise SetupError(f"no iotiam database in {obj.data_dir}: run `iotiam init` there, "
                         "or set IOTIAM_DATABASE_URL")
    return settings


@db_app.command("migrate")
def migrate(ctx: typer.Context) -> None:
    """Upgrade the schema in place to this version's (``serve`` does it too)."""
    from iotiam.bootstrap import migrate_database

    settings = _installed(ctx)
    started = time.perf_counter()
    migrate_database(settings)
    console.print(f"schema up to date ({time.perf_counter() - started:.1f} s)")


@db_app.command("recount")
def recount(ctx: typer.Context) -> None:
    """Rebuild the inventory report's counts from the devices and certificates."""
    from iotiam.bootstrap import recount_fleet

    settings = _installed(ctx)
    started = time.perf_counter()
    found = recount_fleet(settings)
    console.print(f"device counts: {found.device_counts_fixed} row(s) were wrong and are "
                  f"fixed; credential rows rebuilt: {found.credential_rows} "
                  f"({time.perf_counter() - started:.1f} s)")
