"""Dropping a throw-away schema that a forgotten connection still holds does not hang."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import text

from conftest import PG_URL
from iotiam.storage.database import make_engine
from iotiam.testing.environment import require
from iotiam.testing.postgres import drop_schema


def test_ok_drop_ends_a_session_idle_in_a_transaction_on_the_schema() -> None:
    require(PG_URL is not None, "IOTIAM_TEST_DATABASE_URL is not set")
    assert PG_URL
    name = "iotiam_t_" + secrets.token_hex(6)
    admin, forgotten = make_engine(PG_URL), make_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {name}; CREATE TABLE {name}.t (x int)"))
        holder = forgotten.connect()
        holder.execute(text(f"SELECT * FROM {name}.t"))  # a lock held, transaction open
        with pytest.warns(UserWarning, match="idle in transaction") as said:
            drop_schema(admin, name)
        # the session is named after the test that opened it (conftest's PGAPPNAME)
        assert "on_the_schema'" in str(said[0].message)
        holder.invalidate()  # its session was ended under it
        with admin.connect() as conn:
            left = conn.execute(text("SELECT count(*) FROM pg_namespace WHERE nspname = :n"),
                                {"n": name}).scalar_one()
        assert left == 0
    finally:
        forgotten.dispose()
        admin.dispose()
