"""Partner records: imported from the workspace's source when it changed, read back on demand.

An import is all or nothing: a source with an error (a bad cell, a duplicate id) is not imported
at all, the tick says why (path:line:col) and keeps working with the records it had. A partner
that left the source stays in the store, marked removed: its history still reads, and its
enrollments finish with reason ``partner_removed`` when their next step falls due.

The import streams: the source is read record by record and staged in the store in batches,
and the store's SQL finds the new, changed and removed records, in one transaction. Memory does
not grow with the number of partners, apart from the ``changed`` and ``removed`` lists of the
result. Each import that changes anything bumps the store's partner revision, and the rows it
wrote carry that number (:meth:`Store.partners_changed_since`).
"""

from __future__ import annotations

import hashlib
import io
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

from dsl.diagnostics import Diagnostic, error
from dsl.records import PartnerReader
from dsl.source import Span

from .compiled import CompiledWorkspace, compared_fields, decoder, encode_partner, partner_layout, record_hash
from .store import Conflict, Store

STAT_KEY, CONTENT_KEY = "partners.stat", "partners.content"
BATCH = 5_000  # records staged per statement
CHUNK = 1 << 20  # bytes read from the source at a time
ATTEMPTS = 3  # imports begun again when another process's import got in first


@dataclass
class PartnerImport:
    changed: list[str] = field(default_factory=list)  # new or different records (in id order)
    removed: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    revision: int = 0  # the store's partner revision after the import: this import's if it changed anything

    @property
    def imported(self) -> bool:
        return bool(self.changed or self.removed)


def import_partners(store: Store, plan: CompiledWorkspace, at: datetime) -> PartnerImport:
    """Upsert the records that changed since the last import. Cheap when nothing did: one
    ``stat`` of the source, then (if it was touched) one hash of its bytes."""
    for _ in range(ATTEMPTS - 1):
        try:
            return _import(store, plan, at)
        except Conflict:  # another process imported while this one read: again, from its result
            continue
    try:
        return _import(store, plan, at)
    except Conflict:
        path = plan.root / plan.settings.partners.source
        message = "the partner source was not imported: other processes kept importing it meanwhile"
        return PartnerImport(diagnostics=[error(Span(str(path), 1, 1), message)], revision=store.partner_revision())


def _import(store: Store, plan: CompiledWorkspace, at: datetime) -> PartnerImport:
    settings = plan.settings.partners
    layout = partner_layout(plan, store.dialect)
    if not store.has_partner_columns(layout):  # a new store, or the schema changed: once
        with store.transaction():
            store.partner_columns(layout)
    store.index_partner_columns(layout, compared_fields(plan))
    path = plan.root / settings.source
    schema_key = repr(sorted((name, str(t)) for name, t in settings.types().items())) + settings.id
    try:
        stat = path.stat()
        stat_value = f"{stat.st_size}:{stat.st_mtime_ns}:{schema_key}"
        if stat_value == store.meta(STAT_KEY):
            return PartnerImport(revision=store.partner_revision())
        with path.open("rb") as source:
            content = hashlib.file_digest(source, "sha256")
        content.update(schema_key.encode())
    except OSError as exc:
        return PartnerImport(diagnostics=[_unreadable(path, exc)], revision=store.partner_revision())
    if content.hexdigest() == store.meta(CONTENT_KEY):
        with store.transaction():
            store.set_meta(STAT_KEY, stat_value)
        return PartnerImport(revision=store.partner_revision())

    since = store.start_partner_import()
    try:
        try:
            reader, digest, total = _stage(store, plan, path)
        except OSError as exc:
            return PartnerImport(diagnostics=[_unreadable(path, exc)], revision=since)
        if not reader.ok:
            return PartnerImport(diagnostics=[d for d in reader.diagnostics if d.severity == "error"], revision=since)
        digest.update(schema_key.encode())
        result = PartnerImport(revision=since)
        with store.transaction():
            revision = store.upsert_partners(at, since)  # Conflict: nothing written
            if revision is not None:
                store.partner_columns(layout, revision)
                result.revision = revision
                for pid, present in store.partner_changes(revision - 1):
                    (result.changed if present else result.removed).append(pid)
            store.set_meta(STAT_KEY, stat_value)
            store.set_meta(CONTENT_KEY, digest.hexdigest())
            if result.imported:
                store.log(at, "engine", "partners.import", source=settings.source, changed=len(result.changed),
                          removed=len(result.removed), total=total)
        return result
    finally:
        store.end_partner_import()


def _stage(store: Store, plan: CompiledWorkspace, path: Path) -> tuple[PartnerReader, Any, int]:
    """Read the source record by record into the store's staging tables: the reader (with its
    diagnostics: a duplicate id is found by the store), the hash of the bytes read, and the
    number of records. After the first error only the ids are staged: the import is off, but
    every duplicate is still reported. A record lives only until it is encoded (a batch of
    records would go through the garbage collector's generations, which costs more than the
    rest of the import)."""
    settings = plan.settings.partners
    reader = PartnerReader(str(path), settings.types(), settings.id, plan.tz, duplicates=False)
    digest = hashlib.sha256()
    total = 0
    rows: list[tuple[str, int, str | None, str | None]] = []
    texts: list[str] = []

    def flush() -> None:
        for index, first in store.stage_partners(rows):
            reader.duplicate(rows[index][1], rows[index][0], texts[index], first)
        rows.clear()
        texts.clear()

    with _lines(path, digest) as lines:
        for line, pid, record, text in reader.rows(lines):
            if reader.diagnostics:  # an error (the reader reports nothing else)
                rows.append((pid, line, None, None))
            else:
                data = encode_partner(record)
                rows.append((pid, line, data, record_hash(data)))
            texts.append(text)
            if len(rows) == BATCH:
                total += len(rows)
                flush()
        total += len(rows)
        flush()
    return reader, digest, total


@contextmanager
def _lines(path: Path, digest: Any) -> Iterator[Iterable[str]]:
    """The lines of the file at ``path`` (split at line feeds only, each with its ``\\n``; bad
    UTF-8 replaced), its bytes fed to ``digest`` as they are read."""
    with open(path, "rb", buffering=0) as raw:
        text = io.TextIOWrapper(io.BufferedReader(_Hashed(raw, digest), CHUNK), encoding="utf-8",
                                errors="replace", newline="\n")
        with text:
            yield text


class _Hashed(io.RawIOBase):
    """A binary file whose bytes go through a hash as they are read."""

    def __init__(self, raw: io.RawIOBase, digest: Any):
        self._raw, self._digest = raw, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        count = self._raw.readinto(buffer)
        if count:
            self._digest.update(memoryview(buffer)[:count])
        return count


def _unreadable(path: Path, exc: OSError) -> Diagnostic:
    return error(Span(str(path), 1, 1), f"cannot read the partner source: {exc.strerror}")


class PartnerBook:
    """The stored partner records, decoded. All of them are loaded only when an audience has to
    be selected, and kept until an import changes them."""

    def __init__(self, store: Store, plan: CompiledWorkspace):
        self.store = store
        self.id_field = plan.id_field
        self._decode = decoder(plan.settings.partners.types())
        self._all: dict[str, dict[str, Any]] | None = None
        self._version: str | None = None

    def refresh(self) -> None:
        """Forget the cached records if the store holds other ones now (this or another
        process imported since)."""
        version = self.store.meta(CONTENT_KEY)
        if version != self._version:
            self._all, self._version = None, version

    def all(self) -> list[dict[str, Any]]:
        if self._all is None:
            self._all = {pid: self._decode(data) for pid, data, _ in self.store.partner_rows()}
        return list(self._all.values())

    def chunks(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """Every present record, decoded ``size`` at a time: what evaluating an audience in
        Python walks through, without holding a million records at once."""
        if self._all is not None:
            records = list(self._all.values())
            for start in range(0, len(records), size):
                yield records[start:start + size]
            return
        chunk: list[dict[str, Any]] = []
        for _, data, _ in self.store.partner_rows():
            chunk.append(self._decode(data))
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def get_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The present partners among ``ids`` (a removed one is left out)."""
        ids = list(ids)
        if self._all is not None:
            return {pid: self._all[pid] for pid in ids if pid in self._all}
        return {pid: self._decode(data) for pid, data, present in self.store.partner_rows(ids) if present}

    def get(self, pid: str) -> dict[str, Any] | None:
        return self.get_many([pid]).get(pid)
