"""What steps produced and what came back, in the SQLite store: messages and their delivery,
activities and responses, pop-ups, engagement and consent events, the statistics and alerts read
from them, the audit log and the API keys. :class:`Ledger` is the half of
:class:`~engine.store.sqlite.SQLiteStore` that holds these tables' methods (the other half holds
the store's connection, partners, campaigns, enrollments and step runs); like all of it, plain SQL
with ``?`` parameters over ``self.db``, run on PostgreSQL too through its adapter."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from ..clock import SystemClock, from_iso, iso, maybe_iso
from .processes import process_alive, this_process
from .records import Queued, chunks, payload_text, stamp

BUSY_TIMEOUT = 60.0  # seconds a statement waits for another process's write lock before "busy"
TOUCH_WAIT = 0.25  # seconds recording a key's last use waits for a write lock before giving up
_ACTIVITY_KEYS = ("id", "campaign", "step", "partner", "kind", "assignee", "subject", "responses", "status",
                  "created_at", "response", "result", "responded_at", "answers", "duration")
_POPUP_KEYS = ("id", "campaign", "step", "partner", "pages", "title", "body", "language", "created_at", "read_at")
_API_KEY_KEYS = ("id", "user", "salt", "hash", "created_at", "last_used_at", "revoked_at")


class Ledger:
    """The tables of effects and events (see the module's docstring)."""

    db: sqlite3.Connection
    _depth: int  # transactions open (SQLiteStore.transaction)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.db.execute(sql, params).fetchone()
        return row[0] if row else None

    # --- effects ---------------------------------------------------------------------------

    def add_message(self, record: Mapping[str, Any], enrollment_id: int, html: bool = False) -> None:
        self.add_messages([(record, enrollment_id, html)])

    def add_messages(self, messages: Iterable[tuple[Mapping[str, Any], int, bool]], sent_at: datetime | None = None,
                     payloads: Sequence[str] | None = None) -> None:
        """(record, enrollment, html) of messages to queue, in one statement (``payloads``: their
        records as :func:`payload_text` made them, when the caller has them). With ``sent_at``
        they are recorded sent at that time instead, in their first attempt: messages a local
        transport takes as their transaction commits, which :meth:`add_handover` lists."""
        messages = list(messages)
        texts = payloads if payloads is not None else [payload_text(record) for record, _, _ in messages]
        columns, extra = "", ()
        if sent_at is not None:
            columns, extra = ", status, attempts, delivered_at", ("sent", 1, stamp(sent_at))
        self.db.executemany(f"INSERT INTO outbox (id, channel, enrollment, campaign, step, partner, at, payload, html, "
                            f"language, variant{columns}) VALUES ({', '.join('?' * (11 + len(extra)))})",
                            [(record["id"], record["channel"], enrollment_id, record["campaign"], record["step"],
                              record["partner"], record["at"], text, int(html), _label(record, "language"),
                              _label(record, "variant"), *extra)
                             for (record, enrollment_id, html), text in zip(messages, texts)])

    # Handovers (engine.delivery): the messages a step batch recorded sent to a local transport,
    # listed in the batch's transaction until they are in their files.

    def add_handover(self, ids: Sequence[str], at: datetime) -> int:
        """List these messages as recorded sent at ``at`` but not yet in their files."""
        return self.db.execute("INSERT INTO handovers (at, messages) VALUES (?, ?)",
                               (iso(at), json.dumps(list(ids), ensure_ascii=False))).lastrowid

    def end_handover(self, handover: int) -> bool:
        """The handover is done (its messages are in their files); whether it was still listed
        (another process finishing a killed one's may have ended it first)."""
        return self.db.execute("DELETE FROM handovers WHERE id = ?", (handover,)).rowcount == 1

    def left_handover(self) -> tuple[int, list[Queued]] | None:
        """The oldest handover still listed, with its messages, held for the caller's
        :meth:`delivering` transaction (on SQLite by the write lock; PostgreSQL locks the row
        and passes over those another process holds)."""
        row = self.db.execute(f"SELECT id, messages FROM handovers ORDER BY id LIMIT 1{self.SKIP_LOCKED_ROWS}"
                              ).fetchone()
        if row is None:
            return None
        ids = json.loads(row[1])
        found: dict[str, Queued] = {}
        for chunk in chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            found.update((m.id, m) for m in queued(self.db.execute(
                f"SELECT id, channel, payload, html, attempts FROM outbox WHERE id IN ({marks})", chunk)))
        return row[0], [found[mid] for mid in ids if mid in found]

    def undo_handover(self, outcomes: Sequence[tuple[str, str, str | None, datetime]]) -> None:
        """Messages of a handover that their transport did not take after all (id, retry |
        failed, error, when to try again): queued again, or failed, as their first attempt."""
        self.db.executemany("UPDATE outbox SET status = 'queued', delivered_at = NULL, last_error = ?, "
                            "next_attempt = ? WHERE id = ?",
                            [(error, iso(retry), mid) for mid, status, error, retry in outcomes if status == "retry"])
        self.db.executemany("UPDATE outbox SET status = 'failed', delivered_at = NULL, last_error = ? WHERE id = ?",
                            [(error, mid) for mid, status, error, _ in outcomes if status == "failed"])

    # The delivery loop (engine.delivery) claims the messages it hands over: ``claimed_by`` names
    # the process, and only unclaimed messages are claimed, so two processes never hand one
    # message over at once. Recording the outcome clears the claim; the claims of a process that
    # died are taken back by the next delivery (reclaim_abandoned).

    SKIP_LOCKED_ROWS = ""  # PostgreSQL: rows another claim is locking right now are passed over
    LOCKS_MESSAGES = True  # an idempotent transport's batches are held by their delivery transaction (lock_messages)

    def claimer(self) -> str:
        """Who this store's claims belong to: the running process."""
        return this_process()

    def claimer_alive(self, claimer: str) -> bool:
        return process_alive(claimer)

    def claim_messages(self, at: datetime, channels: Sequence[str], limit: int) -> list[Queued]:
        """Claim for this process up to ``limit`` of the messages that wait (:meth:`_waiting`)."""
        if not channels:
            return []
        waiting, params = self._waiting(at, channels, limit)
        rows = self.db.execute(
            f"UPDATE outbox SET claimed_by = ?, claimed_at = ? WHERE rowid IN ({waiting}{self.SKIP_LOCKED_ROWS}) "
            "RETURNING rowid, id, channel, payload, html, attempts",
            (self.claimer(), iso(SystemClock().now()), *params)).fetchall()
        return queued(row[1:] for row in sorted(rows))

    def lock_messages(self, at: datetime, channels: Sequence[str], limit: int) -> list[Queued]:
        """The messages :meth:`claim_messages` would claim, held instead by the transaction
        (:meth:`delivering`) that hands them to an idempotent transport and records their
        outcomes (engine.delivery), so no claim is written (a row update a message less). On
        SQLite that transaction holds the store's write lock: no other process claims or
        delivers until it ends. A process killed meanwhile leaves it rolled back: the batch
        waits again, and the transport, which writes each id once, takes what it had already
        written as written. (PostgreSQL locks the batch's rows instead: its own method.)"""
        if not channels:
            return []
        waiting, params = self._waiting(at, channels, limit)
        return queued(self.db.execute(f"SELECT id, channel, payload, html, attempts FROM outbox WHERE rowid IN "
                                      f"({waiting}) ORDER BY rowid", params).fetchall())

    @staticmethod
    def _waiting(at: datetime, channels: Sequence[str], limit: int) -> tuple[str, tuple]:
        """The rowids of up to ``limit`` unclaimed messages of these channels that wait for
        their transport and are due for an attempt at ``at``, oldest first (read in the order
        of the index of waiting messages, so SQLite does not sort them for each batch): the
        query and its parameters."""
        marks = ",".join("?" * len(channels))
        return ("SELECT rowid FROM outbox INDEXED BY outbox_waiting WHERE status = 'queued' AND claimed_by IS NULL "
                f"AND channel IN ({marks}) AND (next_attempt IS NULL OR next_attempt <= ?) ORDER BY rowid LIMIT ?",
                (*channels, iso(at), limit))

    def release_claims(self, ids: Sequence[str]) -> None:
        """Give back claimed messages that were not handed over (queued as they were)."""
        self.db.executemany("UPDATE outbox SET claimed_by = NULL, claimed_at = NULL WHERE id = ? AND status = 'queued'",
                            [(mid,) for mid in ids])

    def reclaim_abandoned(self, at: datetime) -> int:
        """Release the claims of processes that are gone (killed while delivering): their messages
        wait again, and the one that was in flight is handed over again with the same id. How
        many were released (each claimer's count goes to the audit log)."""
        released = 0
        for (claimer,) in self.db.execute("SELECT DISTINCT claimed_by FROM outbox WHERE claimed_by IS NOT NULL").fetchall():
            if self.claimer_alive(claimer):
                continue
            with self.transaction():
                count = self.db.execute("UPDATE outbox SET claimed_by = NULL, claimed_at = NULL WHERE claimed_by = ?",
                                        (claimer,)).rowcount
                if count:
                    self.log(at, "engine", "delivery.reclaimed", claimed_by=claimer, count=count)
            released += count
        return released

    def record_outcomes(self, outcomes: Sequence[tuple[str, str, str | None, datetime]], at: datetime) -> None:
        """(id, sent | retry | failed, error, when to try again after a retry); each clears the
        message's claim."""
        when = iso(at)
        self.db.executemany("UPDATE outbox SET status = 'sent', delivered_at = ?, attempts = attempts + 1, "
                            "next_attempt = NULL, last_error = NULL, claimed_by = NULL, claimed_at = NULL "
                            "WHERE id = ? AND status = 'queued'",
                            [(when, mid) for mid, status, _, _ in outcomes if status == "sent"])
        self.db.executemany("UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?, "
                            "next_attempt = NULL, claimed_by = NULL, claimed_at = NULL WHERE id = ? AND status = 'queued'",
                            [(error, mid) for mid, status, error, _ in outcomes if status == "failed"])
        self.db.executemany("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ?, "
                            "claimed_by = NULL, claimed_at = NULL WHERE id = ? AND status = 'queued'",
                            [(error, iso(retry), mid) for mid, status, error, retry in outcomes if status == "retry"])

    def messages(self, channel: str | None = None, campaign: str | None = None, partner: str | None = None,
                 status: str | None = None) -> list[dict]:
        """The outbox's messages (their records) with their delivery state."""
        sql, params = "SELECT payload, status, attempts, next_attempt, last_error, delivered_at FROM outbox WHERE 1 = 1", []
        for column, value in (("channel", channel), ("campaign", campaign), ("partner", partner), ("status", status)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        found = []
        for payload, state, attempts, next_attempt, error, delivered in self.db.execute(sql + " ORDER BY at, rowid", params):
            record = json.loads(payload)
            record.update(status=state, attempts=attempts, next_attempt=next_attempt, last_error=error,
                          delivered_at=delivered)
            found.append(record)
        return found

    def add_activity(self, activity: Mapping[str, Any]) -> None:
        self.db.execute("INSERT INTO activities (id, enrollment, campaign, step, partner, kind, assignee, subject, "
                        "responses, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
                        (activity["id"], activity["enrollment"], activity["campaign"], activity["step"],
                         activity["partner"], activity["kind"], activity["assignee"], activity["subject"],
                         json.dumps(activity["responses"]), activity["at"]))

    def activities(self, campaign: str | None = None, partner: str | None = None, assignee: str | None = None,
                   status: str | None = None) -> list[dict]:
        return self._rows("activities", _ACTIVITY_KEYS,
                          {"campaign": campaign, "partner": partner, "assignee": assignee, "status": status},
                          ("responses", "answers"))

    def activity(self, activity_id: str) -> dict | None:
        found = [a for a in self._rows("activities", _ACTIVITY_KEYS + ("enrollment",), {"id": activity_id}, ("responses", "answers"))]
        return found[0] if found else None

    def message(self, message_id: str) -> dict | None:
        row = self.db.execute("SELECT payload, enrollment FROM outbox WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            return None
        return {**json.loads(row[0]), "enrollment": row[1]}

    def add_response(self, target: str, kind: str, enrollment: int, campaign: str, step: str, partner: str,
                     response: str, result: str, answers: Mapping[str, str], duration: int | None, at: datetime,
                     user: str) -> int | None:
        """The response's number, or None when the target has one already."""
        try:
            cursor = self.db.execute(
                "INSERT INTO responses (target, kind, enrollment, campaign, step, partner, response, result, answers, "
                "duration, at, user) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (target, kind, enrollment, campaign, step, partner, response, result, json.dumps(dict(answers)),
                 duration, iso(at), user))
        except sqlite3.IntegrityError:
            return None
        return cursor.lastrowid

    def link_follow_up(self, seq: int, campaign: str, enrollment_id: int | None) -> None:
        self.db.execute("UPDATE responses SET follow_up = ?, follow_up_enrollment = ? WHERE seq = ?",
                        (campaign, enrollment_id, seq))

    def responses(self, partner: str | None = None, campaign: str | None = None) -> list[dict]:
        keys = ("seq", "target", "kind", "campaign", "step", "partner", "response", "result", "follow_up",
                "follow_up_enrollment", "answers", "duration", "at", "user")
        wanted = {c: v for c, v in (("partner", partner), ("campaign", campaign)) if v is not None}
        where = " AND ".join(f"{c} = ?" for c in wanted) or "1 = 1"
        found = []
        for row in self.db.execute(f"SELECT {', '.join(keys)} FROM responses WHERE {where} ORDER BY seq",
                                   tuple(wanted.values())):
            item = dict(zip(keys, row))
            item["answers"] = json.loads(item["answers"])
            found.append(item)
        return found

    def complete_activity(self, activity_id: str, response: str, result: str, at: datetime,
                          answers: Mapping[str, str], duration: int | None) -> bool:
        cursor = self.db.execute(
            "UPDATE activities SET status = 'completed', response = ?, result = ?, responded_at = ?, answers = ?, "
            "duration = ? WHERE id = ? AND status = 'open'",
            (response, result, iso(at), json.dumps(dict(answers)), duration, activity_id))
        return cursor.rowcount == 1

    # --- pop-ups ---------------------------------------------------------------------------

    def add_popup(self, popup: Mapping[str, Any]) -> None:
        self.db.execute("INSERT INTO popups (id, enrollment, campaign, step, partner, pages, title, body, language, "
                        "created_at, variant) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (popup["id"], popup["enrollment"], popup["campaign"], popup["step"], popup["partner"],
                         json.dumps(popup["pages"]), popup["title"], popup["body"], popup["language"], popup["at"],
                         popup.get("variant")))

    def popups(self, partner: str | None = None) -> list[dict]:
        return self._rows("popups", _POPUP_KEYS, {"partner": partner}, ("pages",))

    def _rows(self, table: str, keys: Sequence[str], filters: Mapping[str, Any], json_keys: Sequence[str]) -> list[dict]:
        """Rows of ``table`` as dicts, filtered on the given columns (None: any), oldest first."""
        wanted = {column: value for column, value in filters.items() if value is not None}
        where = " AND ".join(f"{column} = ?" for column in wanted) or "1 = 1"
        found = []
        for row in self.db.execute(f"SELECT {', '.join(keys)} FROM {table} WHERE {where} ORDER BY created_at, id",
                                   tuple(wanted.values())):
            item = dict(zip(keys, row))
            for key in json_keys:
                item[key] = json.loads(item[key]) if item[key] is not None else None
            found.append(item)
        return found

    # --- statistics ---------------------------------------------------------------------------

    def message_counts(self, campaign: str) -> list[tuple[str, str, str, str | None, str, int]]:
        """(step, channel, language, variant, delivery status, messages) of a campaign; the
        variant is the key of the step's variant the message carries, None for a step without."""
        return self.db.execute(
            "SELECT step, channel, language, variant, status, count(*) FROM outbox WHERE campaign = ? "
            "GROUP BY 1, 2, 3, 4, 5", (campaign,)).fetchall()

    def sent_between(self, since: datetime, until: datetime) -> dict[str, int]:
        """Messages sent, by campaign, of those due in [since, until] (the campaigns page's "sent
        this week")."""
        return dict(self.db.execute(
            "SELECT campaign, count(*) FROM outbox WHERE status = 'sent' AND at >= ? AND at <= ? GROUP BY campaign",
            (iso(since), iso(until))).fetchall())

    def engagement_counts(self, campaign: str) -> list[tuple[str, str, str | None, str, int, int]]:
        """(step, language, variant, event type, events, distinct partners) of a campaign's
        engagement events about messages that were sent; the language and the variant are those
        of the step's latest message to the partner."""
        latest = ("(SELECT o.{key} FROM outbox o WHERE o.partner = e.partner "
                  "AND o.campaign = e.campaign AND o.step = e.step ORDER BY o.at DESC, o.id DESC LIMIT 1)")
        return self.db.execute(
            f"SELECT e.step, coalesce({latest.format(key='language')}, 'default') AS language, "
            f"{latest.format(key='variant')} AS variant, e.type, count(*), count(DISTINCT e.partner) "
            "FROM events e WHERE e.campaign = ? AND e.type IN ('opened', 'clicked', 'bounced') "
            "AND EXISTS (SELECT 1 FROM outbox o WHERE o.partner = e.partner AND o.campaign = e.campaign "
            "  AND o.step = e.step AND o.status = 'sent') GROUP BY 1, 2, 3, 4",
            (campaign,)).fetchall()

    def popup_counts(self, campaign: str) -> list[tuple[str, str, str | None, int, int]]:
        """(step, language, variant, shown, read) of a campaign's pop-ups."""
        return self.db.execute(
            "SELECT step, coalesce(language, 'default'), variant, count(*), count(read_at) FROM popups "
            "WHERE campaign = ? GROUP BY 1, 2, 3", (campaign,)).fetchall()

    def mark_popup_read(self, popup_id: str, partner: str, at: datetime) -> bool:
        cursor = self.db.execute("UPDATE popups SET read_at = ? WHERE id = ? AND partner = ? AND read_at IS NULL",
                                 (iso(at), popup_id, partner))
        return cursor.rowcount == 1

    def popup(self, popup_id: str) -> dict | None:
        found = self._rows("popups", _POPUP_KEYS, {"id": popup_id}, ("pages",))
        return found[0] if found else None

    def latest_popup(self, partner: str, campaign: str, step: str) -> str | None:
        return self._one("SELECT id FROM popups WHERE partner = ? AND campaign = ? AND step = ? "
                         "ORDER BY created_at DESC LIMIT 1", (partner, campaign, step))

    # --- monitors ---------------------------------------------------------------------------

    def open_alert(self, campaign: str) -> dict | None:
        found = self.alerts(campaign, open_only=True)
        return found[0] if found else None

    def raise_alert(self, campaign: str, at: datetime, pct: float, minimum: float) -> int | None:
        """The new alert's number, or None when one is open already (another tick raised it)."""
        try:
            cursor = self.db.execute("INSERT INTO alerts (campaign, raised_at, pct, minimum) VALUES (?, ?, ?, ?)",
                                     (campaign, iso(at), pct, minimum))
        except sqlite3.IntegrityError:
            return None
        return cursor.lastrowid

    def clear_alert(self, seq: int, at: datetime, pct: float) -> bool:
        cursor = self.db.execute("UPDATE alerts SET cleared_at = ?, cleared_pct = ? WHERE seq = ? AND cleared_at IS NULL",
                                 (iso(at), pct, seq))
        return cursor.rowcount == 1

    def alerts(self, campaign: str | None = None, open_only: bool = False) -> list[dict]:
        keys = ("seq", "campaign", "raised_at", "pct", "minimum", "cleared_at", "cleared_pct")
        sql, params = f"SELECT {', '.join(keys)} FROM alerts WHERE 1 = 1", []
        if campaign is not None:
            sql += " AND campaign = ?"
            params.append(campaign)
        if open_only:
            sql += " AND cleared_at IS NULL"
        return [dict(zip(keys, row)) for row in self.db.execute(sql + " ORDER BY seq", params)]

    def add_notice(self, record: Mapping[str, Any]) -> None:
        """A message that belongs to no enrollment (a monitor's alert email)."""
        self.add_message(record, 0)

    # --- facts for expressions -------------------------------------------------------------

    def engaged(self, partner: str, campaign: str, step: str, kind: str, since: datetime | None,
                until: datetime) -> bool:
        """Whether an engagement event of this kind for the step's messages to the partner
        happened in (since, until]."""
        return self._one("SELECT 1 FROM events WHERE partner = ? AND campaign = ? AND step = ? AND type = ? "
                         "AND at <= ? AND at >= ? LIMIT 1",
                         (partner, campaign, step, kind, iso(until), maybe_iso(since) or "")) is not None

    def response(self, enrollment_id: int, step: str, until: datetime) -> str | None:
        return self._one("SELECT response FROM responses WHERE enrollment = ? AND step = ? AND at <= ? "
                         "ORDER BY at DESC, seq DESC LIMIT 1", (enrollment_id, step, iso(until)))

    def consent_latest(self, partner: str, channel: str, until: datetime) -> bool | None:
        return self.consents_latest([(partner, channel, until)])[(partner, channel, until)]

    def consents_latest(self, asks: Iterable[tuple[str, str, datetime]]
                        ) -> dict[tuple[str, str, datetime], bool | None]:
        """(partner, channel, until) → the partner's latest consent ledger entry for the channel
        at or before ``until`` (None: there is none), for many at once."""
        asked = list(dict.fromkeys(asks))
        found: dict[tuple[str, str, datetime], bool | None] = {}
        for chunk in chunks(asked, 250):
            values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
            params = [value for n, (partner, channel, until) in enumerate(chunk)
                      for value in (n, partner, channel, stamp(until))]
            for n, granted in self.db.execute(
                    f"WITH asks (n, partner, channel, upto) AS (VALUES {values}) "
                    "SELECT a.n, (SELECT c.granted FROM consent c WHERE c.partner = a.partner AND c.channel = a.channel "
                    "AND c.at <= a.upto ORDER BY c.at DESC, c.seq DESC LIMIT 1) FROM asks a", params):
                found[chunk[n]] = None if granted is None else bool(granted)
        return found

    def mark_undeliverable(self, address: str, at: datetime, source: str) -> None:
        self.db.execute("INSERT INTO undeliverable (address, at, source) VALUES (?, ?, ?) "
                        "ON CONFLICT (address) DO UPDATE SET at = min(at, excluded.at)",
                        (address.strip().lower(), iso(at), source))

    def undeliverable(self, address: str, until: datetime) -> bool:
        return (address, until) in self.undeliverable_among([(address, until)])

    def undeliverable_among(self, asks: Iterable[tuple[str, datetime]]) -> set[tuple[str, datetime]]:
        """Which of these (address, until) had hard-bounced at or before ``until``, for many at once."""
        asked = list(dict.fromkeys(asks))
        found: set[tuple[str, datetime]] = set()
        for chunk in chunks(asked, 250):
            values = ", ".join(["(?, ?, ?)"] * len(chunk))
            params = [value for n, (address, until) in enumerate(chunk)
                      for value in (n, address.strip().lower(), stamp(until))]
            found.update(chunk[n] for (n,) in self.db.execute(
                f"WITH asks (n, address, upto) AS (VALUES {values}) SELECT a.n FROM asks a "
                "WHERE EXISTS (SELECT 1 FROM undeliverable u WHERE u.address = a.address AND u.at <= a.upto)", params))
        return found

    def last_address(self, partner: str, campaign: str, step: str) -> str | None:
        """Where the step's latest message to the partner went."""
        payload = self._one("SELECT payload FROM outbox WHERE partner = ? AND campaign = ? AND step = ? "
                            "ORDER BY at DESC, rowid DESC LIMIT 1", (partner, campaign, step))
        return json.loads(payload).get("to") if payload else None

    def consent_entries(self, partner: str) -> list[dict]:
        return [{"channel": c, "granted": bool(g), "at": at, "source": source} for c, g, at, source in self.db.execute(
            "SELECT channel, granted, at, source FROM consent WHERE partner = ? ORDER BY at, seq", (partner,))]

    # --- events ----------------------------------------------------------------------------

    def add_event(self, event: Any, pending: bool, at: datetime) -> bool:
        """False when an event with this id was imported before."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO events (id, type, at, partner, data, message, campaign, step, imported_at, processed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event.id, event.type, iso(event.at), event.partner, json.dumps(dict(event.data), ensure_ascii=False),
             event.message, event.campaign, event.step, iso(at), 0 if pending else 1))
        return cursor.rowcount == 1

    def message_target(self, message_id: str) -> tuple[str, str, str, str] | None:
        """(campaign, step, partner, channel) of a message id (or a pop-up's: channel popup)."""
        row = self.db.execute("SELECT campaign, step, partner, channel FROM outbox WHERE id = ? UNION ALL "
                              "SELECT campaign, step, partner, 'popup' FROM popups WHERE id = ?",
                              (message_id, message_id)).fetchone()
        return tuple(row) if row else None  # type: ignore[return-value]

    def add_consent(self, partner: str, channel: str, granted: bool, at: datetime, source: str) -> None:
        self.db.execute("INSERT INTO consent (partner, channel, granted, at, source) VALUES (?, ?, ?, ?, ?)",
                        (partner, channel, int(granted), iso(at), source))

    def next_pending_event(self, until: datetime) -> tuple[str, str, datetime, str, dict] | None:
        row = self.db.execute("SELECT id, type, at, partner, data FROM events WHERE processed = 0 AND at <= ? "
                              "ORDER BY at, id LIMIT 1", (iso(until),)).fetchone()
        if row is None:
            return None
        return row[0], row[1], from_iso(row[2]), row[3], json.loads(row[4])

    def mark_event_processed(self, event_id: str) -> bool:
        cursor = self.db.execute("UPDATE events SET processed = 1 WHERE id = ? AND processed = 0", (event_id,))
        return cursor.rowcount == 1

    # --- audit log -------------------------------------------------------------------------

    def log_position(self) -> int:
        """The audit log's latest line number: it moves whenever anything changes state."""
        return self._one("SELECT max(seq) FROM log") or 0

    def log(self, at: datetime, user: str, action: str, campaign: str | None = None, partner: str | None = None,
            **detail: Any) -> None:
        self.db.execute("INSERT INTO log (at, user, action, campaign, partner, detail) VALUES (?, ?, ?, ?, ?, ?)",
                        (iso(at), user, action, campaign, partner, json.dumps(detail, ensure_ascii=False, default=str)))

    def log_entries(self, campaign: str | None = None, limit: int | None = None) -> list[dict]:
        sql = ("SELECT l.seq, l.at, l.user, l.action, l.campaign, c.number, l.partner, l.detail FROM log l "
               "LEFT JOIN campaigns c ON c.id = l.campaign")
        params: list[Any] = []
        if campaign is not None:
            sql += " WHERE l.campaign = ?"
            params.append(campaign)
        sql += " ORDER BY l.seq"
        entries = [{"seq": seq, "at": at, "user": user, "action": action, "campaign": c, "campaign_number": number,
                    "partner": p, "detail": json.loads(detail)}
                   for seq, at, user, action, c, number, p, detail in self.db.execute(sql, params)]
        return entries[-limit:] if limit else entries

    # --- API keys (engine.apikeys) -----------------------------------------------------------

    def add_api_key(self, key_id: str, user: str, salt: str, digest: str, at: datetime) -> None:
        """A new key: its id, its user, and the salt and scrypt hash of its secret (hex), never
        the key. ``sqlite3.IntegrityError`` when the id is taken."""
        self.db.execute("INSERT INTO api_keys (id, user, salt, hash, created_at) VALUES (?, ?, ?, ?, ?)",
                        (key_id, user, salt, digest, iso(at)))

    def api_key(self, key_id: str) -> dict | None:
        found = self._rows("api_keys", _API_KEY_KEYS, {"id": key_id}, ())
        return found[0] if found else None

    def api_keys(self) -> list[dict]:
        """Every key, revoked ones too, oldest first."""
        return self._rows("api_keys", _API_KEY_KEYS, {}, ())

    def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        """False when there is no such key or it was revoked already (the first revocation's
        time stays)."""
        cursor = self.db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                 (iso(at), key_id))
        return cursor.rowcount == 1

    def touch_api_key(self, key_id: str, at: datetime) -> bool:
        """Record a key's last use; False when nothing was recorded (a later use is recorded
        already, or the store was busy). A hint for `engine apikey list`, so a request does not
        queue behind a tick for it: one statement of its own, which waits for another process's
        write lock only :data:`TOUCH_WAIT` seconds, then gives up (the next use tries again)."""
        if self._depth:
            return self._touch_api_key(key_id, at)
        self.db.execute(f"PRAGMA busy_timeout={int(TOUCH_WAIT * 1000)}")
        try:
            return self._touch_api_key(key_id, at)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return False
            raise
        finally:
            self.db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")

    def _touch_api_key(self, key_id: str, at: datetime) -> bool:
        """The last use moves forward only: concurrent requests may record theirs in any order."""
        cursor = self.db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ? "
                                 "AND (last_used_at IS NULL OR last_used_at < ?)", (iso(at), key_id, iso(at)))
        return cursor.rowcount == 1


def _label(record: Mapping[str, Any], key: str) -> str | None:
    """A message's language or variant as its outbox column holds it (for counting): text, as
    written in the payload (a partner's language need not be a string)."""
    value = record.get(key)
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def queued(rows: Iterable[tuple]) -> list[Queued]:
    """Messages to hand over, from their outbox rows (id, channel, payload, html, attempts)."""
    return [Queued(mid, channel, json.loads(payload), bool(html), attempts)
            for mid, channel, payload, html, attempts in rows]
