"""Partner records: imported from the workspace's source when it changed, read back on demand.

An import is all or nothing: a source with an error (a bad cell, a duplicate id) is not imported
at all, the tick says why (path:line:col) and keeps working with the records it had. A partner
that left the source stays in the store, marked removed: its history still reads, and its
enrollments finish with reason ``partner_removed`` when their next step falls due.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from dsl.diagnostics import Diagnostic, error
from dsl.records import read_partners
from dsl.source import Span

from .compiled import CompiledWorkspace, decoder, encode_partner, record_hash
from .store import Store

STAT_KEY, CONTENT_KEY = "partners.stat", "partners.content"


@dataclass
class PartnerImport:
    changed: list[str] = field(default_factory=list)  # new or different records
    removed: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def imported(self) -> bool:
        return bool(self.changed or self.removed)


def import_partners(store: Store, plan: CompiledWorkspace, at: datetime) -> PartnerImport:
    """Upsert the records that changed since the last import. Cheap when nothing did: one
    ``stat`` of the source, then (if it was touched) one hash of its bytes."""
    settings = plan.settings.partners
    path = plan.root / settings.source
    schema_key = repr(sorted((name, str(t)) for name, t in settings.types().items())) + settings.id
    try:
        stat = path.stat()
        raw = path.read_bytes() if f"{stat.st_size}:{stat.st_mtime_ns}:{schema_key}" != store.meta(STAT_KEY) else None
    except OSError as exc:
        return PartnerImport(diagnostics=[error(Span(str(path), 1, 1), f"cannot read the partner source: {exc.strerror}")])
    if raw is None:
        return PartnerImport()
    stat_value = f"{stat.st_size}:{stat.st_mtime_ns}:{schema_key}"
    content = hashlib.sha256(raw + schema_key.encode()).hexdigest()
    if content == store.meta(CONTENT_KEY):
        with store.transaction():
            store.set_meta(STAT_KEY, stat_value)
        return PartnerImport()
    source = read_partners(str(path), raw.decode("utf-8", errors="replace"), settings.types(), settings.id, plan.tz)
    if not source.ok:
        return PartnerImport(diagnostics=[d for d in source.diagnostics if d.severity == "error"])
    result = PartnerImport()
    with store.transaction():
        known = store.partner_hashes()
        rows, seen = [], set()
        for record in source.records:
            pid = str(record[settings.id])
            seen.add(pid)
            encoded = encode_partner(record)
            digest = record_hash(encoded)
            old = known.get(pid)
            if old is None or old[0] != digest or not old[1]:
                rows.append((pid, encoded, digest))
                result.changed.append(pid)
        result.removed = [pid for pid, (_, present) in known.items() if present and pid not in seen]
        store.upsert_partners(rows, at)
        store.mark_partners_removed(result.removed, at)
        store.set_meta(STAT_KEY, stat_value)
        store.set_meta(CONTENT_KEY, content)
        if result.imported:
            store.log(at, "engine", "partners.import", source=settings.source, changed=len(result.changed),
                      removed=len(result.removed), total=len(seen))
    return result


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

    def get_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The present partners among ``ids`` (a removed one is left out)."""
        ids = list(ids)
        if self._all is not None:
            return {pid: self._all[pid] for pid in ids if pid in self._all}
        return {pid: self._decode(data) for pid, data, present in self.store.partner_rows(ids) if present}

    def get(self, pid: str) -> dict[str, Any] | None:
        return self.get_many([pid]).get(pid)
