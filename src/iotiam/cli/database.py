"""``iotiam db``: local maintenance of the database (the data directory's settings)."""

from __future__ import annotations

import time

import typer

from iotiam.cli.main import Context, console
from iotiam.config import load_settings

db_app = typer.Typer(help="Database maintenance (runs locally, not through the API).",
                     no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``db``."""
    app.add_typer(db_app, name="db")


@db_app.command("migrate")
def migrate(ctx: typer.Context) -> None:
    """Upgrade the schema in place to this version's (``serve`` does it too)."""
    from iotiam.bootstrap import migrate_database

    obj: Context = ctx.obj
    started = time.perf_counter()
    migrate_database(load_settings(obj.data_dir))
    console.print(f"schema up to date ({time.perf_counter() - started:.1f} s)")


@db_app.command("recount")
def recount(ctx: typer.Context) -> None:
    """Rebuild the inventory report's counts from the devices and certificates."""
    from iotiam.bootstrap import recount_fleet

    obj: Context = ctx.obj
    started = time.perf_counter()
    found = recount_fleet(load_settings(obj.data_dir))
    console.print(f"device counts: {found.device_counts_fixed} row(s) were wrong and are "
                  f"fixed; credential rows rebuilt: {found.credential_rows} "
                  f"({time.perf_counter() - started:.1f} s)")
