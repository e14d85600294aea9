"""The domain model: workspace settings (engine.yaml) and campaigns (campaigns/*.yaml).

Pydantic models validate the shape of the files; :func:`build` turns a loaded YAML document
into a model and every validation problem into a diagnostic at the right line and column.
Every model remembers where it came from: ``model.span("field")``.

Each model's first base is its part in :mod:`campaigns.shapes`, which holds what the engine does
with it (``step.kind``, ``campaign.action_steps``) and is what the runtime names: a workspace
read back from the plan cache is made of those parts, without pydantic. Fields and their rules
are written here, once.

Expressions and templates are kept as text here; :mod:`campaigns.workspace` checks them
against the partner schema, where the names they may use are known.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from dsl.ids import check_slug, shown
from dsl.types import check_date, check_duration, parse_duration

from . import shapes
from .shapes import ACTIVITY_KINDS, DEFAULT_RESULTS, END, MESSAGE_KINDS, STEP_KINDS, WEEKDAYS  # noqa: F401 - theirs too

MAX_RESPONSES = 5
_CLOCK = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


class Located(shapes.Located, BaseModel):
    """A model that knows the document and path it was built from (``model.span("field")``)."""

    # defer_build: validators are built when a file is first validated, not at import (a plan
    # read from the cache validates nothing: engine.plan_cache)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)
    _document: Any = PrivateAttr(default=None)  # a Document; from the plan cache, one read when asked
    _path: tuple = PrivateAttr(default=())


# --- Small value types -------------------------------------------------------------------------

Expression = Annotated[
    str,
    BeforeValidator(lambda v: ("true" if v else "false") if isinstance(v, bool) else v),
    Field(description="A condition in the campaign expression language, e.g. partner.tier == \"gold\""),
]
TemplateText = Annotated[str, Field(description="jinja2 text; variables: partner, campaign, step, now, today")]


def _duration(value: Any) -> Any:
    """A duration is written with its unit, and is at most 100 years (see dsl.types)."""
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"'{value}' is not a duration such as 30m, 12h, 3d or 2w (write the unit)")
    return value


def _bounded_duration(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("a duration cannot be negative")
    problem = check_duration(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _bounded_date(value: date) -> date:
    """Dates and times in a campaign file are bounded like those in expressions (dsl.types)."""
    problem = check_date(value)
    if problem is not None:
        raise ValueError(f"{value.isoformat()} is out of range: {problem}")
    return value


BoundedDate = Annotated[date, AfterValidator(_bounded_date)]
BoundedDatetime = Annotated[datetime, AfterValidator(_bounded_date)]

Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    AfterValidator(_bounded_duration),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]+[mhdw]$", "examples": ["3d", "12h", "30m", "2w"]}),
]


def _percentage(value: Any) -> float:
    if isinstance(value, str) and value.strip().endswith("%"):
        value = value.strip()[:-1]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("a percentage such as 90%")
    try:
        number = float(value)
    except (ValueError, OverflowError):  # "ninety", or an integer of a hundred digits
        raise ValueError("a percentage such as 90%") from None
    if not 0 <= number <= 100:
        raise ValueError("a percentage between 0% and 100%")
    return number


Percentage = Annotated[
    float,
    BeforeValidator(_percentage),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": "^[0-9.]+%$"}, {"type": "number"}], "examples": ["90%"]}),
]


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        raise ValueError(f"unknown timezone {shown(value)} (use an IANA name such as Europe/Helsinki)") from None
    return value


Timezone = Annotated[str, BeforeValidator(lambda v: _timezone(v) if isinstance(v, str) else v)]


# --- engine.yaml -------------------------------------------------------------------------------


class PartnerSettings(shapes.PartnerSettings, Located):
    source: str = "partners.csv"
    id: str = "id"
    timezone_field: str | None = Field(
        default=None, description="a string field holding the partner's IANA timezone: their local times use it")
    fields: dict[str, Any] = Field(default_factory=dict, description="field name: string | number | int | bool | date | datetime | list[string] | list[number] | list[int] | {enum: [...]}")


class ConsentSettings(shapes.ConsentSettings, Located):
    email: Expression | None = None
    sms: Expression | None = None
    terms_opt_in: list[Literal["email", "sms"]] = Field(default_factory=list)


class Channel(shapes.Channel, Located):
    transport: Literal["file", "smtp", "webhook"] = "file"
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    from_: str | None = Field(default=None, alias="from")
    bcc: str | list[str] | None = None
    starttls: bool = False
    username_env: str | None = None
    password_env: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _transport_needs(self) -> "Channel":
        if self.transport == "smtp" and not (self.host and self.from_):
            raise ValueError("the smtp transport needs 'host' and 'from'")
        if self.transport == "webhook" and not self.url:
            raise ValueError("the webhook transport needs 'url'")
        return self


class Channels(shapes.Channels, Located):
    email: Channel = Field(default_factory=Channel)
    sms: Channel = Field(default_factory=Channel)

    @model_validator(mode="after")
    def _sms_is_not_mail(self) -> "Channels":
        if self.sms.transport == "smtp":
            raise ValueError("SMS cannot go through smtp: use transport webhook (or file)")
        return self


class User(shapes.User, Located):
    roles: list[Literal["marketing", "events", "viewer"]] = Field(default_factory=list)


def _base_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ValueError(f"base_url must be an http(s) address such as https://campaigns.example.com, not {shown(value)}")
    return value.rstrip("/")


ORIGIN_PATTERN = r"^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"


def _origin(value: str) -> str:
    """An origin for a Content-Security-Policy (``frame-ancestors``): scheme, host, port; no path,
    so nothing else can slip into the policy."""
    origin = value.rstrip("/")
    port = origin.rpartition(":")[2]
    if not re.fullmatch(ORIGIN_PATTERN, origin) or (port.isdigit() and not 1 <= int(port) <= 65535):
        raise ValueError(f"an origin is http(s)://host with an optional :port and no path, such as "
                         f"https://portal.example.com, not {shown(value)}")
    return origin


Origin = Annotated[str, AfterValidator(_origin),
                   WithJsonSchema({"type": "string", "pattern": ORIGIN_PATTERN.replace("$", "/?$"),
                                   "examples": ["https://portal.example.com"]})]


class Web(shapes.Web, Located):
    """engine.yaml's ``web``: the public address of ``engine serve`` and what links messages carry."""

    base_url: Annotated[str, AfterValidator(_base_url)] | None = Field(
        default=None, description="the public address used in links inside messages, e.g. https://campaigns.example.com")
    secret_env: str = Field(default="ENGINE_SECRET", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                            description="environment variable holding the key that signs links and cookies")
    tracking: bool = Field(default=True, description="open pixel and click redirects in HTML email")
    unsubscribe_mailto: str | None = Field(default=None, pattern=r"^[^\s<>@,]+@[^\s<>@,]+$",
                                           description="a second List-Unsubscribe target (an address)")
    frame_ancestors: list[Origin] = Field(
        default_factory=list, description="origins whose pages may show the partner's message center in an iframe, "
                                          "e.g. https://portal.example.com (none: it may not be framed)")


class Settings(shapes.Settings, Located):
    """engine.yaml: the workspace's settings."""

    timezone: Timezone = "UTC"
    store: str = "sqlite:///.engine/state.db"
    partners: PartnerSettings = Field(default_factory=PartnerSettings)
    consent: ConsentSettings = Field(default_factory=ConsentSettings)
    exclude: Expression | None = None
    channels: Channels = Field(default_factory=Channels)
    users: dict[str, User] = Field(default_factory=dict)
    web: Web = Field(default_factory=Web)
    policies: "Policies" = Field(default_factory=lambda: Policies())
    results: list[str] = Field(
        default_factory=lambda: list(DEFAULT_RESULTS), min_length=1,
        description="the results a response may record (default: successful, unsuccessful, postponed, failed)")


# --- campaigns/*.yaml --------------------------------------------------------------------------


class Window(shapes.Window, Located):
    start: BoundedDate | None = None
    end: BoundedDate | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "Window":
        if self.start and self.end and self.end < self.start:
            raise ValueError("the window ends before it starts")
        return self


class Audience(shapes.Audience, Located):
    rulesets: dict[str, Expression] = Field(default_factory=dict, description="a partner matches if ANY ruleset matches")
    groups: list[str] = Field(default_factory=list, description="static target groups (groups/NAME.csv)")
    exclude: Expression | None = None
    dedupe: list[Literal["email", "company"]] = Field(default_factory=list)
    include_test: bool = True
    include_inactive: bool = Field(False, description="also partners whose `active` field is false (when the partner schema has one)")


class Trigger(shapes.Trigger, Located):
    audience: bool | None = None
    at: BoundedDatetime | None = None
    cron: str | None = None
    event: str | None = None
    when: Expression | None = None

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None:
            from croniter import croniter

            if not croniter.is_valid(value):
                raise ValueError(f"'{value}' is not a valid cron expression (e.g. \"0 9 * * MON\")")
            if len(value.split()) != 5:  # croniter also reads seconds and years: at most once a minute
                raise ValueError(f"'{value}' is not a cron expression of five fields: minute hour day month weekday")
        return value

    @field_validator("event")
    @classmethod
    def _event_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", value):
            raise ValueError(f"'{value}' is not an event name such as invoice.payment_failed")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> "Trigger":
        kinds = [k for k in ("audience", "at", "cron", "event") if getattr(self, k) not in (None, False)]
        if len(kinds) > 1:
            raise ValueError(f"a trigger has at most one kind, this one has {', '.join(kinds)}")
        if self.when is not None and self.event is None:
            raise ValueError("'when' is only allowed with an event trigger")
        return self


class Response(shapes.Response, Located):
    result: str = Field(description="one of engine.yaml's results (default: successful, unsuccessful, postponed, failed)")
    follow_up: str | None = None
    goto: str | None = Field(default=None, description="a later step of this campaign (or end) to move the enrollment to")


def _at_most_five(responses: dict) -> dict:
    if len(responses) > MAX_RESPONSES:
        raise ValueError(f"at most {MAX_RESPONSES} responses per step, this one has {len(responses)}")
    return responses


Responses = Annotated[dict[str, Response], AfterValidator(_at_most_five)]
"""What the partner may answer (an activity's outcome, or a reply to a mailing): key → result."""


def _weights(options: dict) -> dict:
    """Variants and split paths: keys are slugs, weights whole numbers, at least one above 0."""
    for key in options:
        problem = check_slug(key, "variant key")
        if problem is not None:
            raise ValueError(problem)
    if options and sum(option.weight for option in options.values()) == 0:
        raise ValueError("the weights add up to 0: give at least one a weight above 0")
    return options


Weight = Annotated[int, Field(ge=0, le=1_000_000, description="a whole number; the share is weight / the sum of the weights")]


class EmailTranslation(shapes.EmailTranslation, Located):
    subject: TemplateText | None = None
    template: str | None = None
    body: TemplateText | None = None


class EmailVersion(shapes.EmailVersion, EmailTranslation):
    """One variant of an email step: its weight, and what it says differently."""

    weight: Weight


class Email(shapes.Email, Located):
    subject: TemplateText
    template: str | None = None
    body: TemplateText | None = None
    attachments: list[str] = Field(
        default_factory=list, examples=[["files/price-list.pdf"]],
        description="files sent with every language's message, by their path inside the workspace; at most 10 "
                    "files and 10 MB (10,485,760 bytes) per message, all together")
    translations: dict[str, EmailTranslation] = Field(default_factory=dict)
    variants: Annotated[dict[str, EmailVersion], AfterValidator(_weights)] = Field(
        default_factory=dict, description="an experiment: each variant overrides subject, template or body")
    responses: Responses = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_body(self) -> "Email":
        if (self.template is None) == (self.body is None):
            raise ValueError("an email needs exactly one of 'template' or 'body'")
        return self


class SmsTranslation(shapes.SmsTranslation, Located):
    text: TemplateText


class SmsVersion(shapes.SmsVersion, Located):
    weight: Weight
    text: TemplateText | None = None


class Sms(shapes.Sms, Located):
    text: TemplateText
    translations: dict[str, SmsTranslation] = Field(default_factory=dict)
    variants: Annotated[dict[str, SmsVersion], AfterValidator(_weights)] = Field(
        default_factory=dict, description="an experiment: each variant overrides the text")
    responses: Responses = Field(default_factory=dict)


class PopupTranslation(shapes.PopupTranslation, Located):
    title: TemplateText | None = None
    body: TemplateText | None = None


class PopupVersion(shapes.PopupVersion, PopupTranslation):
    weight: Weight


class Popup(shapes.Popup, Located):
    pages: list[str] = Field(min_length=1)
    title: TemplateText
    body: TemplateText
    translations: dict[str, PopupTranslation] = Field(default_factory=dict)
    variants: Annotated[dict[str, PopupVersion], AfterValidator(_weights)] = Field(
        default_factory=dict, description="an experiment: each variant overrides title or body")


class Question(shapes.Question, Located):
    id: str
    text: str
    answers: list[str] = Field(default_factory=list)


class Activity(shapes.Activity, Located):
    kind: Literal["call", "meeting", "survey", "work_order", "task"]
    assignee: TemplateText | None = None
    subject: TemplateText | None = None
    responses: Responses = Field(default_factory=dict)
    questions: list[Question] = Field(default_factory=list)

    @model_validator(mode="after")
    def _questions_in_surveys(self) -> "Activity":
        if self.questions and self.kind != "survey":
            raise ValueError(f"only a survey has questions, this activity is a {self.kind}")
        ids = [q.id for q in self.questions]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"question id '{repeated[0]}' is used twice")
        return self


class LetterVersion(shapes.LetterVersion, Located):
    weight: Weight
    template: str | None = None


class Letter(shapes.Letter, Located):
    template: str
    variants: Annotated[dict[str, LetterVersion], AfterValidator(_weights)] = Field(
        default_factory=dict, description="an experiment: each variant may use another template")


def _step_id(value: Any) -> Any:
    problem = check_slug(value, "step id")
    if problem is not None:
        raise ValueError(problem)
    if value == END:
        raise ValueError(f"'{END}' is not a step id: it is the jump target that finishes the enrollment")
    return value


def _old_ids(value: Any) -> Any:
    """``renamed_from: old`` or a list of the ids a step had, oldest renames included."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise ValueError("renamed_from takes the step's old id, or a list of old ids")
    return tuple(_step_id(name) for name in names)


StepId = Annotated[str, AfterValidator(_step_id)]
OldIds = Annotated[tuple[str, ...], BeforeValidator(_old_ids),
                   WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})]
Target = Annotated[str, Field(description="a later step id of this campaign, or end")]


class Step(shapes.Step, Located):
    """A step that does something: exactly one of email, sms, popup, activity, letter."""

    id: StepId
    renamed_from: OldIds = ()
    when: Expression | None = None
    email: Email | None = None
    sms: Sms | None = None
    popup: Popup | None = None
    activity: Activity | None = None
    letter: Letter | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Step":
        kinds = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"a step needs exactly one of {', '.join(STEP_KINDS)} (found {found})")
        return self


class Until(shapes.Until, Located):
    until: str

    @field_validator("until")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.fullmatch(value):
            raise ValueError(f"'{value}' is not a local time such as \"09:00\"")
        return value


class WaitFor(shapes.WaitFor, Located):
    """``wait: {for: EXPR, at_most: 3d}``: until a tick sees EXPR hold, at most that long."""

    for_: Expression = Field(alias="for", description="the condition that ends the wait at the first tick it holds")
    at_most: Duration = Field(description="the longest wait, counted from when the wait began")


def _wait_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "until" if "until" in value else "for"
    return "duration"


class Wait(shapes.Wait, Located):
    """A pause between steps: a duration, until a local time, or until a condition holds."""

    id: StepId | None = None
    renamed_from: OldIds = ()
    wait: Annotated[
        Annotated[Duration, Tag("duration")] | Annotated[Until, Tag("until")] | Annotated[WaitFor, Tag("for")],
        Discriminator(_wait_tag),
    ]

    @field_validator("wait", mode="before")
    @classmethod
    def _int_minutes(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f"'{value}' is not a duration such as 30m, 12h, 3d or 2w (write the unit)")
        return value

    @model_validator(mode="after")
    def _renames_need_an_id(self) -> "Wait":
        if self.renamed_from and self.id is None:
            raise ValueError("renamed_from needs the wait's own id")
        return self


class Case(shapes.Case, Located):
    """One case of a branch: ``{when: EXPR, goto: STEP}``, or the last one, ``{else: STEP}``."""

    when: Expression | None = None
    goto: Target | None = None
    else_: Target | None = Field(default=None, alias="else")

    @model_validator(mode="after")
    def _shape(self) -> "Case":
        if self.else_ is not None and (self.when is not None or self.goto is not None):
            raise ValueError("an else case has only 'else: STEP'")
        if self.else_ is None and (self.when is None or self.goto is None):
            raise ValueError("a branch case needs 'when' and 'goto' (or is the last one, 'else: STEP')")
        return self


class Branch(shapes.Branch, Located):
    """``branch``: the first case whose ``when`` holds at the step's due time wins; none: the next step."""

    id: StepId
    renamed_from: OldIds = ()
    branch: list[Case] = Field(min_length=1)

    @field_validator("branch")
    @classmethod
    def _else_last(cls, cases: list[Case]) -> list[Case]:
        for case in cases[:-1]:
            if case.else_ is not None:
                raise ValueError("'else' is the last case of a branch")
        return cases


class SplitPath(shapes.SplitPath, Located):
    """One path of a split: its weight, and where it goes (none: on with the next step)."""

    weight: Weight
    goto: Target | None = None


class Split(shapes.Split, Located):
    """``split``: partners divided between paths by weight, by the same hash as variants."""

    id: StepId
    renamed_from: OldIds = ()
    split: Annotated[dict[str, SplitPath], AfterValidator(_weights)] = Field(min_length=1)


def _step_tag(value: Any) -> str:
    if isinstance(value, dict):
        for kind in ("wait", "branch", "split"):
            if kind in value:
                return kind
    return "step"


AnyStep = Annotated[
    Annotated[Step, Tag("step")] | Annotated[Wait, Tag("wait")] | Annotated[Branch, Tag("branch")]
    | Annotated[Split, Tag("split")],
    Discriminator(_step_tag),
]


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _send_days(days: list[str]) -> list[str]:
    if not days:
        raise ValueError("send_days needs at least one day, such as [mon, tue, wed, thu, fri]")
    repeated = sorted({d for d in days if days.count(d) > 1}, key=WEEKDAYS.index)
    if repeated:
        raise ValueError(f"'{repeated[0]}' is listed twice")
    return days


SendDays = Annotated[list[Weekday], AfterValidator(_send_days)]


class QuietHours(shapes.QuietHours, Located):
    """Partner-local hours in which no message goes out: ``{from: "21:00", to: "08:00"}`` is
    overnight (from 21:00 until 08:00 the next morning); equal times are no quiet hours."""

    from_: str = Field(alias="from", description="local time the quiet hours begin, e.g. \"21:00\"")
    to: str = Field(description="local time they end, e.g. \"08:00\" (the next morning if before 'from')")

    @field_validator("from_", "to")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not isinstance(value, str) or not _CLOCK.fullmatch(value):
            raise ValueError(f"'{value}' is not a local time such as \"21:00\"")
        return value


class Cap(shapes.Cap, Located):
    """At most ``max`` messages of a channel to one partner in any ``per``, across campaigns."""

    max: int = Field(ge=1, le=1_000_000)
    per: Duration

    @field_validator("per")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("a cap counts over a positive duration, such as 7d")
        return value


class Policies(shapes.Policies, Located):
    """engine.yaml's ``policies``: what every campaign's messages obey (a campaign may override
    quiet hours and send days, and a transactional campaign ignores them all)."""

    frequency: dict[Literal["email", "sms", "popup", "letter"], Cap] = Field(
        default_factory=dict, description="per partner, across all campaigns, by channel: {max, per}")
    on_cap: Literal["skip", "defer"] = Field(
        "skip", description="skip the capped step (reason frequency_cap), or defer it until a slot frees")
    quiet_hours: QuietHours | None = None
    send_days: SendDays | None = None


class Goal(shapes.Goal, Located):
    """What counts as converted: an expression that comes to hold, or an event."""

    when: Expression | None = None
    event: str | None = None
    where: Expression | None = Field(default=None, description="with an event goal: a condition on the event")
    within: Duration | None = Field(default=None, description="counted from the enrollment, e.g. 30d (none: any time)")
    exit: bool = Field(True, description="a converted enrollment finishes (reason goal)")

    @field_validator("event")
    @classmethod
    def _event_name(cls, value: str | None) -> str | None:
        return Trigger._event_name(value)

    @model_validator(mode="after")
    def _one_kind(self) -> "Goal":
        if (self.when is None) == (self.event is None):
            raise ValueError("a goal needs exactly one of 'when' (a condition) or 'event' (an event name)")
        if self.where is not None and self.event is None:
            raise ValueError("'where' is only allowed with an event goal")
        return self


class Monitor(shapes.Monitor, Located):
    in_campaign_min: Percentage = 90.0
    alert: list[str] = Field(default_factory=list)

    @field_validator("alert", mode="before")
    @classmethod
    def _one_address(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Campaign(shapes.Campaign, Located):
    """One campaign file. The file name (without .yaml) is the campaign's id."""

    name: str | None = None
    description: str | None = None
    owner: str | None = None
    active: bool = True
    window: Window | None = None
    timezone: Timezone | None = None
    audience: Audience = Field(default_factory=Audience)
    trigger: Trigger | None = None
    reenroll: Literal["never", "after_exit"] | Duration = "never"
    exclusive: bool = False
    previously_treated: Literal["exclude", "include"] | Duration = "exclude"
    exit_when: Expression | None = None
    exit_on_audience_loss: bool = False
    steps: list[AnyStep] = Field(default_factory=list)
    monitor: Monitor = Field(default_factory=Monitor)
    holdout: Percentage | None = Field(
        default=None, description="this share of partners is enrolled but every message step is skipped (reason holdout)")
    goal: Goal | None = None
    quiet_hours: QuietHours | None = Field(default=None, description="instead of engine.yaml's policies.quiet_hours")
    send_days: SendDays | None = Field(default=None, description="instead of engine.yaml's policies.send_days")
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000,
                          description="of one partner's steps due at one instant, a higher priority's go first")
    transactional: bool = Field(
        default=False, description="receipts and notices: no consent, caps, quiet hours or send days; no unsubscribe link")

    @field_validator("reenroll", mode="before")
    @classmethod
    def _reenroll(cls, value: Any) -> Any:
        wrong = f"reenroll is never, after_exit or a duration such as 90d, not '{value}'"
        if isinstance(value, str) and value not in ("never", "after_exit"):
            if re.fullmatch(r"\s*[0-9]+[mhdw]\s*", value):
                return parse_duration(value)  # a duration, or why it is too long
            raise ValueError(wrong)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(wrong)
        return value

    @field_validator("previously_treated", mode="before")
    @classmethod
    def _previously_treated(cls, value: Any) -> Any:
        """exclude, include, or a duration (30d): how long ago another exclusive campaign must
        have ended for its partners to enter this one."""
        if isinstance(value, timedelta) or value in ("exclude", "include"):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+[mhdw]\s*", value):
            return parse_duration(value)  # a duration, or why it is too long
        shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else value
        raise ValueError(f"previously_treated is exclude, include or a duration such as 30d, not '{shown}'")
