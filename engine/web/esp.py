"""Email-service-provider webhooks → the engine's events (the events-file format of SPEC §8).

Pure functions, nothing fetched or stored: :func:`sendgrid` takes the parsed body of SendGrid's
Event Webhook, :func:`ses` that of an Amazon SNS HTTP POST carrying SES notifications. Each gives
a :class:`Translation` or raises :class:`EspError` for a malformed body, naming the place
(``event 3: ...``, counted from 0 as in the JSON list; ``Message: bounce.timestamp ...``).

- Whose message: the SendGrid custom argument ``engine_message``, the SES header
  ``X-Campaign-Message``, then our ``Message-ID`` (SendGrid ``smtp-id``; SES
  ``commonHeaders.messageId``, else the header) through :func:`engine.channels.smtp.engine_id_of`:
  the first that is a well-formed engine message id wins. An event naming none is someone else's
  (an account often sends for several systems): ignored and counted, not an error. ``ignored``
  counts a SendGrid event, an SES notification of a kind we ignore, or one recipient of a bounce
  or complaint (or an open, a click) that is not ours.
- SendGrid ``dropped`` is a soft bounce: the message never left SendGrid, so it must not count as
  delivered, but the reason is SendGrid's suppression list or policy, not a receiving server's
  verdict, so the address stays deliverable. ``bounce`` is hard unless its ``type`` (or the event)
  is ``blocked``. ``deferred``, ``processed``, ``delivered``, ``group_resubscribe`` and unknown
  names are ignored: SendGrid adds kinds, and a new one must not fail a batch.
- SES: ``Permanent`` is a hard bounce, anything else soft; a ``not-spam`` complaint is ignored. A
  recipient not in the To header (``commonHeaders.to``, when given) had a BCC copy: ignored, so a
  copy never blocks or unsubscribes the partner.
- Ids are stable, so a webhook delivered twice imports once: ``sendgrid:<sg_event_id>`` (else the
  event's content hash); ``ses:<SNS MessageId>`` for an open or a click, and
  ``ses:<SNS MessageId>:<address>:<n>`` (``n``: its place in the list) for a bounce or a complaint
  (SNS keeps the MessageId when it retries).
- The SNS signature is not verified: that needs the signing certificate, fetched over the network
  (a server may not be allowed to), and an RSA library. Its shape is checked: ``SignatureVersion``
  1 or 2, a ``Signature``, an https ``SigningCertURL`` on ``sns.<region>.amazonaws.com``; and a
  ``SubscribeURL`` must be on that host too, as an operator will visit it. Authenticity is the
  web layer's: a secret in the endpoint URL (or SNS's basic auth) and an allowed TopicArn.
- Provider text (a reason, a URL) loses control characters and is cut to 2,000 characters, and
  ids and times are held to the events reader's rules: every event translated imports.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from dsl.ids import check_partner_id, first_bad_character
from dsl.types import check_date
from engine.channels.smtp import engine_id_of
from engine.clock import UTC, iso
from engine.events import MAX_ID_BYTES, content_id
from engine.steps import message_parts

MESSAGE_HEADER = "X-Campaign-Message"  # written by engine.channels.smtp: the engine message id
MAX_TEXT = 2000  # characters kept of a provider's reason or URL
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
_ADDRESS = re.compile(r"[^\s<>,;:\"()\[\]]+@[^\s<>,;:\"()\[\]]+")
_NAMES = {str: "a string", dict: "an object", list: "a list"}


class EspError(ValueError):
    """Malformed payload: the message names the problem and where (e.g. 'event 3: timestamp must be a number')."""


@dataclass(frozen=True)
class Translation:
    """What a webhook body means to the engine."""

    events: tuple[dict, ...]
    ignored: int  # provider events that are not ours or of a kind we ignore
    subscription: dict | None = None  # an SNS SubscriptionConfirmation, for an operator to confirm


# --- SendGrid ----------------------------------------------------------------------------------

_UNSUBSCRIBED = {"spamreport": "complaint", "unsubscribe": "unsubscribe", "group_unsubscribe": "unsubscribe"}
_SENDGRID = {"open": "opened", "click": "clicked", "bounce": "bounced", "blocked": "bounced",
             "dropped": "bounced", **dict.fromkeys(_UNSUBSCRIBED, "unsubscribed")}


def sendgrid(payload: Any) -> Translation:
    """The events of a SendGrid Event Webhook body: a list of event objects."""
    if not isinstance(payload, list):
        raise EspError(f"a SendGrid webhook body is a list of events, got {_name(payload)}")
    events = [_sendgrid_event(item, f"event {n}") for n, item in enumerate(payload)]
    ours = tuple(event for event in events if event is not None)
    return Translation(ours, len(events) - len(ours))


def _sendgrid_event(item: Any, where: str) -> dict | None:
    if not isinstance(item, dict):
        raise EspError(f"{where} must be an object, got {_name(item)}")
    kind = _need(item, "event", str, where)
    at = _unix_time(item.get("timestamp"), where)
    if kind not in _SENDGRID:
        return None
    data = _sendgrid_data(kind, item, where)
    message = _ours((_may(item, "engine_message", str, where), False), (_may(item, "smtp-id", str, where), True))
    if message is None:
        return None
    sg_event_id = _may(item, "sg_event_id", str, where)
    event_id = _checked_id("sendgrid:" + (sg_event_id or content_id(item)), where, "sg_event_id")
    return _event(_SENDGRID[kind], at, message, event_id, data)


def _sendgrid_data(kind: str, item: dict, where: str) -> dict | None:
    if kind in _UNSUBSCRIBED:
        return {"channel": "email", "reason": _UNSUBSCRIBED[kind]}
    if kind in ("open", "click"):
        return {"url": _text(_need(item, "url", str, where))} if kind == "click" else None
    reason = _may(item, "reason", str, where) or kind
    if kind == "dropped":
        return {"kind": "soft", "reason": _text(f"dropped by SendGrid: {reason}")}
    blocked = kind == "blocked" or _may(item, "type", str, where) == "blocked"
    return {"kind": "soft" if blocked else "hard", "reason": _text(reason)}


def _unix_time(value: Any, where: str) -> str:
    if value is None:
        raise EspError(f"{where}: timestamp is missing")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EspError(f"{where}: timestamp must be a number (unix seconds), got {_name(value)}")
    if not -1e10 < value < 1e10:  # years 1653-2286, and not NaN; check_date's bounds are narrower
        raise EspError(f"{where}: timestamp is out of range")
    return _checked_time(_EPOCH + timedelta(seconds=value), where, "timestamp")


# --- Amazon SES through SNS --------------------------------------------------------------------

_SNS_TYPES = ("SubscriptionConfirmation", "UnsubscribeConfirmation", "Notification")
_SES = {"Bounce": ("bounced", "bouncedRecipients"), "Complaint": ("unsubscribed", "complainedRecipients"),
        "Open": ("opened", None), "Click": ("clicked", None)}


def ses(payload: Any) -> Translation:
    """The events of an Amazon SNS HTTP POST body carrying an SES notification, or the details of
    a SubscriptionConfirmation (which an operator confirms, never this module)."""
    where = "SNS message"
    if not isinstance(payload, dict):
        raise EspError(f"an SNS message is a JSON object, got {_name(payload)}")
    if "Type" not in payload and ("notificationType" in payload or "eventType" in payload):
        raise EspError("an SES notification without its SNS envelope: turn off raw message delivery")
    type_ = _need(payload, "Type", str, where)
    if type_ not in _SNS_TYPES:
        raise EspError(f"{where}: Type must be one of {', '.join(_SNS_TYPES)}")
    if _need(payload, "SignatureVersion", str, where) not in ("1", "2"):
        raise EspError(f'{where}: SignatureVersion must be "1" or "2"')
    if not _need(payload, "Signature", str, where):
        raise EspError(f"{where}: Signature is empty")
    _sns_url(payload, "SigningCertURL", where)
    sns_id = _need(payload, "MessageId", str, where)
    if type_ == "UnsubscribeConfirmation":
        return Translation((), 1)
    if type_ == "SubscriptionConfirmation":
        return Translation((), 0, {"TopicArn": _need(payload, "TopicArn", str, where),
                                   "SubscribeURL": _sns_url(payload, "SubscribeURL", where),
                                   "Token": _need(payload, "Token", str, where), "MessageId": sns_id})
    text = _need(payload, "Message", str, where)
    try:
        notification = json.loads(text)
    except RecursionError:
        raise EspError(f"{where}: Message is nested too deeply") from None
    except ValueError as exc:
        detail = f" ({exc.msg} at line {exc.lineno} column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise EspError(f"{where}: Message is not JSON{detail}") from None
    return _ses_notification(notification, sns_id, "Message")


def _sns_url(payload: dict, key: str, where: str) -> str:
    url = _need(payload, key, str, where)
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme != "https" or not _SNS_HOST.fullmatch(parts.netloc):
        raise EspError(f"{where}: {key} must be an https URL on sns.<region>.amazonaws.com")
    return url


def _ses_notification(notification: Any, sns_id: str, where: str) -> Translation:
    if not isinstance(notification, dict):
        raise EspError(f"{where} must be a JSON object (an SES notification), got {_name(notification)}")
    kind = _may(notification, "notificationType", str, where) or _need(
        notification, "eventType", str, where, "notificationType or eventType")
    if kind not in _SES:
        return Translation((), 1)  # Delivery, Send, Reject, DeliveryDelay, ...
    type_, recipients = _SES[kind]
    name = kind.lower()  # where the details are: bounce, complaint, open, click
    detail = _need(notification, name, dict, where)
    at = _iso_time(_need(detail, "timestamp", str, where, f"{name}.timestamp"), where, f"{name}.timestamp")
    message, to = _ses_message(_need(notification, "mail", dict, where), where)
    if recipients is None:  # an open or a click
        data = {"url": _text(_need(detail, "link", str, where, "click.link"))} if kind == "Click" else None
        if message is None:
            return Translation((), 1)
        return Translation((_event(type_, at, message, _checked_id(f"ses:{sns_id}", where, "MessageId"), data),), 0)
    if kind == "Bounce":
        bounce_type = _need(detail, "bounceType", str, where, "bounce.bounceType")
        subtype = _may(detail, "bounceSubType", str, where, "bounce.bounceSubType")
        wanted, summary = True, " ".join(filter(None, (bounce_type, subtype)))
    else:
        wanted = _may(detail, "complaintFeedbackType", str, where, "complaint.complaintFeedbackType") != "not-spam"
    events, ignored = [], 0
    for n, recipient in enumerate(_need(detail, recipients, list, where, f"{name}.{recipients}")):
        place = f"{name}.{recipients}[{n}]"
        if not (isinstance(recipient, dict) and isinstance(recipient.get("emailAddress"), str)):
            raise EspError(f"{where}: {place} must be an object with a string emailAddress")
        address = recipient["emailAddress"]
        data = {"channel": "email", "reason": "complaint"}
        if kind == "Bounce":
            code = _may(recipient, "diagnosticCode", str, where, f"{place}.diagnosticCode")
            data = {"kind": "hard" if bounce_type == "Permanent" else "soft", "reason": _text(code or summary)}
        if message is None or not wanted or (to is not None and address.strip().lower() not in to):
            ignored += 1
            continue
        event_id = _checked_id(f"ses:{sns_id}:{address}:{n}", where, f"MessageId and {place}.emailAddress")
        events.append(_event(type_, at, message, event_id, data))
    return Translation(tuple(events), ignored)


def _ses_message(mail: dict, where: str) -> tuple[str | None, set[str] | None]:
    """The engine message of an SES notification (or None), and the To addresses (None when SES
    left the headers out)."""
    headers: dict[str, str] = {}
    for n, header in enumerate(_may(mail, "headers", list, where, "mail.headers") or []):
        if not (isinstance(header, dict) and isinstance(header.get("name"), str) and isinstance(header.get("value"), str)):
            raise EspError(f"{where}: mail.headers[{n}] must be an object with a string name and value")
        headers.setdefault(header["name"].lower(), header["value"])
    common = _may(mail, "commonHeaders", dict, where, "mail.commonHeaders") or {}
    message_id = _may(common, "messageId", str, where, "mail.commonHeaders.messageId")
    message = _ours((headers.get(MESSAGE_HEADER.lower()), False), (message_id, True), (headers.get("message-id"), True))
    to = _may(common, "to", list, where, "mail.commonHeaders.to")
    if to is not None and not all(isinstance(text, str) for text in to):
        raise EspError(f"{where}: mail.commonHeaders.to must be a list of strings")
    return message, None if to is None else {a.lower() for text in to for a in _ADDRESS.findall(text)}


def _iso_time(text: str, where: str, name: str) -> str:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise EspError(f"{where}: {name} must be an ISO 8601 time with a timezone, such as 2026-07-01T09:00:00Z")
    return _checked_time(at, where, name)


# --- shared ------------------------------------------------------------------------------------


def _ours(*candidates: tuple[str | None, bool]) -> str | None:
    """The first candidate that names an engine message; each is (value, is a Message-ID)."""
    for value, is_message_id in candidates:
        value = value.strip() if value is not None else ""
        if value and is_message_id:
            value = engine_id_of(value if value.startswith("<") else f"<{value}>") or ""
        if value and _is_engine_message(value):
            return value
    return None


def _is_engine_message(engine_id: str) -> bool:
    try:
        partner = message_parts(engine_id)[1]
    except ValueError:
        return False
    return check_partner_id(partner) is None and _id_problem(engine_id) is None


def _event(type_: str, at: str, message: str, event_id: str, data: dict | None) -> dict:
    event = {"type": type_, "at": at, "partner": message_parts(message)[1], "message": message, "id": event_id}
    return event if data is None else {**event, "data": data}


def _id_problem(text: str) -> str | None:
    """Why the events reader would refuse ``text`` as an ``id`` or a ``message``, or None."""
    if not text.strip() or first_bad_character(text) is not None:
        return "must be printable text on one line"
    return "is too long" if len(text.encode("utf-8")) > MAX_ID_BYTES else None


def _checked_id(event_id: str, where: str, parts: str) -> str:
    problem = _id_problem(event_id)
    if problem is not None:
        raise EspError(f"{where}: the event id made of {parts} {problem}")
    return event_id


def _checked_time(at: datetime, where: str, name: str) -> str:
    problem = check_date(at) or check_date(at.astimezone(UTC))  # the first keeps the second in range
    if problem is not None:
        raise EspError(f"{where}: {name} is out of range ({problem})")
    return iso(at)


def _text(value: str) -> str:
    """Provider text kept in ``data``: no control characters or lone surrogates, bounded."""
    return "".join("\ufffd" if unicodedata.category(c) in ("Cc", "Cs") else c for c in value[:MAX_TEXT])


def _may(obj: dict, key: str, kind: type, where: str, name: str | None = None) -> Any:
    """``obj[key]`` when present and not null (then it must be of ``kind``), else None."""
    value = obj.get(key)
    if value is None or isinstance(value, kind):
        return value
    raise EspError(f"{where}: {name or key} must be {_NAMES[kind]}, got {_name(value)}")


def _need(obj: dict, key: str, kind: type, where: str, name: str | None = None) -> Any:
    value = _may(obj, key, kind, where, name)
    if value is None:
        raise EspError(f"{where}: {name or key} is missing")
    return value


def _name(value: Any) -> str:
    """A JSON value's kind, for a message (never the value: it may hold anything)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return "a number" if isinstance(value, (int, float)) else _NAMES.get(type(value), type(value).__name__)
