"""One executor per step kind: what a step produces for one partner, rendered, not yet written.

The tick decides *whether* a step runs (its ``when``, consent, the window); these functions say
*what* it produces: an outbox record (email, SMS, letter), an activity or a pop-up. They touch
no store and no transport, so the tick can write the result in the step's own transaction and
`engine test` can show it without writing anything.

Decisions where SPEC is silent:

- A message goes to ``partner.email`` (email) or ``partner.phone`` (SMS); a partner without one
  is skipped with reason ``no_address``.
- A translation is chosen by ``partner.language``; a field it leaves out comes from the step
  itself. ``language`` in the outbox is the translation's key, or ``default`` for the step's own text.
- A template that fails for a partner (an undefined value at run time, a division by zero, …)
  fails the step for that partner with the reason, and the enrollment goes on with the next step.
- An email step's ``attachments`` are recorded with each message as ``attachments: [{path, size,
  sha256, content_type}]`` (campaigns.attachments); one that is missing or too big when the step
  runs fails the step for that partner with reason ``attachment_error``.
- A letter is one row of ``.engine/letters/<campaign>/<step>.csv`` with the columns
  :data:`LETTER_COLUMNS`; ``body`` is the rendered template, ready for the print shop's merge.
- A step with ``variants`` gives each partner one (campaigns.policy.assign); the variant's fields
  replace the step's own, and a translation for the partner's language still wins for the
  fields it gives. The outbox record, the pop-up and the step run carry ``variant``.
- A transactional campaign's emails carry no List-Unsubscribe header, and ``unsubscribe_url`` is
  empty in their templates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Mapping

from campaigns.attachments import AttachmentError, describe
from campaigns.shapes import Activity, Campaign, Email, Letter, Popup, Settings, Sms, Step
from campaigns.policy import Hold, assign, is_message, weights

from .links import Links, decorate
from .store.records import stamp


class _Templates:
    """:mod:`dsl.templates`, imported when the first step renders: jinja2 is a tenth of the
    start-up of a tick that has nothing to send. After the first use, a plain attribute."""

    def __getattr__(self, name: str) -> Any:
        from dsl import templates as module

        value = getattr(module, name)
        setattr(self, name, value)
        return value


templates = _Templates()

DEFAULT_LANGUAGE = "default"
LETTER_COLUMNS = ("id", "campaign", "step", "partner", "at", "language", "body")


@dataclass
class Job:
    """One step of one enrollment, to be executed as of ``at`` (its due time). Never changed
    once made (a plain dataclass: making a frozen one costs a fifth of executing the step)."""

    campaign_id: str
    campaign: Campaign
    campaign_number: int | None
    step: Step
    partner: Mapping[str, Any]
    partner_id: str
    enrollment_id: int
    enrollment_number: int
    run: int
    at: datetime
    tz: tzinfo
    templates_dir: Path
    settings: Settings

    kind: str = ""  # the step's (worked out when not given)
    links: Links | None = None  # signed links for messages (engine.yaml's web.base_url)
    message_id: str = field(init=False)  # stable: the same enrollment, step and run always give the same id
    stamp: str = field(init=False)  # ``at`` as records store it
    variant: str | None = field(init=False)  # the key of the step's variant this partner gets

    def __post_init__(self) -> None:
        self.kind = self.kind or self.step.kind
        self.message_id = message_id(self.campaign_id, self.partner_id, self.enrollment_number, self.step.id, self.run)
        self.stamp = _stamp(self.at)
        options = getattr(getattr(self.step, self.kind), "variants", None)
        self.variant = assign(self.campaign_id, self.step.id, self.partner_id, weights(options)) if options else None

    def chosen(self, options: Mapping[str, Any]) -> Any | None:
        """The variant this partner gets of the step's ``variants`` (None: the step has none)."""
        return options[self.variant] if self.variant is not None else None

    @property
    def transactional(self) -> bool:
        return self.campaign.transactional


def message_id(campaign: str, partner: str, number: int, step: str, run: int) -> str:
    """``campaign:partner:n:step:run``. Campaign and step ids never hold ``:`` (dsl.ids), so the
    id splits one way (:func:`message_parts`): two messages never share an id."""
    return f"{campaign}:{partner}:{number}:{step}:{run}"


def message_parts(message: str) -> tuple[str, str, int, str, int]:
    """The (campaign, partner, enrollment number, step, run) of a :func:`message_id`."""
    campaign, rest = message.split(":", 1)
    partner, number, step, run = rest.rsplit(":", 3)
    return campaign, partner, int(number), step, int(run)


def _stamp(at: datetime) -> str:
    return stamp(at)  # the steps of a batch are mostly due at the same few times (remembered)


@dataclass
class Effects:
    """What an executed step produced (or why it could not). Never changed once made."""

    status: str  # executed | skipped | failed
    reason: str | None = None
    messages: tuple[dict, ...] = ()  # outbox records, by channel
    activity: dict | None = None
    popup: dict | None = None
    detail: dict = field(default_factory=dict)
    html: bool = False  # the message body is HTML (rendered from a .html template)
    send: str | None = None  # the channel a frequency cap counts it on (executed, not transactional)
    hold: Hold | None = None  # status "deferred": not run now, but then (a frequency cap's free slot)


def execute(job: Job) -> Effects:
    kind = job.kind
    try:
        effects = _EXECUTORS[kind](job, getattr(job.step, kind))
    except templates.TemplateError as exc:
        return Effects("failed", "template_error", detail={"error": str(exc)})
    if effects.status == "executed" and is_message(kind) and not job.transactional:
        effects.send = kind
    return effects


def variables(job: Job) -> dict[str, Any]:
    local = job.at.astimezone(job.tz)
    partner = dict.fromkeys(job.settings.partners.fields)  # a missing field is null, not undefined
    partner.update(job.partner)
    return {
        "partner": partner,
        "campaign": {"id": job.campaign_id, "name": job.campaign.name or job.campaign_id,
                     "number": job.campaign_number, "owner": job.campaign.owner},
        "step": {"id": job.step.id, "kind": job.kind},
        "now": local,
        "today": local.date(),
        **(job.links.variables(job.message_id, unsubscribe=not job.transactional) if job.links is not None
           else NO_LINKS),
    }


NO_LINKS = {"unsubscribe_url": "", "preferences_url": ""}


def _language(job: Job, translations: Mapping[str, Any]) -> tuple[str, Any | None]:
    language = job.partner.get("language")
    if isinstance(language, str) and language in translations:
        return language, translations[language]
    return DEFAULT_LANGUAGE, None


def _text(job: Job, text: str | None, names: Mapping[str, Any]) -> str:
    return templates.render_inline(text, names, job.templates_dir) if text else ""


def _body(job: Job, template: str | None, body: str | None, names: Mapping[str, Any]) -> str:
    if template:
        return templates.render_file(template, names, job.templates_dir)
    return _text(job, body, names)


def _message(job: Job, channel: str, to: str, language: str, **content: str) -> dict:
    record = {"id": job.message_id, "campaign": job.campaign_id, "step": job.step.id, "partner": job.partner_id,
              "channel": channel, "to": to, **content, "language": language, "at": job.stamp}
    if job.variant is not None:
        record["variant"] = job.variant
    return record


def _detail(job: Job, **detail: str) -> dict:
    """The step run's detail: what it produced, and the variant the partner got."""
    return {**detail, "variant": job.variant} if job.variant is not None else detail


def _address(job: Job, field_name: str) -> str | None:
    value = job.partner.get(field_name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _email(job: Job, email: Email) -> Effects:
    to = _address(job, "email")
    if to is None:
        return Effects("skipped", "no_address")
    subject, template, body = email.subject, email.template, email.body
    language, translation = _language(job, email.translations)
    for override in (job.chosen(email.variants), translation):
        if override is not None:
            subject = override.subject or subject
            if override.template or override.body:
                template, body = override.template, override.body
    names = variables(job)
    record = _message(job, "email", to, language, subject=_text(job, subject, names),
                      body=_body(job, template, body, names))
    bcc = job.settings.channels.email.bcc
    if bcc:
        record["bcc"] = bcc
    if email.attachments:  # the step's list, for every language (campaigns.attachments)
        try:
            record["attachments"] = describe(job.templates_dir.parent, email.attachments, job.settings)
        except AttachmentError as exc:
            return Effects("failed", "attachment_error", detail={"error": str(exc)})
    html = bool(template) and template.lower().removesuffix(".j2").endswith((".html", ".htm"))
    return Effects("executed", messages=(decorate(record, job.links, html, unsubscribe=not job.transactional),),
                   detail=_detail(job, message=job.message_id), html=html)


def _sms(job: Job, sms: Sms) -> Effects:
    to = _address(job, "phone")
    if to is None:
        return Effects("skipped", "no_address")
    language, translation = _language(job, sms.translations)
    version = job.chosen(sms.variants)
    text = translation.text if translation is not None else (version.text if version and version.text else sms.text)
    record = _message(job, "sms", to, language, body=_text(job, text, variables(job)))
    return Effects("executed", messages=(record,), detail=_detail(job, message=job.message_id))


def _letter(job: Job, letter: Letter) -> Effects:
    version = job.chosen(letter.variants)
    template = version.template if version is not None and version.template else letter.template
    body = templates.render_file(template, variables(job), job.templates_dir)
    row = {"id": job.message_id, "campaign": job.campaign_id, "step": job.step.id, "partner": job.partner_id,
           "channel": "letter", "at": job.stamp, "language": DEFAULT_LANGUAGE, "body": body}
    if job.variant is not None:
        row["variant"] = job.variant
    return Effects("executed", messages=(row,), detail=_detail(job, message=job.message_id))


def _popup(job: Job, popup: Popup) -> Effects:
    language, translation = _language(job, popup.translations)
    names = variables(job)
    title, body = popup.title, popup.body
    for override in (job.chosen(popup.variants), translation):
        if override is not None:
            title, body = override.title or title, override.body or body
    record = {"id": job.message_id, "enrollment": job.enrollment_id, "campaign": job.campaign_id,
              "step": job.step.id, "partner": job.partner_id, "pages": list(popup.pages),
              "title": _text(job, title, names), "body": _text(job, body, names), "language": language,
              "at": job.stamp, "variant": job.variant}
    return Effects("executed", popup=record, detail=_detail(job, popup=job.message_id))


def _activity(job: Job, activity: Activity) -> Effects:
    names = variables(job)
    record = {"id": job.message_id, "enrollment": job.enrollment_id, "campaign": job.campaign_id,
              "step": job.step.id, "partner": job.partner_id, "kind": activity.kind,
              "assignee": _text(job, activity.assignee, names) or None,
              "subject": _text(job, activity.subject, names) or None,
              "responses": {key: {"result": r.result, "follow_up": r.follow_up, **({"goto": r.goto} if r.goto else {})}
                            for key, r in activity.responses.items()},
              "at": job.stamp}
    return Effects("executed", activity=record, detail={"activity": job.message_id})


_EXECUTORS = {"email": _email, "sms": _sms, "letter": _letter, "popup": _popup, "activity": _activity}
