"""Engine, sessions and the unit of work.

One way to do a transaction: the edge (request, CLI command, job) opens a unit of work with
:func:`unit_of_work`; services receive the session, ``flush()`` when they need ids, and never
commit. On SQLite a writing unit of work starts with ``BEGIN IMMEDIATE`` so writers queue for
the database lock up front instead of failing half-way; on PostgreSQL rows are locked with
``SELECT ... FOR UPDATE`` through :func:`lock_for_update`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import orjson
from sqlalchemy import JSON, DateTime, Engine, Select, Table, create_engine, event, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, make_transient_to_detached, sessionmaker
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

# psycopg (and its pool) are imported where they are used: commands that never open a
# PostgreSQL connection (the simulator, SQLite) start without them.

T = TypeVar("T")

JSONType = JSON().with_variant(JSONB(), "postgresql")

_WRITE_OPTION = "lealta_write"


def json_text(value: Any) -> str:
    """JSON columns' text, by orjson (several times faster than the standard library)."""
    return json_bytes(value).decode()


def json_bytes(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """``value`` as JSON by orjson; what orjson refuses (an integer beyond 64 bits, which JSON
    and PostgreSQL's jsonb accept) by the standard library."""
    try:
        return orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value, default=default, separators=(",", ":")).encode()


def sqlite_moment(value: datetime) -> str:
    """What :class:`UTCDateTime` stores on SQLite for ``value``: naive UTC as SQLAlchemy's
    SQLite ``DATETIME`` writes it, ``YYYY-MM-DD HH:MM:SS.ffffff`` (bulk writers format
    moments with this instead of the per-value bind processors)."""
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType}


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 20,
    pool_timeout: float = 10.0,
    connect_timeout: float = 5.0,
    statement_timeout: float | None = None,
    autocommit: bool = False,
) -> Engine:
    """Create the engine with the per-dialect settings Lealta relies on.

    ``autocommit`` (PostgreSQL) makes every connection of the pool autocommit from the start:
    the pool of the hot reads, which would otherwise switch each connection on checkout and
    back on return.

    Every wait on the database is bounded: ``pool_timeout`` for a free pooled connection
    (then :class:`sqlalchemy.exc.TimeoutError`), ``connect_timeout`` for opening one (a server
    that accepts TCP but never answers), and ``statement_timeout`` (None: no limit) for one
    statement, lock waits included. On PostgreSQL the statement timeout travels in the
    connection's startup options, so it costs no statement per request, and TCP keepalives plus
    ``tcp_user_timeout`` bound a connection whose server or network vanished mid-query. On
    SQLite the statement timeout is the busy timeout (waiting for the write lock).
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        pool_args: dict[str, Any] = {}
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            pool_args = {
                "pool_size": pool_size,
                "max_overflow": max_overflow,
                "pool_timeout": pool_timeout,
            }
        busy = 30.0 if statement_timeout is None else statement_timeout
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy},
            json_serializer=json_text,
            json_deserializer=orjson.loads,
            **pool_args,
        )
        _configure_sqlite(engine, busy_ms=max(1, round(busy * 1000)))
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        connect_args=pg_connect_args(connect_timeout, statement_timeout),
        json_serializer=json_text,
        json_deserializer=orjson.loads,
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )
    _ping_when_idle(engine, idle_seconds=PING_AFTER_IDLE_SECONDS)
    return engine


def pg_connect_args(connect_timeout: float, statement_timeout: float | None) -> dict[str, Any]:
    """The libpq connection parameters of every PostgreSQL connection Lealta opens (the
    engines' and :class:`HotReads`'): bounded waits and sessions in UTC."""
    options = ["-c TimeZone=UTC"]
    if statement_timeout:
        options.append(f"-c statement_timeout={max(1, round(statement_timeout * 1000))}")
    return {
        # libpq counts whole seconds (and at least 2).
        "connect_timeout": max(1, math.ceil(connect_timeout)),
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        # Data unacknowledged for 30 s means the peer is gone (milliseconds).
        "tcp_user_timeout": 30_000,
        # Sessions in UTC: timestamps come back in UTC (psycopg's own timezone.utc), also
        # where a hot read bypasses SQLAlchemy's result processing (see PgStatement).
        "options": " ".join(options),
    }


PING_AFTER_IDLE_SECONDS = 10.0
"""A pooled connection idle longer than this is pinged before use (see ``_ping_when_idle``)."""


AUTOVACUUM_OFF_HINT = (
    "PostgreSQL runs with autovacuum off: the rows every event updates (accounts, lots) pile up"
    " dead versions and the planner never learns the tables' sizes, so ingest slows down about"
    " tenfold after some thousands of events. Turn autovacuum on, or run VACUUM (ANALYZE)"
    " regularly (see README, Running on PostgreSQL)."
)


def vacuum_analyze(db: Database, tables: Sequence[str]) -> None:
    """``VACUUM (ANALYZE)`` of ``tables`` on PostgreSQL (nothing on SQLite), after a bulk load:
    what autovacuum would do within a minute or so, done before the load returns, so that the
    statements after it are planned with the tables' real sizes (and, on a server without
    autovacuum, do not slow down about tenfold; see :data:`AUTOVACUUM_OFF_HINT`). It takes
    no lock that blocks reads or writes."""
    if db.dialect != "postgresql" or not tables:
        return
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f"VACUUM (ANALYZE) {', '.join(tables)}"))


def psycopg_conninfo(database_url: str) -> str:
    """A PostgreSQL URL as SQLAlchemy takes it (``postgresql+psycopg://``) as psycopg takes
    it (a plain ``postgresql://`` URL, password included)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def autovacuum_off(database_url: str) -> bool:
    """Whether the PostgreSQL server at ``database_url`` runs with ``autovacuum = off`` (False
    for SQLite, or when the setting cannot be read: this is advice, never an obstacle)."""
    url = make_url(database_url)
    if not url.drivername.startswith("postgresql"):
        return False
    dsn = psycopg_conninfo(database_url)
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=5, autocommit=True) as conn:
            row = conn.execute("SHOW autovacuum").fetchone()
    except psycopg.Error:
        return False
    return row is not None and str(row[0]) == "off"


def _ping_when_idle(engine: Engine, *, idle_seconds: float) -> None:
    """Ping a pooled connection before use only if it sat idle for ``idle_seconds``.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one more round trip per request,
    a third of a hot read's time in the database. A connection in steady use is known to be
    alive; one that sat idle (a server restart, a dropped network) is checked, and a dead one
    is replaced before the request sees it.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi_conn.rollback()
        except Exception as exc:  # any failure means: this connection is gone
            raise DisconnectionError(str(exc)) from exc


def _configure_sqlite(engine: Engine, *, busy_ms: int = 30_000) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """Holds the engine and the two session factories (reading and writing)."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 20,
        pool_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        statement_timeout: float | None = None,
    ) -> None:
        self.url = url
        self.engine = make_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )
        self.dialect = self.engine.dialect.name
        # The hot reads' own small pool of autocommit connections (PostgreSQL; SQLite reads
        # share the one engine, where a transaction costs no round trip).
        self.read_engine = self.engine
        if self.dialect == "postgresql":
            self.read_engine = make_engine(
                url,
                pool_size=max(1, pool_size // 2),
                max_overflow=max_overflow // 2,
                pool_timeout=pool_timeout,
                connect_timeout=connect_timeout,
                statement_timeout=statement_timeout,
                autocommit=True,
            )
        # The balance read's asyncio pool (PostgreSQL; see HotReads), opened by the app.
        self.hot_reads: HotReads | None = None
        if self.dialect == "postgresql":
            self.hot_reads = HotReads(
                url,
                size=max(1, pool_size // 2),
                timeout=pool_timeout,
                connect_timeout=connect_timeout,
                statement_timeout=statement_timeout,
            )
        write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        self._read = sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._write = sessionmaker(write_engine, expire_on_commit=False, autoflush=False)
        self._hot_read = sessionmaker(self.read_engine, expire_on_commit=False, autoflush=False)

    @property
    def engines(self) -> list[Engine]:
        """Every engine (pool) this database opens connections with."""
        return [self.engine] if self.read_engine is self.engine else [self.engine, self.read_engine]

    @contextmanager
    def unit_of_work(self, *, write: bool = True, autocommit: bool = False) -> Iterator[Session]:
        """Commit on success; a write rolls back on any exception. Services never commit.

        A reading unit of work (``write=False``) ends with COMMIT, even when the caller
        refuses the request (a 404): a rollback would make psycopg forget its prepared
        statements. Only a database error rolls a read back. Changes left on its ORM objects
        are dropped first (never flushed), so a read cannot write by accident; the objects
        read stay loaded (detached) for the caller.

        ``autocommit`` (reads only) opens no transaction on PostgreSQL: no BEGIN and COMMIT
        round trips, each statement on its own snapshot, as READ COMMITTED gives statements
        inside a transaction anyway. The hot reads use it; results streamed through a
        server-side cursor (``yield_per``) need a transaction and must not. On SQLite, where
        a transaction costs no round trip, the reads keep theirs (and one snapshot).
        """
        if autocommit and write:
            raise ValueError("autocommit is for reading units of work only")
        if autocommit and self.dialect == "postgresql":
            session = self._hot_read()
        else:
            session = (self._write if write else self._read)()
        try:
            yield session
            if not write:
                session.expunge_all()
            session.commit()
        except Exception as exc:
            if write or isinstance(exc, SQLAlchemyError):
                session.rollback()
            else:
                session.expunge_all()
                session.commit()
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        for engine in self.engines:
            engine.dispose()


def insert_ignore(
    session: Session,
    model: type[Base],
    values: Mapping[str, Any],
    *,
    conflict: Sequence[str] = (),
) -> int | None:
    """``INSERT … ON CONFLICT (conflict) DO NOTHING RETURNING id`` (no ``conflict``: any
    unique key): the new id, or None if a row with the same unique key exists (on
    PostgreSQL, after waiting for a concurrent inserter to commit). One statement instead of
    a savepoint, insert and release."""
    stmt = _inserting(session, cast(Table, model.__table__), tuple(conflict))
    new_id: int | None = session.execute(stmt, values).scalar_one_or_none()
    return new_id


_Row = TypeVar("_Row", bound="Base")


def insert_returning(
    session: Session, model: type[_Row], values: dict[str, Any], *, ignore_conflicts: bool = False
) -> _Row | None:
    """One Core ``INSERT … RETURNING id`` of ``values`` (every column but the id), and the row
    as an object of ``model`` in the session as if loaded: nothing writes or reads it back,
    where the unit of work would flush it alone and re-read it once expired. With
    ``ignore_conflicts``, ``ON CONFLICT DO NOTHING`` (any unique key): None when a row with
    one of its unique values exists."""
    stmt = _inserting(session, cast(Table, model.__table__), () if ignore_conflicts else None)
    new_id = session.execute(stmt, values).scalar_one_or_none()
    if new_id is None:
        return None
    row = model(id=new_id, **values)
    make_transient_to_detached(row)
    session.add(row)
    return row


def _inserting(session: Session, table: Table, conflict: tuple[str, ...] | None) -> Any:
    """``INSERT INTO table … RETURNING id``, the values given when it runs (built once: a
    statement holding its values is traversed whole for its cache key at every run). With
    ``conflict``, ``ON CONFLICT (conflict) DO NOTHING`` (``()``: any unique key)."""
    return _insert_statement(session.get_bind().dialect.name, table, conflict)


@functools.lru_cache(maxsize=128)
def _insert_statement(dialect: str, table: Table, conflict: tuple[str, ...] | None) -> Any:
    if conflict is None:
        return table.insert().returning(table.c.id)
    stmt = _insert_of(dialect, table).on_conflict_do_nothing(index_elements=list(conflict) or None)
    return stmt.returning(table.c.id)


def dialect_insert(session: Session, table: Table) -> Any:
    """The session's dialect's ``INSERT`` (PostgreSQL or SQLite), which has ``ON CONFLICT``."""
    return _insert_of(session.get_bind().dialect.name, table)


def _insert_of(dialect: str, table: Table) -> Any:
    return pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)


def insert_ignoring(session: Session, table: Table) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` (any unique key) for the session's dialect."""
    return dialect_insert(session, table).on_conflict_do_nothing()


_Selected = TypeVar("_Selected", bound="Select[*tuple[Any, ...]]")


def lock_for_update(stmt: _Selected) -> _Selected:
    """Row lock on PostgreSQL; SQLite writers already hold the database lock (BEGIN IMMEDIATE).

    SQLAlchemy omits ``FOR UPDATE`` on SQLite by itself, so the same statement works on both.
    """
    return stmt.with_for_update()


def fetch(
    session: Session, statement: Any, params: Mapping[str, Any], *, named: bool = False
) -> Sequence[Any]:
    """The rows of a hot Core ``statement`` built once (a module constant or cached): on
    PostgreSQL through :class:`PgStatement`, elsewhere through SQLAlchemy. Rows are tuples,
    with attribute access by column name when ``named``. A JSON parameter must be wrapped in
    ``Jsonb`` on PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        return _pg_statement(statement).rows(session, params, named=named)
    return session.connection().execute(statement, params).all()


@functools.cache
def _pg_statement(statement: Any) -> PgStatement:
    return PgStatement(statement)


class PgStatement:
    """A Core statement compiled once for PostgreSQL and run on the session's own psycopg
    connection (same transaction), returning plain tuples.

    For the hottest statements only (see :func:`fetch`): it skips SQLAlchemy's execution
    context and psycopg's result metadata, which together cost more CPU than a one-row read
    itself. Parameters go to psycopg as they are (the statement casts each to its column's
    type) and values come back as psycopg returns them (timestamps aware, in UTC:
    connections run with ``TimeZone=UTC``).
    """

    def __init__(self, statement: Any) -> None:
        compiled = statement.compile(dialect=_PG_DIALECT)
        self.sql: str = str(compiled)
        self.defaults: dict[str, Any] = dict(compiled.params)

    def rows(
        self, session: Session, params: Mapping[str, Any], *, named: bool = False
    ) -> list[Any]:
        from psycopg.rows import namedtuple_row

        return run_on_psycopg(
            session, self.sql, {**self.defaults, **params}, namedtuple_row if named else None
        )


def run_on_psycopg(session: Session, sql: str, params: Any, row_factory: Any = None) -> list[Any]:
    """Run ``sql`` (psycopg placeholders; a statement that returns rows) on the session's
    psycopg connection, prepared, in the session's transaction; its rows (tuples by default).

    SQLAlchemy's ``before_cursor_execute``/``after_cursor_execute`` listeners see it as they
    see any statement (tracing, statement counts in tests)."""
    import psycopg
    from psycopg.rows import tuple_row

    conn = session.connection()
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor(row_factory=row_factory or tuple_row) as cursor:
        observed = bool(conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute)
        if observed:
            conn.dispatch.before_cursor_execute(conn, cursor, sql, params, None, False)
        try:
            cursor.execute(sql, params, prepare=True)
            rows: list[Any] = cursor.fetchall()
        except psycopg.Error as exc:
            # As SQLAlchemy would: the error wrapped in its DBAPIError family (so a timeout is
            # a 503 and a unique violation an IntegrityError to every caller), and a
            # connection that died taken out of the pool.
            if conn.dialect.is_disconnect(exc, raw, cursor):  # type: ignore[arg-type]
                conn.invalidate(exc)
            raise DBAPIError.instance(
                sql, params, exc, psycopg.Error, dialect=conn.dialect
            ) from exc
        if observed:
            conn.dispatch.after_cursor_execute(conn, cursor, sql, params, None, False)
        return rows


_PG_DIALECT = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]


HOT_READS_APPLICATION = "lealta-hot-reads"


class HotReads:
    """The hottest read (a member's balance) on PostgreSQL, awaited on the event loop.

    Through a worker thread, a one-row read costs the thread hop, a session and its unit of
    work: about 0.5 ms of server CPU per request and a p99 of tens of milliseconds under
    load, where psycopg's own query costs about 80 µs. Here it runs on an asyncio pool of
    autocommit psycopg connections
    (``psycopg_pool``), as :class:`PgStatement` runs it (compiled once, prepared, plain rows).

    The pool belongs to one event loop: the application's lifespan opens it (:meth:`open`)
    and closes it (:meth:`close`); while it is not open in the running loop, :meth:`rows`
    answers None and the caller reads through a thread as before. Connections are opened on
    demand (none at start, at most ``size``), with the engines' connection parameters
    (:func:`pg_connect_args`); a request waits at most ``timeout`` for one, then the
    database is unavailable (``503``). Errors come wrapped as SQLAlchemy's (see
    :func:`run_on_psycopg`); a read that finds its pooled connection dead (the server
    restarted) is tried once more on a new one.
    """

    def __init__(
        self,
        url: str,
        *,
        size: int,
        timeout: float,
        connect_timeout: float,
        statement_timeout: float | None,
    ) -> None:
        self._conninfo = psycopg_conninfo(url)
        args = pg_connect_args(connect_timeout, statement_timeout)
        # The hot statements are planned once per connection: a plan for "any" of an array
        # of keys is otherwise made again at every run (0.2 ms of PostgreSQL's CPU each).
        args["options"] += " -c plan_cache_mode=force_generic_plan"
        self._kwargs: dict[str, Any] = {
            **args,
            "autocommit": True,
            "application_name": HOT_READS_APPLICATION,  # in pg_stat_activity
        }
        self._size = size
        self._timeout = timeout
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.observers: list[Callable[[str], None]] = []
        """Called with each statement's SQL before it runs (the tests count statements)."""
        self._coalesced: dict[int, CoalescedReads] = {}

    async def open(self) -> None:
        """Open the pool in the running event loop (no connection yet). While it is open in
        another loop (two test clients of one app), that loop keeps it."""
        if self._pool is not None and self._loop is not None and not self._loop.is_closed():
            return
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(
            self._conninfo,
            kwargs=self._kwargs,
            min_size=0,
            max_size=self._size,
            timeout=self._timeout,
            open=False,
            name="lealta-hot-reads",
        )
        await pool.open()
        self._pool, self._loop = pool, asyncio.get_running_loop()
        self._coalesced.clear()  # queues of a loop that ended stay with it

    async def close(self) -> None:
        """Close the pool, from the event loop that opened it (elsewhere: nothing to do)."""
        if self._pool is None or self._loop is not asyncio.get_running_loop():
            return
        pool, self._pool, self._loop = self._pool, None, None
        await pool.close(timeout=1.0)

    def open_in(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether the pool is open in ``loop`` (where :meth:`rows` reads)."""
        return self._pool is not None and self._loop is loop

    def coalesced(self, statement: Any, *, column: str) -> CoalescedReads:
        """The one :class:`CoalescedReads` of ``statement`` (many keys) on this pool."""
        found = self._coalesced.get(id(statement))
        if found is None:
            found = self._coalesced[id(statement)] = CoalescedReads(self, statement, column=column)
        return found

    async def rows(
        self, statement: Any, params: Mapping[str, Any], *, named: bool = False
    ) -> list[Any] | None:
        """The rows of a hot Core ``statement`` (as :func:`fetch` gives them), or None when
        the pool is not open in the running event loop."""
        pool = self._pool
        if pool is None or self._loop is not asyncio.get_running_loop():
            return None
        import psycopg
        from psycopg.rows import namedtuple_row, tuple_row

        compiled = _pg_statement(statement)
        sql, values = compiled.sql, {**compiled.defaults, **params}
        factory = namedtuple_row if named else tuple_row
        for attempt in (1, 2):
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                async with pool.connection() as conn:
                    for observe in self.observers:
                        observe(sql)
                    cursor = conn.cursor(row_factory=factory)
                    await cursor.execute(sql, values, prepare=True)
                    found: list[Any] = await cursor.fetchall()
                    return found
            except psycopg.Error as exc:
                if attempt == 1 and conn is not None and conn.broken:
                    continue
                raise DBAPIError.instance(
                    sql, values, exc, psycopg.Error, dialect=_PG_DIALECT
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover


_UNAVAILABLE: Any = object()


class CoalescedReads:
    """One hot statement read for many keys at once: the reads of one key each that arrive
    while earlier ones are at the database wait and go together, as one statement.

    Under load, concurrent requests for the same kind of row (8 clients reading balances)
    each paid psycopg's query (about 80 µs of CPU) and PostgreSQL's (about 90 µs): more than
    the rest of the request. Here a read that finds no statement at the database starts one
    at once (no added wait when idle); the others queue, and the next statement takes
    everything queued, so a read waits for at most the statement ahead of it and its own,
    and always sees what was committed before it arrived. (Two statements at a time served
    fewer reads per second: smaller batches.)

    ``statement`` reads many keys: it takes them as the array parameter ``keys`` and
    answers, in the column ``column``, the key of each row. A batch runs with the other
    parameters of its latest read (the reads' clock moves on by less than a statement's
    time). :meth:`row` answers the row of a key or None (no such row), or raises
    :class:`Unavailable` where the pool is not open in the running loop (the caller reads
    otherwise); an error reaches every read of the batch.
    """

    class Unavailable(Exception):
        """The pool of :class:`HotReads` is not open in the running event loop."""

    def __init__(self, reads: HotReads, statement: Any, *, column: str) -> None:
        self._reads = reads
        self._statement = statement
        self._column = column
        self._queued: list[tuple[Any, Mapping[str, Any], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None
        """The task sending the queued reads (kept referenced while it runs), if any."""
        self.batches = 0
        """Statements sent (the tests and the benchmark compare it with the reads)."""

    async def row(self, key: Any, params: Mapping[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        if not self._reads.open_in(loop):  # the queue serves the pool's own loop only
            raise CoalescedReads.Unavailable
        waiter: asyncio.Future[Any] = loop.create_future()
        self._queued.append((key, params, waiter))
        if self._sender is None:
            self._sender = loop.create_task(self._send())
        found = await waiter
        if found is _UNAVAILABLE:
            raise CoalescedReads.Unavailable
        return found

    async def _send(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                keys = list(dict.fromkeys(key for key, _, _ in batch))
                self.batches += 1
                try:
                    rows = await self._reads.rows(
                        self._statement, {**batch[-1][1], "keys": keys}, named=True
                    )
                except Exception as exc:  # every read of the batch fails as its own would
                    for _, _, waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                if rows is None:
                    by_key: dict[Any, Any] = {}
                    default = _UNAVAILABLE
                else:
                    by_key = {getattr(row, self._column): row for row in rows}
                    default = None
                for key, _, waiter in batch:
                    if not waiter.done():
                        waiter.set_result(by_key.get(key, default))
        finally:
            self._sender = None
