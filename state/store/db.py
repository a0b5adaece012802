"""Database engine, sessions and programmatic Alembic migrations."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_PG_MIGRATION_LOCK = 0x41535450  # "ASTP": advisory lock id serialising migrations


def make_engine(url: str, timeout_seconds: float | None = None) -> Engine:
    """An engine whose every call is bounded: connect, statement and pool wait.

    ``timeout_seconds`` defaults to ``ASTROPT_DATABASE_TIMEOUT_SECONDS``.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":  # a local file: only lock waits, kept at 30 s
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    timeout = _timeout(timeout_seconds)
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=timeout,
        connect_args=_postgres_timeouts(parsed.query.get("options"), timeout),
    )


def _timeout(seconds: float | None) -> float:
    if seconds is not None:
        return seconds
    from state.settings import get_settings

    return get_settings().database_timeout_seconds


def _postgres_timeouts(options: str | tuple[str, ...] | None, seconds: float) -> dict[str, object]:
    """libpq: connect timeout, server-side statement timeout, and TCP keepalives/user timeout
    so a PostgreSQL host that vanishes mid-query is noticed rather than waited on for ever."""
    existing = " ".join(options) if isinstance(options, tuple) else (options or "")
    millis = max(1, int(seconds * 1000))
    return {
        "connect_timeout": max(1, round(seconds)),
        # custom plans for prepared statements: a generic plan cannot see that `level >= 7` is
        # selective and scans a long curve's every point (psycopg prepares after 5 executions)
        "options": f"{existing} -c statement_timeout={millis} -c plan_cache_mode=force_custom_plan".strip(),
        "keepalives": 1,
        "keepalives_idle": max(1, round(seconds)),
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": millis,
    }


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: object) -> None:
    # WAL lets the API read while a worker writes; foreign keys make deletes cascade.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_ENGINES: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """One engine per URL and process."""
    engine = _ENGINES.get(url)
    if engine is None:
        engine = _ENGINES[url] = make_engine(url)
    return engine


def _forget_inherited_connections() -> None:
    # A forked child (Celery pool process) must not use the parent's pooled connections:
    # both processes would talk over the same socket. close=False leaves them to the parent.
    for engine in _ENGINES.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)


@lru_cache(maxsize=8)
def _session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextlib.contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = _session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        # on a lost connection the rollback fails too: the caller gets the first error, not that
        with contextlib.suppress(Exception):
            session.rollback()
        raise
    finally:
        with contextlib.suppress(Exception):
            session.close()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Bring the schema to the newest revision; safe to call from several processes at once."""
    engine = get_engine(url)
    if engine.dialect.name == "sqlite":
        with _file_lock(engine), engine.begin() as connection:
            _upgrade(url, connection)
    elif engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(
                text("SET statement_timeout = 0")
            )  # waiting for another migrator is fine
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            connection.commit()  # the session-level lock outlives this transaction
            try:
                with connection.begin():
                    _upgrade(url, connection)
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                connection.execute(text("RESET statement_timeout"))
                connection.commit()
    else:
        with engine.begin() as connection:
            _upgrade(url, connection)


def _upgrade(url: str, connection: Connection) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ping(url: str) -> None:
    with get_engine(url).connect() as connection:
        connection.execute(text("SELECT 1"))
