"""Where the engine keeps its state. A store URL names one:

- ``sqlite:///relative/path.db`` (relative to the workspace), ``sqlite:////absolute.db`` or a plain
  file path: the embedded store (:class:`SQLiteStore`, the default ``.engine/state.db``);
- ``postgresql://...`` (or ``postgres://``, any libpq URL): the server store
  (:class:`~engine.store.postgres.PostgresStore`), which several `engine tick` workers share;
  it needs psycopg (``pip install 'campaign-engine[postgresql]'``).

:func:`store_location` reads a URL (ValueError for one that names no store), :func:`connect`
opens what it names (StoreError when it cannot: psycopg missing, server unreachable)."""

from __future__ import annotations

from pathlib import Path

from ..errors import StoreError
from .records import Conflict, Enrollment, StepRun
from .sqlite import SQLiteStore

Store = SQLiteStore  # the interface: PostgresStore is one too

__all__ = ["Conflict", "Enrollment", "SQLiteStore", "StepRun", "Store", "connect", "open_store",
           "store_location", "store_path"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def store_location(url: str, root: Path) -> Path | str:
    """The SQLite file a URL names (a Path), or the PostgreSQL URL itself (a str)."""
    if url.startswith(POSTGRES_SCHEMES):
        return url
    return store_path(url, root)


def store_path(url: str, root: Path) -> Path:
    """The SQLite file of a ``sqlite:///`` URL or a plain path. ValueError with a readable
    message for anything else."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
    elif url.startswith(POSTGRES_SCHEMES):
        raise ValueError(f"'{url}' is a PostgreSQL store, not a SQLite file")
    elif "://" in url:
        raise ValueError(f"unsupported store URL '{url}': use sqlite:///PATH or postgresql://...")
    else:
        path = Path(url)
    return path if path.is_absolute() else root / path


def connect(location: Path | str) -> Store:
    """The store at a location :func:`store_location` gave."""
    if isinstance(location, Path):
        return SQLiteStore(location)
    try:
        from .postgres import PostgresStore
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("psycopg"):
            raise
        raise StoreError("PostgreSQL stores need psycopg: pip install 'campaign-engine[postgresql]' "
                         "(or 'psycopg[binary]')") from None
    return PostgresStore(location)


def open_store(url: str, root: Path) -> Store:
    return connect(store_location(url, root))
