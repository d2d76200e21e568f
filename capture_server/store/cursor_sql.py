"""The capture path's prebuilt statements, run straight on the driver's cursor (issue 10).

`Connection.execute` spends ~60 µs of Python on every statement (cache key, execution context,
IN-list expansion, result metadata) where SQLite needs ~10 µs to run it, and recording a
message runs about twenty. Here SQLAlchemy compiles each statement once per dialect and set of
keys, giving the same SQL, bind and result type conversions and Python-side column defaults
as its execute; each run then goes to the cursor of the session's own connection, inside its
transaction. Driver errors come out as SQLAlchemy's (IntegrityError, OperationalError, ...)
and a lost connection is invalidated, as execute does. Not seen by SQLAlchemy's cursor events
or echo: these statements are the capture path's only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, exc
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Row = tuple[Any, ...]
Processor = Callable[[Any], Any]

_POSTCOMPILE = "__[POSTCOMPILE_{}]"  # SQLAlchemy's mark for an expanding IN list
_MAX_SIZED = 64  # SQL texts kept per statement, one per combination of IN-list lengths


@dataclass(frozen=True)
class _Prepared:
    """One statement compiled for one dialect and set of parameter keys."""

    sql: str  # expanding IN lists still marked: filled in per combination of lengths
    named: bool  # pyformat (%(name)s, psycopg) rather than qmark (?, SQLite)
    order: tuple[str, ...]  # qmark: the parameter names in their order in sql
    expanding: tuple[str, ...]  # the names bound to lists, in sorted order
    processors: Mapping[str, Processor]  # name → bind conversion (when the type has one)
    defaults: tuple[tuple[str, Callable[[], Any]], ...]  # insert columns filled when not given
    results: tuple[Processor | None, ...]  # per column of the rows it returns
    sized: dict[tuple[int, ...], str] = field(default_factory=dict)

    def text(self, params: Mapping[str, Any]) -> str:
        if not self.expanding:
            return self.sql
        lengths = tuple(len(params[name]) for name in self.expanding)
        sql = self.sized.get(lengths)
        if sql is None:
            sql = self.sql
            for name, length in zip(self.expanding, lengths, strict=True):
                if length == 0:
                    raise ValueError(f"empty IN list for {name!r}: the caller skips the query")
                marks = (
                    ", ".join(f"%({name}_{i})s" for i in range(length))
                    if self.named
                    else ", ".join("?" * length)
                )
                sql = sql.replace(_POSTCOMPILE.format(name), marks)
            if len(self.sized) >= _MAX_SIZED:
                self.sized.clear()
            self.sized[lengths] = sql
        return sql

    def arguments(self, params: Mapping[str, Any]) -> dict[str, Any] | list[Any]:
        values = dict(params)
        for name, default in self.defaults:
            if name not in values:
                values[name] = default()
        for name, process in self.processors.items():
            value = values[name]
            if name in self.expanding:
                values[name] = [process(item) for item in value]
            elif value is not None:
                values[name] = process(value)
        if self.named:
            for name in self.expanding:
                values.update((f"{name}_{i}", item) for i, item in enumerate(values.pop(name)))
            return values
        ordered: list[Any] = []
        for name in self.order:
            if name in self.expanding:
                ordered.extend(values[name])
            else:
                ordered.append(values[name])
        return ordered

    def rows(self, raw: Iterable[Sequence[Any]]) -> list[Row]:
        if not any(self.results):
            return [tuple(row) for row in raw]
        return [
            tuple(value if process is None else process(value)
                  for process, value in zip(self.results, row, strict=True))
            for row in raw
        ]  # fmt: skip


_prepared: dict[tuple[ClauseElement, str, tuple[str, ...]], _Prepared] = {}
_prepared_lock = threading.Lock()


def _prepare(connection: Connection, statement: ClauseElement, keys: tuple[str, ...]
             ) -> _Prepared:  # fmt: skip
    dialect = connection.dialect
    cache_key = (statement, f"{dialect.name}+{dialect.driver}", keys)
    prepared = _prepared.get(cache_key)
    if prepared is None:
        prepared = _compile(connection, statement, keys)
        with _prepared_lock:
            _prepared[cache_key] = prepared
    return prepared


def _compile(connection: Connection, statement: ClauseElement, keys: tuple[str, ...]
             ) -> _Prepared:  # fmt: skip
    dialect = connection.dialect
    if dialect.paramstyle not in ("qmark", "pyformat"):
        raise NotImplementedError(f"paramstyle {dialect.paramstyle}")  # the two drivers we ship
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    assert isinstance(compiled, SQLCompiler)
    binds = compiled.binds
    processors: dict[str, Processor] = {}
    for name, bind in binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors[name] = process
    defaults: list[tuple[str, Callable[[], Any]]] = []
    for column in compiled.insert_prefetch:
        default = column.default
        if column.key in keys or default is None:
            continue
        defaults.append((column.key, _default_maker(column.key, default)))
    returned = getattr(statement, "exported_columns", ())
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None) for column in returned
    )
    return _Prepared(
        sql=compiled.string,
        named=dialect.paramstyle == "pyformat",
        order=tuple(compiled.positiontup or ()),
        expanding=tuple(sorted(name for name, bind in binds.items() if bind.expanding)),
        processors=processors,
        defaults=tuple(defaults),
        results=results,
    )


def _default_maker(key: str, default: Any) -> Callable[[], Any]:
    """A Python-side column default as a function of nothing (what execute would fill in)."""
    if default.is_scalar:
        value = default.arg
        return lambda: value
    if default.is_callable:
        make = default.arg  # SQLAlchemy's wrapper takes an execution context ours never read
        return lambda: make(None)
    raise NotImplementedError(f"default of {key}")  # a sequence: none on the capture path


def fetch(connection: Connection, statement: ClauseElement, params: Mapping[str, Any]
          ) -> list[Row]:  # fmt: skip
    """Run statement once; the rows it returns (none for a plain insert)."""
    prepared = _prepare(connection, statement, tuple(params))
    return prepared.rows(
        _on_cursor(connection, prepared.text(params), prepared.arguments(params), many=False)
    )


def insert_many(connection: Connection, statement: ClauseElement,
                rows: Sequence[Mapping[str, Any]]) -> None:  # fmt: skip
    """One executemany for rows with the same keys (none: no round trip)."""
    if not rows:
        return
    prepared = _prepare(connection, statement, tuple(rows[0]))
    arguments = [prepared.arguments(row) for row in rows]
    _on_cursor(connection, prepared.text(rows[0]), arguments, many=True)


def _on_cursor(connection: Connection, sql: str, arguments: Any, *, many: bool
               ) -> Sequence[Sequence[Any]]:  # fmt: skip
    """Run on the connection's DBAPI cursor (executemany: `arguments` per row); the rows."""
    cursor = connection.connection.cursor()
    try:
        if many:
            cursor.executemany(sql, arguments)
            return ()
        cursor.execute(sql, arguments)
        return cursor.fetchall() if cursor.description else ()
    except connection.dialect.loaded_dbapi.Error as error:
        raise _translated(connection, cursor, error, sql, arguments) from error
    finally:
        cursor.close()


def _translated(connection: Connection, cursor: Any, error: Any, sql: str,
                arguments: Any) -> exc.DBAPIError:  # fmt: skip
    """The driver's error as SQLAlchemy's execute would raise it."""
    dialect = connection.dialect
    lost = dialect.is_disconnect(error, connection.connection.dbapi_connection, cursor)
    if lost:
        connection.invalidate(error)
    translated = exc.DBAPIError.instance(
        sql, arguments, error, dialect.loaded_dbapi.Error,
        connection_invalidated=lost, dialect=dialect,
    )  # fmt: skip
    assert isinstance(translated, exc.DBAPIError)
    return translated
