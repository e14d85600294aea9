"""The parts of a campaign and of engine.yaml as the engine runs them, without pydantic.

Every model of :mod:`campaigns.model` has its class here as its first base: the class the
runtime names (``isinstance(step, Wait)``) and that carries the model's behaviour (``step.kind``,
``campaign.action_steps``, ``model.span("field")``). The models add the fields and their
validation. A workspace loaded from its files is made of the models; one read back from the
plan cache (:mod:`engine.plan_cache`) is made of these classes themselves (:func:`restore`), with
the same attributes, so a tick that finds its files unchanged never imports pydantic.

So the fields of a part are written once, in campaigns.model, and what the engine does with a
part once, here.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, Mapping

from dsl.source import Span

if TYPE_CHECKING:
    from .flow import Flow

STEP_KINDS = ("email", "sms", "popup", "activity", "letter")
END = "end"  # the jump target that finishes an enrollment
ACTIVITY_KINDS = ("call", "meeting", "survey", "work_order", "task")
MESSAGE_KINDS = ("email", "sms", "popup", "letter")  # the steps that are messages: capped, held out, kept quiet
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_RESULTS = ("successful", "unsuccessful", "postponed", "failed")  # what a response may record, by default


class Located:
    """A part that knows the document and path it was written at."""

    def _key(self, field: str) -> str:
        """The name ``field`` has in the file (``from_`` is written ``from``)."""
        fields = getattr(type(self), "model_fields", None)  # a model's; a restored part has its own table
        if fields is not None:
            info = fields.get(field)
            return info.alias if info is not None and info.alias else field
        return self.__dict__.get("_aliases", {}).get(field, field)

    def span(self, field: str | None = None) -> Span:
        """Where this part (or one of its fields, by name or alias) is written."""
        if self._document is None:
            return Span("<memory>", 0, 0)
        if field is None:
            return self._document.span(self._path)
        return self._document.span(self._path + (self._key(field),))

    def key_span(self, field: str) -> Span:
        if self._document is None:
            return Span("<memory>", 0, 0)
        return self._document.key_span(self._path + (self._key(field),))

    @property
    def document(self) -> Any:
        return self._document

    @property
    def path(self) -> tuple:
        return self._path


def restore(cls: type, values: Mapping[str, Any], document: Any, path: tuple, aliases: Mapping[str, str]) -> Any:
    """A part as the plan cache stores a model: an instance of the model's class here with the
    model's field values (how :mod:`engine.plan_cache` unpickles one)."""
    part = cls.__new__(cls)
    part.__dict__.update(values)
    part.__dict__.update(_document=document, _path=path, _aliases=aliases)
    return part


# --- engine.yaml -------------------------------------------------------------------------------


class PartnerSettings(Located):
    def types(self) -> dict:
        """The schema as :class:`dsl.types.Type` values, the id field included as a string. A
        field of an unknown type is ``any``: its expressions raise no second error. Worked out
        once (every tick asks); the caller gets its own copy."""
        return dict(self._types)

    @cached_property
    def _types(self) -> dict:
        from dsl.types import ANY, STRING, parse_field_type

        schema = {}
        for name, spec in self.fields.items():
            try:
                schema[name] = parse_field_type(spec)
            except ValueError:  # reported by type_problems()
                schema[name] = ANY
        schema.setdefault(self.id, STRING)
        return schema

    def type_problems(self) -> dict[str, str]:
        """Each field whose type is unknown, and why. Not a validator: a failed validator drops
        the whole ``fields`` mapping, and every field would become unknown; the workspace
        reports each at its own type instead."""
        from dsl.types import parse_field_type

        problems = {}
        for name, spec in self.fields.items():
            try:
                parse_field_type(spec, name)
            except ValueError as exc:
                problems[name] = str(exc)
        return problems


class ConsentSettings(Located):
    pass


class Channel(Located):
    pass


class Channels(Located):
    pass


class User(Located):
    pass


class Web(Located):
    pass


class Settings(Located):
    pass


# --- campaigns/*.yaml --------------------------------------------------------------------------


class Window(Located):
    pass


class Audience(Located):
    pass


class Trigger(Located):
    @property
    def kind(self) -> str | None:
        for k in ("audience", "at", "cron", "event"):
            if getattr(self, k) not in (None, False):
                return k
        return None


class Response(Located):
    pass


class EmailTranslation(Located):
    pass


class EmailVersion(EmailTranslation):
    pass


class Email(Located):
    pass


class SmsTranslation(Located):
    pass


class SmsVersion(Located):
    pass


class Sms(Located):
    pass


class PopupTranslation(Located):
    pass


class PopupVersion(PopupTranslation):
    pass


class Popup(Located):
    pass


class Question(Located):
    pass


class Activity(Located):
    pass


class LetterVersion(Located):
    pass


class Letter(Located):
    pass


class Step(Located):
    """A step that does something: exactly one of email, sms, popup, activity, letter."""

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    @property
    def action(self) -> Email | Sms | Popup | Activity | Letter:
        return getattr(self, self.kind)


class Until(Located):
    pass


class WaitFor(Located):
    pass


class Wait(Located):
    pass


class Case(Located):
    @property
    def target(self) -> str:
        return self.else_ if self.else_ is not None else self.goto  # type: ignore[return-value]


class Branch(Located):
    @property
    def kind(self) -> str:
        return "branch"


class SplitPath(Located):
    pass


class Split(Located):
    @property
    def kind(self) -> str:
        return "split"


class QuietHours(Located):
    pass


class Cap(Located):
    pass


class Policies(Located):
    pass


class Goal(Located):
    pass


class Monitor(Located):
    pass


class Campaign(Located):
    @property
    def action_steps(self) -> list[Step]:
        return [s for s in self.steps if isinstance(s, Step)]

    @cached_property
    def flow(self) -> "Flow":
        """The campaign's steps as a graph (:mod:`campaigns.flow`), built once (parts do not change)."""
        from .flow import Flow

        return Flow(self)
