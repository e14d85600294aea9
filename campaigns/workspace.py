"""Load a whole workspace into models plus diagnostics: the one entry point the engine calls.

Loading never stops at the first problem: every file is read, every campaign is checked, and
all diagnostics are collected. A campaign file with errors is left out of ``campaigns`` (it is
not run); the others are kept.
"""

from __future__ import annotations

import contextlib
import csv
import gc
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Iterable, Iterator
from zoneinfo import ZoneInfo

from dsl import templates
from dsl.checker import Scope, check_text
from dsl.functions import inputs
from dsl.nodes import Name
from dsl.parser import parse
from dsl.diagnostics import Diagnostic, SourceError, did_you_mean, error, warning
from dsl.ids import check_slug, shown
from dsl.partner_check import PartnerCheck, check_partner_source
from dsl.source import SourceText
from dsl.types import BOOL, MAX_DURATION, MAX_DURATION_DAYS, Type, record
from dsl.yamlload import Document, load_yaml

from .attachments import check_attachments
from .flow import END, Flow, Jump, Node, flow_of
from .building import build, salvage
from .loaded import CampaignFile, Workspace  # what loading gives (also read from the plan cache)
from .model import Branch, Campaign, Email, Located, Popup, Settings, Sms, Step, Wait, WaitFor

SETTINGS_FILE = "engine.yaml"


def find_root(path: Path) -> Path | None:
    """The workspace directory that holds ``path``: the nearest one with an engine.yaml."""
    path = path.resolve()
    for candidate in [path, *path.parents] if path.is_dir() else list(path.parents):
        if (candidate / SETTINGS_FILE).is_file():
            return candidate
    return None


def load_workspace(root: Path | str, only: Iterable[Path] | None = None, check_partners: bool = True) -> Workspace:
    """Load and check the workspace at ``root``; ``only`` limits the campaign files checked."""
    with _without_gc_pauses():
        return _load_workspace(Path(root), only, check_partners)


@contextlib.contextmanager
def _without_gc_pauses() -> Iterator[None]:
    """Loading builds many small objects that all stay alive; the cyclic garbage collector
    would scan them again and again for nothing (it made loading three times slower)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_workspace(root: Path, only: Iterable[Path] | None, check_partners: bool) -> Workspace:
    diagnostics: list[Diagnostic] = []
    settings_document, settings = _load_settings(root, diagnostics)
    schema = _schema(settings, settings_document, diagnostics)
    groups = _groups(root, diagnostics)
    wanted = {p.resolve() for p in only} if only is not None else None
    campaign_paths = sorted(p for p in (root / "campaigns").glob("*.y*ml") if p.suffix in (".yaml", ".yml") and p.is_file())
    campaign_ids = tuple(p.stem for p in campaign_paths)
    files: dict[str, CampaignFile] = {}
    partner_type = record(schema)
    consented = frozenset(c for c in ("email", "sms") if getattr(settings.consent, c) is not None)
    checked_templates: set[str] = set()
    included_templates: set[str] = set()
    for path in campaign_paths:
        if wanted is not None and path.resolve() not in wanted:
            continue
        file, checkable = _load_campaign(path)
        if checkable is not None:
            context = _Context(root, partner_type, tuple(groups), campaign_ids, consented, checked_templates, included_templates,
                               settings.web.base_url)
            file.diagnostics.extend(check_campaign(checkable, context))
            file.diagnostics.extend(_check_results(checkable, settings.results))
            file.diagnostics.extend(check_attachments(checkable, root, settings))  # issue 12: campaigns/attachments.py
        if file.id in files:  # x.yaml and x.yml: the later one replaces the first, and has an error
            message = f"campaign id '{file.id}' is also that of {files[file.id].path.name}: neither runs until one is renamed"
            file.diagnostics.append(error(SourceText(str(path), "").span(0), message))
        files[file.id] = file
        diagnostics.extend(file.diagnostics)
    if settings_document is not None:
        scope = Scope(partner=partner_type, groups=tuple(groups), campaigns=campaign_ids)
        diagnostics.extend(_check_settings_expressions(settings, scope))
    has_settings = (root / SETTINGS_FILE).is_file()
    partners = _partners(root, settings, diagnostics) if check_partners and has_settings else None
    diagnostics = sorted(set(diagnostics), key=lambda d: (d.span.path, d.span.line, d.span.col, d.message))
    return Workspace(root, settings, schema, files, groups, partners, diagnostics)


# --- engine.yaml -------------------------------------------------------------------------------


def _load_settings(root: Path, diagnostics: list[Diagnostic]) -> tuple[Document | None, Settings]:
    path = root / SETTINGS_FILE
    if not path.is_file():
        diagnostics.append(error(SourceText(str(path), "").span(0), f"no {SETTINGS_FILE} in {root}: not a workspace"))
        return None, Settings()
    document = _read_yaml(path, diagnostics)
    if document is None:
        return None, Settings()
    settings, problems = build(Settings, document)
    diagnostics.extend(problems)
    return document, settings or salvage(Settings, document) or Settings()


def _schema(settings: Settings, document: Document | None, diagnostics: list[Diagnostic]) -> dict[str, Type]:
    """The partner schema. A field of an unknown type is one error, at its type, and reads as
    ``any``: the other fields stay known, so the expressions using them are still checked."""
    partners = settings.partners
    for name, problem in partners.type_problems().items():
        where = partners.document
        at = where.span(partners.path + ("fields", name)) if where is not None else settings.span()
        diagnostics.append(error(at, problem))
    types = partners.types()
    zone_field = partners.timezone_field
    if zone_field is not None and partners.document is not None:
        at = partners.span("timezone_field")
        if zone_field not in types:
            diagnostics.append(error(at, f"timezone_field names no partner field: '{zone_field}' is not in "
                                         f"partners.fields{did_you_mean(zone_field, list(types))}"))
        elif types[zone_field].kind not in ("string", "enum", "any"):
            diagnostics.append(error(at, f"timezone_field '{zone_field}' must be a string field holding an IANA "
                                         f"zone such as Europe/Helsinki, not a {types[zone_field]} field"))
    return types


def _check_settings_expressions(settings: Settings, scope: Scope) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for owner, name in ((settings.consent, "email"), (settings.consent, "sms"), (settings, "exclude")):
        found.extend(_expression(owner, name, scope))
    return found


def _groups(root: Path, diagnostics: list[Diagnostic]) -> dict[str, Path]:
    """The group files; only their header is read (a group may list every partner)."""
    groups: dict[str, Path] = {}
    for path in sorted(p for p in (root / "groups").glob("*.csv") if p.is_file()):
        groups[path.stem] = path
        with path.open(encoding="utf-8", errors="replace") as file:
            header = next(csv.reader(file), [])
        if "id" not in [h.strip() for h in header]:
            diagnostics.append(error(SourceText(str(path), "").span(0), "a group file needs an 'id' column"))
    return groups


def _partners(root: Path, settings: Settings, diagnostics: list[Diagnostic]) -> PartnerCheck | None:
    """The partner source checked as the import reads it, streaming: no record is kept."""
    path = root / settings.partners.source
    if not path.is_file():
        span = settings.partners.span("source") if settings.partners.document else SourceText(str(root / SETTINGS_FILE), "").span(0)
        diagnostics.append(error(span, f"partner source '{settings.partners.source}' not found"))
        return None
    source = check_partner_source(str(path), settings.partners.types(), settings.partners.id, ZoneInfo(settings.timezone))
    diagnostics.extend(source.diagnostics)
    return source


def _read_yaml(path: Path, diagnostics: list[Diagnostic]) -> Document | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        diagnostics.append(error(SourceText(str(path), "").span(0), f"not UTF-8 text: {exc.reason}"))
        return None
    try:
        return load_yaml(str(path), text)
    except SourceError as exc:
        diagnostics.extend(exc.diagnostics)
        return None


# --- campaigns/*.yaml --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    root: Path
    partner: Type
    groups: tuple[str, ...]
    campaigns: tuple[str, ...]
    consented_channels: frozenset[str]  # channels with a consent expression in engine.yaml
    checked_templates: set[str]  # template files checked as a campaign's template
    included_templates: set[str]  # template files checked as included by another template
    base_url: str | None = None  # engine.yaml's web.base_url: emails carry signed links

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"


def _load_campaign(path: Path) -> tuple[CampaignFile, Campaign | None]:
    """The file, and the campaign to run the workspace checks on: the file's campaign, or
    when it has shape errors, what can be salvaged of it (checked, never run)."""
    file = CampaignFile(path.stem, path)
    file.diagnostics.extend(_campaign_id(path))
    document = _read_yaml(path, file.diagnostics)
    if document is None:
        return file, None
    file.campaign, problems = build(Campaign, document)
    file.diagnostics.extend(problems)
    return file, file.campaign or salvage(Campaign, document)


def _campaign_id(path: Path) -> list[Diagnostic]:
    """The file name is the campaign id, and ids go into message ids and file names: one that
    breaks the id rule (dsl.ids) is an error at the top of the file, and the campaign does not
    run (the file is still checked, so every other problem shows too)."""
    problem = check_slug(path.stem, "campaign id")
    if problem is None:
        return []
    span = SourceText(str(path), "").span(0)
    return [error(span, f"{problem}: the file name is the campaign id, rename the file")]


def check_campaign(campaign: Campaign, context: _Context) -> list[Diagnostic]:
    """Everything about a well-formed campaign that needs the rest of the workspace."""
    found: list[Diagnostic] = []
    steps = campaign.action_steps
    step_ids = _step_ids(campaign)
    scope = Scope(partner=context.partner, steps=step_ids, groups=context.groups, campaigns=context.campaigns,
                  variant_steps=tuple(s.id for s in steps if getattr(s.action, "variants", None)),
                  splits=tuple(s.id for s in campaign.steps if getattr(s, "kind", None) == "split"))
    audience = campaign.audience
    for name in audience.rulesets:
        found.extend(_expression(audience, name, scope, container="rulesets"))
    found.extend(_expression(audience, "exclude", scope))
    found.extend(_expression(campaign, "exit_when", scope))
    if campaign.trigger is not None:
        found.extend(_expression(campaign.trigger, "when", replace(scope, event=True)))
    if campaign.goal is not None:
        found.extend(_expression(campaign.goal, "when", scope))
        found.extend(_expression(campaign.goal, "where", replace(scope, event=True)))
    for i, group in enumerate(audience.groups):
        if group not in context.groups:
            span = audience.document.span(audience.path + ("groups", i))
            found.append(error(span, f"unknown group '{group}' (no groups/{group}.csv){did_you_mean(group, context.groups)}"))
    found.extend(_check_ids(campaign))
    found.extend(check_flow(campaign, scope))
    for step in steps:
        found.extend(_expression(step, "when", scope))
        found.extend(_check_step(step, context, step_ids))
        if step.kind in ("email", "sms") and step.kind not in context.consented_channels:
            found.append(warning(step.key_span(step.kind), f"engine.yaml has no consent expression for {step.kind}: "
                                 "only partners who opted in through the consent ledger will get this step"))
    found.extend(_check_window(campaign))
    found.extend(_check_monitor(campaign))
    found.extend(_check_waits(campaign))
    if not campaign.transactional:  # receipts and notices carry no unsubscribe link
        found.extend(_check_unsubscribe_links(steps, context))
    found.extend(_check_experiments(campaign))
    return found


def _check_experiments(campaign: Campaign) -> list[Diagnostic]:
    """Warnings for experiment and policy settings that quietly do less than they seem to: a
    transactional campaign's own quiet hours or send days (it has none) or holdout (its
    receipts withheld), and a variant whose field a translation replaces for its language."""
    found: list[Diagnostic] = []
    if campaign.transactional:
        for key in ("quiet_hours", "send_days"):
            if getattr(campaign, key) is not None:
                found.append(warning(campaign.key_span(key), f"a transactional campaign ignores {key}: its messages "
                                     "go at their due time"))
        if campaign.holdout:
            found.append(warning(campaign.key_span("holdout"), "this transactional campaign holds out "
                                 f"{campaign.holdout:g}% of its partners: they get none of its messages"))
    for step in campaign.action_steps:
        action = step.action
        translations = getattr(action, "translations", None) or {}
        for key, version in (getattr(action, "variants", None) or {}).items():
            varied = {name for name in version.model_fields_set if name != "weight"}
            for language, translation in translations.items():
                shadowed = sorted(varied & translation.model_fields_set)
                if shadowed:
                    found.append(warning(version.span(shadowed[0]), f"partners whose language is {language} get the "
                                         f"translation's {shadowed[0]}, whatever their variant: give the translation "
                                         f"no {shadowed[0]}, or test in one language"))
                    break
    return found


def _check_unsubscribe_links(steps: list[Step], context: _Context) -> list[Diagnostic]:
    """Marketing email must let people leave (SPEC §12): a warning for each email step when no
    ``web.base_url`` gives it a List-Unsubscribe header, and for each body (the step's and each
    translation's) that has no ``unsubscribe_url``."""
    found: list[Diagnostic] = []
    for step in steps:
        if not isinstance(step.action, Email):
            continue
        if not context.base_url:
            found.append(warning(step.key_span("email"), "engine.yaml sets no web.base_url: this email carries no "
                                 "one-click unsubscribe (List-Unsubscribe) and no open or click tracking"))
        for variant in (step.action, *step.action.translations.values(), *step.action.variants.values()):
            text = _body_text(variant, context)
            if text is not None and not templates.mentions(text, "unsubscribe_url", context.templates_dir):
                where = variant.span("template") if variant.template else variant.span("body")
                found.append(warning(where, "this marketing email has no unsubscribe link: add {{ unsubscribe_url }} to its body"))
    return found


def _body_text(variant: Located, context: _Context) -> str | None:
    """An email's body as template text (its file's or inline), or None when it has none of
    its own (a translation that keeps the step's body) or it cannot be read (reported elsewhere)."""
    if getattr(variant, "template", None):
        path = context.templates_dir / variant.template
        try:
            return path.read_text(encoding="utf-8") if templates.inside(path, context.templates_dir) else None
        except (OSError, ValueError):  # not there, not UTF-8, a NUL in the name: reported elsewhere
            return None
    body = getattr(variant, "body", None)
    return body if isinstance(body, str) else None


def _check_waits(campaign: Campaign) -> list[Diagnostic]:
    """Each wait is at most 100 years, and so are all of them together (a wait-for counted at
    its ``at_most``; jumps only go forward, so no path waits longer): an enrollment's due times
    (and `engine test`'s timeline) must stay dates Python can hold, whatever the file."""
    total = timedelta(0)
    for step in campaign.steps:
        if isinstance(step, Wait):
            wait = step.wait
            total += wait if isinstance(wait, timedelta) else wait.at_most if isinstance(wait, WaitFor) \
                else timedelta(days=1)  # {until}: under a day
            if total > MAX_DURATION:
                return [error(step.span("wait"), f"the waits of this campaign add up to more than {MAX_DURATION_DAYS}d (100 years)")]
    return []


def _check_ids(campaign: Campaign) -> list[Diagnostic]:
    """Step ids (those of waits and branches too) are unique, and so are the old ids that
    ``renamed_from`` gives: an old id names no step of the file and no two steps."""
    found: list[Diagnostic] = []
    named = [s for s in campaign.steps if getattr(s, "id", None) is not None]
    seen: dict[str, Located] = {}
    for step in named:
        if step.id in seen:
            first = seen[step.id].span("id")
            found.append(error(step.span("id"), f"duplicate step id '{step.id}' (first used on line {first.line})"))
        seen.setdefault(step.id, step)
    claimed: dict[str, Located] = {}
    for step in named:
        for i, old in enumerate(step.renamed_from):
            where = step.document.span(step.path + ("renamed_from",) + ((i,) if _is_list(step, "renamed_from") else ()))
            if old in seen:
                found.append(error(where, f"'{old}' is the id of a step of this campaign (line {seen[old].span('id').line}): "
                                          "renamed_from names an id the file no longer has"))
            elif old in claimed:
                found.append(error(where, f"'{old}' is renamed twice (also on line {claimed[old].span('id').line})"))
            claimed.setdefault(old, step)
    return found


def _is_list(owner: Located, key: str) -> bool:
    data = owner.document.data if owner.document is not None else None
    for part in owner.path + (key,):
        data = data[part] if isinstance(data, (dict, list)) else None
    return isinstance(data, list)


def check_flow(campaign: Campaign, scope: Scope) -> list[Diagnostic]:
    """The flow's rules: branch and wait-for conditions type-check, a wait-for's condition can
    change, every jump goes to a later step of the campaign (or ``end``), and every step can be
    reached (a warning)."""
    found: list[Diagnostic] = []
    flow = flow_of(campaign)
    for node in flow.nodes:
        if isinstance(node.item, Branch):
            for case in node.item.branch:
                found.extend(_expression(case, "when", scope))
        wait = node.wait_for
        if wait is not None:
            problems = _expression(wait, "for_", scope, key="for")
            found.extend(problems)
            if not problems and _never_changes(wait.for_):
                found.append(error(wait.span("for_"), "this condition can never change (it reads no partner field, "
                                   "time, group or history): the wait would always end at once or last its whole "
                                   "at_most; write a plain wait such as `wait: 3d`"))
        for jump in node.jumps:
            if jump.target in scope.steps and flow.node(jump.target) is None:
                continue  # a step with errors of its own, left out of the checked campaign
            found.extend(_check_jump(flow, node, jump))
    for node in flow.unreachable():
        what = "step" if node.key is not None else "wait"
        found.append(warning(node.item.span("id") if node.key and getattr(node.item, "id", None) else node.item.span(),
                             f"this {what} is never reached: every path before it jumps past it"))
    return found


def _check_jump(flow: Flow, origin: Node, jump: Jump) -> list[Diagnostic]:
    where = jump.owner.span(jump.field)
    target = jump.target
    if target == END:
        return []
    node = flow.node(target)
    if node is None or node.key != target:
        hint = f" (it was renamed to '{node.key}')" if node is not None else did_you_mean(target, flow.keys + [END])
        return [error(where, f"unknown step '{target}'{hint}: a {jump.reason} jumps to a step id of this campaign or to end")]
    if node.index <= origin.index:
        direction = "to itself" if node.index == origin.index else f"back to step '{target}' (line {node.item.span().line})"
        return [error(where, f"a {jump.reason} cannot jump {direction}: jumps only go forward, to a later step or end")]
    return []


def _never_changes(text: str) -> bool:
    """An expression whose value is the same for everyone at any time: no partner field, no
    time, group, event or store."""
    node = parse(text)
    return not inputs(node) and not any(isinstance(n, Name) and n.name == "partner" for n in node.walk())


def _check_window(campaign: Campaign) -> list[Diagnostic]:
    """A one-shot time outside the campaign window is almost always a typo in one of the two."""
    window, trigger = campaign.window, campaign.trigger
    if window is None or trigger is None or trigger.at is None:
        return []
    day = trigger.at.date()
    if (window.start and day < window.start) or (window.end and day > window.end):
        bounds = f"{window.start or '…'} to {window.end or '…'}"
        return [warning(trigger.span("at"), f"the 'at' time is outside the campaign window ({bounds}): "
                        "its steps wait for the window to open, or never run after it closes")]
    return []


def _check_monitor(campaign: Campaign) -> list[Diagnostic]:
    """An In-Campaign % monitor measures the campaign's audience (engine/monitor.py): written on
    a campaign without one (no ruleset, no group), it never measures anything and never raises
    an alert. A warning, not an error: the campaign itself runs as before (an error would stop
    it), and the launch checklist already refuses an active campaign without an audience."""
    audience = campaign.audience
    if "monitor" not in campaign.model_fields_set or audience.rulesets or audience.groups:
        return []
    return [warning(campaign.key_span("monitor"), "this monitor never measures anything: In-Campaign % counts the "
                    "partners of the campaign's audience, and it has none (no ruleset or group); add an audience, "
                    "or remove `monitor:`")]


def _step_ids(campaign: Campaign) -> tuple[str, ...]:
    """Every step id written in the file, including those of steps left out by salvage."""
    data = campaign.document.data if campaign.document is not None else None
    items = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return tuple(s.id for s in campaign.action_steps)
    return tuple(i["id"] for i in items if isinstance(i, dict) and isinstance(i.get("id"), str))


def _check_step(step: Step, context: _Context, step_ids: tuple[str, ...] = ()) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    action = step.action
    variants: list[Located] = [action, *getattr(action, "variants", {}).values()]
    if isinstance(action, (Email, Sms, Popup)):
        variants += list(action.translations.values())
    for variant in variants:
        for name in ("subject", "body", "text", "title", "assignee"):
            found.extend(_inline_template(variant, name, context))
        if getattr(variant, "template", None):
            found.extend(_template_file(variant, context))
    for response in getattr(action, "responses", {}).values():
        target = response.follow_up
        if target is not None and target not in context.campaigns:
            found.append(error(response.span("follow_up"), _unknown_follow_up(target, step, step_ids, context)))
    return found


def _unknown_follow_up(target: str, step: Step, step_ids: tuple[str, ...], context: _Context) -> str:
    """A follow-up names a campaign to enroll the partner in; a step of this campaign there
    was meant as ``goto`` (a campaign of that name would have been found first)."""
    if target not in step_ids:
        return f"unknown follow-up campaign '{target}'{did_you_mean(target, context.campaigns)}"
    message = f"'{target}' is a step of this campaign, not a campaign: follow_up enrolls the partner in another campaign"
    if step.id in step_ids and step_ids.index(target) > step_ids.index(step.id):
        return f"{message}; to move on to that step, write goto: {target}"
    return f"{message}, and goto (which moves to a step of this campaign) only jumps forward, to a later step"


def _check_results(campaign: Campaign, results: list[str]) -> list[Diagnostic]:
    """Each response records one of engine.yaml's ``results``, so reports can count them."""
    found = []
    for step in campaign.action_steps:
        for response in getattr(step.action, "responses", {}).values():
            if response.result not in results:
                found.append(error(response.span("result"), f"unknown result '{response.result}': a response records one "
                                   f"of {', '.join(results)}{did_you_mean(response.result, results)} (engine.yaml's results)"))
    return found


def _expression(owner: Located, name: str, scope: Scope, container: str | None = None,
                key: str | None = None) -> list[Diagnostic]:
    """Check the expression in ``owner.name`` (or ``owner.container[name]``) in place; ``key``:
    the name it is written under, when that is not a Python name (``for``)."""
    if container is None:
        text = getattr(owner, name, None)
        path = owner.path + (key or name,)
    else:
        text = getattr(owner, container)[name]
        path = owner.path + (container, name)
    if text is None or owner.document is None:
        return []
    _, problems = check_text(text, scope, owner.document.scalar(path), expect=BOOL)
    return problems


def _inline_template(owner: Located, name: str, context: _Context) -> list[Diagnostic]:
    text = getattr(owner, name, None)
    if not isinstance(text, str) or owner.document is None:
        return []
    where = owner.document.scalar(owner.path + (name,))
    if where is None:
        return []
    return templates.check_inline(text, where, context.partner, context.templates_dir, context.included_templates)


def _template_file(owner: Located, context: _Context) -> list[Diagnostic]:
    name = owner.template
    directory = context.templates_dir
    path = directory / name
    if ".." in Path(name).parts or Path(name).is_absolute():
        return [error(owner.span("template"), f"template '{name}' is outside templates/: name a file inside it")]
    try:
        path.stat()
    except FileNotFoundError:
        pass  # reported below, with the names that exist
    except OSError as exc:  # a name too long for the file system, a directory we may not read ...
        return [error(owner.span("template"), f"template {shown(name)} cannot be read: {exc.strerror or exc}")]
    if not path.is_file():
        available = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else []
        return [error(owner.span("template"), f"unknown template '{name}' (no templates/{name}){did_you_mean(name, available)}")]
    if not templates.inside(path, directory):  # a link out of templates/: never read, never emailed
        return [error(owner.span("template"), f"template '{name}' resolves outside templates/ (a link?): it would not "
                                              "be read; put the file itself in templates/")]
    if name in context.checked_templates:  # a template file's problems are reported once
        return []
    context.checked_templates.add(name)
    return templates.check_file(path, context.partner, directory, context.included_templates)

