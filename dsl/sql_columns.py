"""Partner fields as typed columns: the layout the SQL back end (:mod:`dsl.sql`) reads
instead of the JSON record.

A condition over the record decodes JSON in every row (``json_extract`` / ``->>``), three times
for a three-clause ruleset; the same condition over plain columns costs a fifth of that. The
store keeps one narrow table of the schema's fields (:mod:`engine.store.columns`) and
fills each column with *the very SQL* that reads that field from the record in this dialect
(:attr:`Column.read`), so that a column holds exactly the value the record-reading condition
would have computed: the compiler's semantics (nulls, numbers, U+0000, text order) stay what
they are, and a condition is compiled for columns just by naming them
(``to_sql(..., columns=layout.names)``).

A list field's column holds a record of that field alone (``{"tags": [...]}``): the list
functions read it with the field's own path, exactly as they read the whole record. A field of
an unknown type, or with a name no record path can hold, has no column: a condition reading it
is compiled over the record (:class:`dsl.sql.NoColumn`). The layout's :attr:`Layout.key` changes whenever a field is added, removed or retyped;
the store rebuilds the table when it sees another key.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Mapping

from .nodes import Attribute, Binary, Name, Node
from .types import Type

KINDS = ("string", "enum", "number", "bool", "date", "datetime", "list")  # what gets a column


@dataclass(frozen=True)
class Column:
    """One field's column: its name in the table, its SQL type, and the SQL that reads the
    field's value from the JSON record in ``data`` (final form, with its parameters)."""

    field: str
    kind: str
    name: str
    sql_type: str
    read: str
    params: tuple


@dataclass(frozen=True)
class Layout:
    columns: tuple[Column, ...]
    dialect: str

    @property
    def names(self) -> dict[str, str]:
        """field → column, what :func:`dsl.sql.to_sql` takes."""
        return {c.field: c.name for c in self.columns}

    @property
    def key(self) -> str:
        """Equal for equal layouts: the store compares it with the one its table was built for."""
        return json.dumps([[c.field, c.kind, c.name, c.sql_type] for c in self.columns])


def column_name(field: str, kind: str) -> str:
    """``c_revenue_3f2a9c``: readable, and the same for the same field and kind only, so that a
    process still holding an older layout reads the right values or fails, never another
    field's."""
    readable = re.sub(r"[^a-z0-9_]", "", field.lower())[:24]
    digest = hashlib.sha256(json.dumps([field, kind]).encode()).hexdigest()[:8]
    return f"c_{readable}_{digest}"


def partner_layout(schema: Mapping[str, Type], dialect: str = "sqlite") -> Layout:
    """A column for each field of the schema (a list: a record of it alone), in the schema's
    order. A field of an unknown type, or whose name no record path can hold in this dialect,
    gets none (its conditions are compiled over the record, or evaluated in Python)."""
    from .sql import _DIALECTS  # the dialects live with the compiler

    spoken = _DIALECTS[dialect]
    columns = []
    for field, declared in schema.items():
        if declared.kind not in KINDS:
            continue
        try:
            spoken.check_name(field)
        except Exception:  # Unsupported: such a field is never pushed down
            continue
        name = column_name(field, declared.kind)
        if declared.kind == "list":  # a record of the list alone: read as the record is
            read = spoken.finish(spoken.list_record("data", field, spoken.path(field)), ("data",), None)
        else:
            read = spoken.finish(spoken.field("data", spoken.path(field), declared.kind), ("data",), None)
        columns.append(Column(field, declared.kind, name, spoken.column_type(declared.kind), read.sql, read.params))
    return Layout(tuple(columns), spoken.name)


COMPARISONS = ("==", "<", "<=", ">", ">=", "in")


def compared_fields(node: Node) -> set[str]:
    """The fields a condition compares with something that is not the partner's
    (``partner.country == "FI"``, ``partner.revenue >= 10000``, ``partner.tier in [...]``): where
    an index on their column can find the rows without reading every one."""
    found = set()
    for item in node.walk():
        if isinstance(item, Binary) and item.op in COMPARISONS:
            sides = (item.left, item.right)
            for this, other in (sides, sides[::-1]):
                if _field(this) is not None and not _reads_partner(other):
                    found.add(_field(this))
    return found


def _field(node: Node) -> str | None:
    if isinstance(node, Attribute) and isinstance(node.value, Name) and node.value.name == "partner":
        return node.name
    return None


def _reads_partner(node: Node) -> bool:
    return any(isinstance(item, Name) and item.name in ("partner", "event") for item in node.walk())
