"""Where the engine keeps its state. ``open_store`` turns the workspace's ``store:`` URL into a
store; SQLite (embedded, one file) is the default and the only back end so far."""

from __future__ import annotations

from pathlib import Path

from .sqlite import Conflict, Enrollment, SQLiteStore, StepRun

Store = SQLiteStore

__all__ = ["Conflict", "Enrollment", "SQLiteStore", "StepRun", "Store", "open_store", "store_path"]


def open_store(url: str, root: Path) -> Store:
    return SQLiteStore(store_path(url, root))


def store_path(url: str, root: Path) -> Path:
    """``sqlite:///relative/path.db`` (relative to the workspace), ``sqlite:////absolute.db`` or
    a plain file path. ValueError with a readable message for anything else."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
    elif url.startswith(("postgresql://", "postgres://")):
        raise ValueError("PostgreSQL stores are not supported yet: use sqlite:///.engine/state.db")
    elif "://" in url:
        raise ValueError(f"unsupported store URL '{url}': use sqlite:///PATH")
    else:
        path = Path(url)
    return path if path.is_absolute() else root / path
