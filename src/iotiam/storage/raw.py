"""Hand-written SQL for the issuance hot path, run on the unit of work's own connection.

Building and caching a SQLAlchemy statement costs ~100 µs; the DBAPI runs the same
indexed statement in ~5 µs. Issuance runs about eight statements per certificate, so
the statements it runs on every call are written once here in both dialects and sent
straight to the driver, inside the transaction SQLAlchemy opened. Everything else
stays on SQLAlchemy Core. Values are stored exactly as the Core path stores them.
"""

from __future__ import annotations

import functools
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Generic, TypeVar

from sqlalchemy import BigInteger, Boolean, Connection, DateTime, Float, Integer, LargeBinary, Table
from sqlalchemy.exc import DBAPIError

# SQLAlchemy's SQLite DATETIME format: what the Core path writes and reads back
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"
_NAMED = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")
#: ``Connection.info`` key: the writes :meth:`RawSql.defer` holds for the next round trip
DEFERRED = "iotiam_deferred_writes"


class RawStatement:
    """One statement with ``:name`` parameters, rendered for each driver once."""

    def __init__(self, sql: str) -> None:
        self.sqlite = sql
        # psycopg's named style; no statement here contains a literal %
        self.postgresql = _NAMED.sub(r"%(\1)s", sql)


T = TypeVar("T")


class ParsedRows(Generic[T]):
    """Objects built from stored rows, kept by the whole row (its values as read).

    Any change to a row (a revocation, an update) makes it a different key, so nothing
    stale is ever served: what is saved is only the parsing, never the read.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._built: OrderedDict[tuple[Any, ...], T] = OrderedDict()
        self._limit = limit

    def get(self, row: tuple[Any, ...], build: Callable[[tuple[Any, ...]], T]) -> T:
        """The object of ``row``, built once (the oldest is forgotten beyond the limit)."""
        built = self._built.get(row)
        if built is None:
            built = self._built[row] = build(row)
            if len(self._built) > self._limit:
                self._built.popitem(last=False)
        return built


class RawSql:
    """Runs :class:`RawStatement` s on the DBAPI connection under a Core ``Connection``."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.is_sqlite = conn.dialect.name == "sqlite"

    def run(self, statement: RawStatement, params: dict[str, Any]) -> Any:
        """Execute; returns the DBAPI cursor (fetch from it, read ``rowcount``)."""
        return self._execute(statement, params, many=False)

    def change_many(self, statement: RawStatement, rows: Sequence[dict[str, Any]]) -> int:
        """Execute a write once per parameter set (``executemany``); rows touched in all."""
        if not rows:
            return 0
        cursor = self._execute(statement, rows, many=True)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def defer(self, statement: RawStatement, rows: Sequence[dict[str, Any]],
              check: Callable[[int], None] | None = None) -> None:
        """A write whose answer nothing waits for, once per parameter set.

        PostgreSQL: sent with the next statement that is waited for (a read, any Core
        statement, the commit) in one round trip (psycopg's pipeline), in the order
        asked, inside the same transaction; ``check`` is then given the rows touched
        (raising fails the transaction). SQLite, whose statements are no round trips:
        run now. A rollback drops what was not sent.
        """
        if not rows:
            return
        if self.is_sqlite:
            touched = self.change_many(statement, rows)
            if check is not None:
                check(touched)
            return
        self._conn.info.setdefault(DEFERRED, []).append((statement, rows, check))

    def flush(self, *, commit: bool = False) -> None:
        """Send the deferred writes now, if any (then COMMIT, in the same round trip)."""
        if self._conn.info.get(DEFERRED):
            self._execute(None, None, many=False, commit=commit)

    def _execute(self, statement: RawStatement | None, params: Any, *, many: bool,
                 commit: bool = False) -> Any:
        deferred = None if self.is_sqlite else self._conn.info.pop(DEFERRED, None)
        dbapi_conn: Any = self._conn.connection.dbapi_connection
        dbapi = self._conn.dialect.loaded_dbapi
        sql = "" if statement is None else (
            statement.sqlite if self.is_sqlite else statement.postgresql)
        cursor: Any = dbapi_conn.cursor() if statement is not None else None
        try:
            if deferred or commit:
                reads = [] if cursor is None else [(cursor, sql, params, many)]
                _pipelined(dbapi_conn, deferred or [], reads, commit=commit)
                return cursor
            if many:
                cursor.executemany(sql, params)
            else:
                cursor.execute(sql, params)
        except dbapi.Error as e:
            if cursor is not None:
                cursor.close()
            # the same IntegrityError / DataError / OperationalError Core would raise
            raise DBAPIError.instance(sql, params, e, dbapi.Error) from e
        return cursor

    def all_together(self, statements: Sequence[tuple[RawStatement, dict[str, Any]]]
                     ) -> list[list[Any]]:
        """Every row of each statement, run in order; on PostgreSQL in one round trip
        (with the deferred writes), as none needs another's answer to be asked."""
        if self.is_sqlite:
            return [self.all(statement, params) for statement, params in statements]
        dbapi_conn: Any = self._conn.connection.dbapi_connection
        dbapi = self._conn.dialect.loaded_dbapi
        reads = [(dbapi_conn.cursor(), statement.postgresql, params, False)
                 for statement, params in statements]
        try:
            _pipelined(dbapi_conn, self._conn.info.pop(DEFERRED, None) or [], reads,
                       commit=False)
            return [list(cursor.fetchall()) for cursor, _, _, _ in reads]
        except dbapi.Error as e:
            raise DBAPIError.instance(reads[-1][1], None, e, dbapi.Error) from e
        finally:
            for cursor, _, _, _ in reads:
                cursor.close()

    def first(self, statement: RawStatement, params: dict[str, Any]) -> Any:
        """The first row, or None."""
        cursor = self.run(statement, params)
        try:
            return cursor.fetchone()
        finally:
            cursor.close()

    def all(self, statement: RawStatement, params: dict[str, Any]) -> list[Any]:
        """Every row."""
        cursor = self.run(statement, params)
        try:
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def change(self, statement: RawStatement, params: dict[str, Any]) -> int:
        """Execute a write; the number of rows it touched."""
        cursor = self.run(statement, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def when(self, value: datetime | None) -> Any:
        """A timezone-aware datetime as the ``UtcDateTime`` column stores it."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        naive = value.replace(tzinfo=None)
        # isoformat writes _SQLITE_DATETIME at about half strftime's cost (hot: issuance
        # stores four times per certificate)
        return naive.isoformat(" ", "microseconds") if self.is_sqlite else naive


def _pipelined(dbapi_conn: Any, deferred: list[tuple[RawStatement, Sequence[dict[str, Any]],
                                                     Callable[[int], None] | None]],
               reads: list[tuple[Any, str, Any, bool]], *, commit: bool) -> None:
    """``deferred``, then each (cursor, sql, parameters, many) of ``reads``, then COMMIT
    (if asked), in one psycopg pipeline: one round trip. The checks run once it is
    answered, and before the COMMIT is sent (a round trip more when a write to commit
    has one)."""
    if commit and any(check is not None for _, _, check in deferred):
        _pipelined(dbapi_conn, deferred, reads, commit=False)
        deferred, reads = [], []
    sent = []
    with dbapi_conn.pipeline():
        for statement, rows, check in deferred:
            write = dbapi_conn.cursor()
            write.executemany(statement.postgresql, rows)
            sent.append((write, check))
        for cursor, sql, params, many in reads:
            (cursor.executemany if many else cursor.execute)(sql, params)
        if commit:
            dbapi_conn.commit()
    for write, check in sent:
        touched = int(write.rowcount)
        write.close()
        if check is not None:
            check(touched)


def dbapi_cursor(conn: Connection) -> Any:
    """A cursor of the driver's under ``conn``, once its deferred writes are sent (what
    runs on it comes after them, as the transaction asked)."""
    send_deferred(conn)
    return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]


def send_deferred(conn: Connection) -> None:
    """Send ``conn``'s deferred writes (before a statement of SQLAlchemy's own)."""
    if conn.info.get(DEFERRED):
        RawSql(conn).flush()


def drop_deferred(conn: Connection) -> None:
    """Forget ``conn``'s deferred writes (its transaction rolled back); a connection
    that was lost took them with it."""
    if not conn.invalidated:
        conn.info.pop(DEFERRED, None)


def utc(value: Any) -> datetime | None:
    """A stored ``UtcDateTime`` value (string on SQLite, naive datetime on PostgreSQL)."""
    return None if value is None else utc_required(value)


def utc_required(value: Any) -> datetime:
    """A stored non-null ``UtcDateTime`` value."""
    if isinstance(value, str):  # SQLite: the zone parsed with the rest (no replace)
        return datetime.fromisoformat(value + "+00:00")
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC)


def row_object(columns: tuple[str, ...], values: Any, times: frozenset[str]) -> Any:
    """A raw row with attribute access, its ``UtcDateTime`` columns made aware."""
    return SimpleNamespace(**{
        name: utc(value) if name in times else value
        for name, value in zip(columns, values, strict=True)
    })


class ByIds:
    """A statement over a list of ids given as one text parameter (``{ids}`` in the
    template; the ids are identifiers or entry ids, which never hold a comma): no SQL
    compiled and no array built per call, which at 5,000 ids is most of the statement's
    cost (an expanded ``IN`` binds a parameter per id)."""

    def __init__(self, template: str) -> None:
        self._sqlite = RawStatement(template.format(ids="IN (SELECT value FROM json_each(:ids))"))
        self._postgresql = RawStatement(
            template.format(ids="= ANY(string_to_array(:ids, ','))"))

    def rows(self, raw: RawSql, ids: Sequence[str]) -> list[Any]:
        """Execute; every row it returns."""
        if raw.is_sqlite:
            return raw.all(self._sqlite, {"ids": json.dumps(list(ids))})
        return raw.all(self._postgresql, {"ids": ",".join(ids)})


def in_list(name: str, count: int) -> str:
    """``:name0, :name1, …``: the parameters of an ``IN (…)`` with ``count`` values."""
    return ", ".join(f":{name}{i}" for i in range(count))


@functools.lru_cache(maxsize=256)
def in_statement(sql: str, name: str, count: int) -> RawStatement:
    """``sql`` with its ``{in_list}`` made :func:`in_list` (name, count); made once per
    shape, as rendering for psycopg costs a regex pass per parameter."""
    return RawStatement(sql.format(in_list=in_list(name, count)))


def in_params(name: str, values: Sequence[Any]) -> dict[str, Any]:
    """The parameters :func:`in_list` names, bound to ``values``."""
    return {f"{name}{i}": value for i, value in enumerate(values)}


def select_sql(table: str, columns: tuple[str, ...], where: str) -> str:
    """``SELECT <columns> FROM <table> WHERE <where>``."""
    # only ever called with this package's own constant names, never with input
    return f"SELECT {', '.join(columns)} FROM {table} WHERE {where}"  # noqa: S608


def _pg_type(table: Table, column: str) -> str:
    kind = table.c[column].type
    if isinstance(kind, LargeBinary):
        return "bytea"
    if isinstance(kind, Float):
        return "float8"
    if isinstance(kind, BigInteger):
        return "int8"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(getattr(kind, "impl", kind), DateTime):  # ``UtcDateTime``: naive UTC
        return "timestamp"
    return "text"


class BulkInsert:
    """One ``INSERT`` of many rows, written once for each backend: ``executemany`` of one
    prepared statement on SQLite, one ``INSERT ... SELECT FROM unnest(<column arrays>)``
    on PostgreSQL (one statement for the server to plan and run, not one per row).

    ``copied``: on PostgreSQL the rows go through a staging table instead, filled with a
    binary ``COPY`` and moved with one ``INSERT ... SELECT``. psycopg writes a row to
    ``COPY`` in C, where building the column arrays and dumping them took Python about
    four times the CPU (1.8 against 0.4 µs a row of seven columns, measured with
    psycopg 3.3); the server's share is the same. For the bulk writes of an import.
    """

    def __init__(self, table: Table, columns: Sequence[str], conflict: str, *,
                 copied: bool = False) -> None:
        self.columns = tuple(columns)
        names = ", ".join(self.columns)
        self.sqlite = (f"INSERT INTO {table.name} ({names}) VALUES "  # noqa: S608
                       f"({', '.join('?' for _ in self.columns)}) {conflict}")
        # binary arrays (``%b``): psycopg's text arrays escape each element with a regex
        # substitution per quote, 18 µs for a trust score's factors where binary takes
        # 0.3 µs (measured: 5,000 JSON strings, psycopg 3.3)
        types = [_pg_type(table, c) for c in self.columns]
        arrays = ", ".join(f"%b::{kind}[]" for kind in types)
        self.postgresql = (f"INSERT INTO {table.name} ({names}) "  # noqa: S608
                           f"SELECT * FROM unnest({arrays}) {conflict}")
        self._copy: _Staged | None = _Staged(table.name, names, types, conflict) if copied \
            else None

    def run(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert ``rows`` (tuples in ``columns`` order); how many rows were written.

        On PostgreSQL no two rows may share the conflict key (``DO UPDATE`` cannot touch
        a row twice in one statement): the caller keeps one per key.
        """
        if not rows:
            return 0
        cursor = dbapi_cursor(conn)
        dbapi = conn.dialect.loaded_dbapi
        try:
            if conn.dialect.name == "sqlite":
                cursor.executemany(self.sqlite, rows)
            elif self._copy is not None:
                return self._copy.run(cursor, rows)
            else:
                cursor.execute(self.postgresql, [list(c) for c in zip(*rows, strict=True)])
            return int(cursor.rowcount)
        except dbapi.Error as e:
            # the same IntegrityError / DataError Core would raise (storage/database.py)
            raise DBAPIError.instance(self.sqlite, None, e, dbapi.Error) from e
        finally:
            cursor.close()


class _Staged:
    """PostgreSQL: rows through a temporary staging table (this session's own, made on
    first use), filled with a binary ``COPY`` and moved with one ``INSERT ... SELECT``."""

    def __init__(self, table: str, names: str, types: list[str], conflict: str) -> None:
        stage = f"pg_temp.iotiam_stage_{table}"
        self.types = types
        # ``ON COMMIT DELETE ROWS``: the staging table is empty at every transaction's
        # start (a temporary table is never vacuumed: rows deleted one by one would
        # pile up); emptied after the move too, for a second run in one transaction
        self.create = (f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} "
                       f"(LIKE {table}) ON COMMIT DELETE ROWS")
        self.copy = f"COPY {stage} ({names}) FROM STDIN (FORMAT BINARY)"
        self.move = (f"INSERT INTO {table} ({names}) SELECT {names} "  # noqa: S608
                     f"FROM {stage} {conflict}")
        self.empty = f"DELETE FROM {stage}"  # noqa: S608

    def run(self, cursor: Any, rows: Sequence[tuple[Any, ...]]) -> int:
        cursor.execute(self.create)
        with cursor.copy(self.copy) as copy:
            copy.set_types(self.types)
            for row in rows:
                copy.write_row(row)
        cursor.execute(self.move)
        written = int(cursor.rowcount)
        cursor.execute(self.empty)
        return written


def bulk_upsert(table: Table, columns: Sequence[str], key: Sequence[str], *,
                copied: bool = False) -> BulkInsert:
    """A :class:`BulkInsert` replacing the other columns of a row whose ``key`` exists."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return BulkInsert(table, columns, f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}",
                      copied=copied)
