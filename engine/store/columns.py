"""The partner schema's fields in typed columns: what audiences are asked of.

``partner_columns`` holds, for each present partner, its natural sort key (:func:`dsl.ids.
natural_key`), its id and one column per field of the partner schema
(:func:`dsl.sql_columns.partner_layout`). The JSON record in ``partners.data`` stays what
templates, pages and the import read; this narrow table is what an audience's SQL scans: a
column instead of decoding JSON in every row, and a table a third of the size. Its key orders
it (on SQLite it is the table's own order), so an audience comes back in natural order without
a sort.

The import keeps it current (:func:`sync`, inside the import's transaction): the partners an
import wrote or removed are replaced; a layout other than the one the table was built for (a
field added, removed or retyped in engine.yaml) rebuilds it, which is one ``INSERT ... SELECT``.
Until then audiences read the records instead.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterable

from dsl.ids import natural_key

from .records import chunks

if TYPE_CHECKING:
    from dsl.sql_columns import Layout

    from .sqlite import SQLiteStore

TABLE = "partner_columns"
LAYOUT_KEY = "partners.columns"  # meta: the layout the table was built for
INDEXES_KEY = "partners.columns.indexes"  # meta: the columns that have an index, as JSON
ANALYZED_KEY = "partners.columns.analyzed"  # meta: rows the table had at its last ANALYZE


def current(store: SQLiteStore, layout: Layout) -> bool:
    """Whether the table holds this layout's columns for every present partner."""
    return store.meta(LAYOUT_KEY) == layout.key


def sync(store: SQLiteStore, layout: Layout, revision: int | None = None) -> None:
    """Inside a transaction: rebuild the table for another layout, else replace the rows of
    the partners that the import of ``revision`` wrote or removed."""
    if not current(store, layout):
        _rebuild(store, layout)
    elif revision is not None:
        removed = store.db.execute(f"DELETE FROM {TABLE} WHERE key IN (SELECT sort_key FROM partners "
                                   "WHERE revision = ?)", (revision,)).rowcount
        written = _insert(store, layout, "revision = ? AND removed_at IS NULL", (revision,))
        analyzed = int(store.meta(ANALYZED_KEY) or 0)
        if max(removed, written) > max(1000, analyzed // 10):  # the planner's statistics are stale
            _analyze(store)


def _rebuild(store: SQLiteStore, layout: Layout) -> None:
    _fill_sort_keys(store)
    store.db.execute(f"DROP TABLE IF EXISTS {TABLE}")
    text = 'TEXT COLLATE "C"' if store.dialect == "postgresql" else "TEXT"
    columns = "".join(f", {c.name} {c.sql_type}".rstrip() for c in layout.columns)
    suffix = " WITHOUT ROWID" if store.dialect == "sqlite" else ""
    store.db.execute(f"CREATE TABLE {TABLE} (key {text} PRIMARY KEY, id {text} NOT NULL{columns}){suffix}")
    _insert(store, layout, "removed_at IS NULL", ())
    _analyze(store)
    store.set_meta(LAYOUT_KEY, layout.key)
    store.set_meta(INDEXES_KEY, "[]")


def indexed(store: SQLiteStore, layout: Layout, fields: Iterable[str]) -> bool:
    """Whether the columns of these fields, and no others, have an index."""
    return json.loads(store.meta(INDEXES_KEY) or "[]") == _index_names(layout, fields)


def index(store: SQLiteStore, layout: Layout, fields: Iterable[str]) -> None:
    """Inside a transaction: an index on the column of each of these fields (those that
    rulesets compare with a constant), none on the others; then fresh statistics, so that the
    planner uses one only where it finds few rows (a full scan beats an index on most rows)."""
    wanted = _index_names(layout, fields)
    have = json.loads(store.meta(INDEXES_KEY) or "[]")
    if wanted == have:
        return
    for name in set(have) - set(wanted):
        store.db.execute(f"DROP INDEX IF EXISTS {TABLE}_{name}")
    for name in wanted:
        store.db.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_{name} ON {TABLE} ({name})")
    _analyze(store)
    store.set_meta(INDEXES_KEY, json.dumps(wanted))


def _index_names(layout: Layout, fields: Iterable[str]) -> list[str]:
    fields = set(fields)
    return sorted(c.name for c in layout.columns if c.field in fields)


def _insert(store: SQLiteStore, layout: Layout, where: str, params: tuple) -> int:
    names = "".join(f", {c.name}" for c in layout.columns)
    reads = "".join(f", {store.native(c.read)}" for c in layout.columns)
    return store.db.execute(f"INSERT INTO {TABLE} (key, id{names}) SELECT sort_key, id{reads} FROM partners "
                            f"WHERE {where}", (*(p for c in layout.columns for p in c.params), *params)).rowcount


def _analyze(store: SQLiteStore) -> None:
    """Fresh statistics: with them the planner scans where most rows match and takes an index
    where few do (without, SQLite takes any index it can)."""
    store.db.execute(f"ANALYZE {TABLE}")
    store.set_meta(ANALYZED_KEY, str(store.db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]))


def _fill_sort_keys(store: SQLiteStore) -> None:
    """Partners imported before the store kept sort keys get theirs (once)."""
    missing = [pid for (pid,) in store.db.execute("SELECT id FROM partners WHERE sort_key IS NULL")]
    for chunk in chunks(missing, 10_000):
        if store.dialect == "postgresql":  # one statement a chunk, not one a row
            store.db.execute("UPDATE partners p SET sort_key = v.key FROM unnest(?::text[], ?::text[]) AS v(id, key) "
                             "WHERE p.id = v.id", (chunk, [natural_key(p) for p in chunk]))
        else:
            store.db.executemany("UPDATE partners SET sort_key = ? WHERE id = ?",
                                 [(natural_key(p), p) for p in chunk])
