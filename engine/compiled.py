"""A loaded workspace made ready to run: every expression compiled once, groups read, timezones
resolved. The tick asks these objects questions; it never parses anything itself."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaigns.audience import CompiledAudience, compile_audience
from campaigns.flow import Flow, flow_of
from campaigns.shapes import Branch, Campaign, Step, Until, Wait
from campaigns.policy import NO_RULES, Rules, rules_for
from campaigns.loaded import Workspace
from dsl.compile import Compiled, compile_expression
from dsl.types import Type


@dataclass(frozen=True)
class CompiledCampaign:
    id: str
    campaign: Campaign
    tz: tzinfo
    audience: CompiledAudience
    exit_when: Compiled | None
    trigger_when: Compiled | None
    step_when: Mapping[str, Compiled]
    steps: Mapping[str, Step]
    content_hash: str  # of the campaign file's text
    flow: Flow
    cases: Mapping[str, tuple[Compiled | None, ...]]  # branch id → each case's `when` (None: else)
    wait_for: Mapping[str, Compiled]  # wait-for key → its `for`
    timezone_field: str | None = None  # set when the campaign has local times a partner's zone moves
    rules: Rules = NO_RULES  # the policies its message steps obey (campaigns.policy)
    goal_when: Compiled | None = None
    goal_where: Compiled | None = None  # an event goal's condition on the event

    def local_tz(self, partner: Mapping[str, Any] | None) -> tzinfo:
        """Where the partner's local times (``wait: {until}``) are: their own zone when engine.yaml's
        ``partners.timezone_field`` names one and it is a valid IANA name, else the campaign's."""
        if self.timezone_field is None or partner is None:
            return self.tz
        return zone(partner.get(self.timezone_field)) or self.tz

    def branch_target(self, branch: str, partner: Mapping[str, Any], ctx) -> tuple[int, str] | None:
        """The first case of the branch that holds (its number from 1, and its target), or None."""
        item = self.flow.node(branch).item  # type: ignore[union-attr]
        for number, (when, case) in enumerate(zip(self.cases[item.id], item.branch), 1):
            if when is None or when.test(partner, ctx):
                return number, case.target
        return None

    @property
    def trigger(self) -> str | None:
        return self.campaign.trigger.kind if self.campaign.trigger is not None else None

    @property
    def active(self) -> bool:
        return self.campaign.active


@dataclass(frozen=True)
class CompiledWorkspace:
    workspace: Workspace
    campaigns: Mapping[str, CompiledCampaign]  # only the files without errors
    groups: Mapping[str, frozenset[str]]
    exclude: Compiled | None  # engine.yaml's exclude
    fingerprint: str  # changes whenever a file the workspace is made of changes
    templates_dir: Path

    @property
    def root(self) -> Path:
        return self.workspace.root

    @property
    def settings(self):
        return self.workspace.settings

    @property
    def tz(self) -> tzinfo:
        return self.workspace.tz

    @property
    def id_field(self) -> str:
        return self.workspace.settings.partners.id

    def exclusive(self, campaign_id: str) -> bool:
        plan = self.campaigns.get(campaign_id)
        return plan is not None and plan.campaign.exclusive


def audience_schema(plan: CompiledWorkspace) -> dict[str, Type]:
    """The partner schema as audiences read it: ``test`` is a bool even where undeclared (a
    record may still say ``"test": true``)."""
    from dsl.types import BOOL

    schema = plan.settings.partners.types()
    schema.setdefault("test", BOOL)
    return schema


def partner_layout(plan: CompiledWorkspace, dialect: str):
    """The typed partner columns (:func:`dsl.sql_columns.partner_layout`) of the plan's schema."""
    schema = audience_schema(plan)
    return _layout(tuple(schema.items()), dialect)


def compared_fields(plan: CompiledWorkspace) -> set[str]:
    """The partner fields that the active campaigns' rulesets and exclusions (and engine.yaml's
    exclude) compare with a constant: the store indexes their columns."""
    from dsl.sql_columns import compared_fields

    if plan.fingerprint not in _COMPARED:
        if len(_COMPARED) > 64:
            _COMPARED.clear()
        nodes = [node for c in plan.campaigns.values() if c.campaign.active
                 for _, node in c.audience.ruleset_nodes + c.audience.exclusion_nodes]
        _COMPARED[plan.fingerprint] = frozenset(name for node in nodes for name in compared_fields(node))
    return set(_COMPARED[plan.fingerprint])


_COMPARED: dict[str, frozenset[str]] = {}  # by workspace fingerprint


@functools.lru_cache(maxsize=16)
def _layout(schema: tuple, dialect: str):
    from dsl.sql_columns import partner_layout

    return partner_layout(dict(schema), dialect)


def compile_workspace(workspace: Workspace) -> CompiledWorkspace:
    settings = workspace.settings
    campaigns = {}
    for cid, campaign in workspace.campaigns.items():
        tz = ZoneInfo(campaign.timezone) if campaign.timezone else workspace.tz
        trigger_when = campaign.trigger.when if campaign.trigger is not None else None
        flow = flow_of(campaign)
        rules = rules_for(campaign, settings.policies)
        goal = campaign.goal
        local_times = rules.timed or any(isinstance(s, Wait) and isinstance(s.wait, Until) for s in campaign.steps)
        campaigns[cid] = CompiledCampaign(
            id=cid, campaign=campaign, tz=tz, audience=compile_audience(campaign, settings),
            exit_when=_compile(campaign.exit_when), trigger_when=_compile(trigger_when),
            step_when={s.id: _compile(s.when) for s in campaign.action_steps if s.when is not None},
            steps={s.id: s for s in campaign.action_steps},
            content_hash=_file_hash(workspace.files[cid].path),
            flow=flow,
            cases={b.id: tuple(_compile(c.when) for c in b.branch) for b in campaign.steps if isinstance(b, Branch)},
            wait_for={n.key: _compile(n.wait_for.for_) for n in flow.nodes if n.wait_for is not None},
            timezone_field=settings.partners.timezone_field if local_times else None,
            rules=rules,
            goal_when=_compile(goal.when) if goal is not None else None,
            goal_where=_compile(goal.where) if goal is not None else None)
    groups = {name: read_group(path) for name, path in workspace.groups.items()}
    return CompiledWorkspace(workspace, campaigns, groups, _compile(settings.exclude), fingerprint(workspace.root),
                             workspace.templates_dir)


@functools.lru_cache(maxsize=1024)
def zone(name: Any) -> tzinfo | None:
    """The IANA zone a partner's timezone field names, or None for anything else."""
    if not isinstance(name, str) or not name or len(name) > 100:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _file_hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _compile(text: str | None) -> Compiled | None:
    from dsl.parser import parse  # (lark: not for a plan read from the cache)

    return compile_expression(parse(text)) if text else None


def read_group(path: Path) -> frozenset[str]:
    """The ids in a groups/*.csv file (its problems are `engine check`'s business)."""
    try:
        rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig", errors="replace")))
        return frozenset(row["id"].strip() for row in rows if (row.get("id") or "").strip())
    except (OSError, KeyError, csv.Error):
        return frozenset()


def fingerprint(root: Path) -> str:
    """Size and modification time of every file a workspace is loaded from (not the partner
    source, which is imported by content): cheap enough to ask before every tick, so read
    with ``os.scandir`` (a tenth of what ``Path.glob`` costs)."""
    parts, prefix = [], len(os.path.join(root, ""))
    for path in loaded_files(root):
        try:
            stat = os.stat(path)
        except OSError:
            continue
        parts.append(f"{path[prefix:]}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def loaded_files(root: Path) -> Iterator[str]:
    """engine.yaml, campaigns/*.yaml (and .yml), everything under templates/ (directories too:
    their times change when a file comes or goes) and groups/*.csv, in a fixed order."""
    yield os.path.join(root, "engine.yaml")
    for folder, keep in (("campaigns", lambda name: name.endswith((".yaml", ".yml"))),
                         ("groups", lambda name: name.endswith(".csv"))):
        yield from sorted(entry.path for entry in _entries(os.path.join(root, folder)) if keep(entry.name))
    templates = os.path.join(root, "templates")
    for folder, subfolders, files in os.walk(templates):
        subfolders.sort()
        yield from (os.path.join(folder, name) for name in sorted(subfolders + files))


def _entries(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:
        return []


# --- partner records in the store ----------------------------------------------------------------


def encode_partner(record: Mapping[str, Any]) -> str:
    """A typed record as canonical JSON: dates and datetimes as ISO text."""
    if _C_ENCODE is not None:
        return "".join(_C_ENCODE(record, 0))  # the pieces: one, but several for a huge record
    return _ENCODER.encode(record)


def _iso(value: Any) -> str:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__}")


# json.dumps with these options, without making an encoder per record (it makes one per call):
# json's C encoder made once (what JSONEncoder.encode makes each time), else the encoder object.
# Records are never circular, so the C encoder checks for no cycles.
_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_iso)
_C_ENCODE = (json.encoder.c_make_encoder(None, _iso, json.encoder.encode_basestring, None, ":", ",", True, False, True)
             if json.encoder.c_make_encoder is not None else None)


def decoder(schema: Mapping[str, Type]):
    """Turns stored JSON back into a typed record (the schema says which texts are dates)."""
    dates = [name for name, t in schema.items() if t.kind == "date"]
    datetimes = [name for name, t in schema.items() if t.kind == "datetime"]

    def decode(data: str) -> dict[str, Any]:
        record = json.loads(data)
        for name in dates:
            value = record.get(name)
            if isinstance(value, str):
                record[name] = date.fromisoformat(value)
        for name in datetimes:
            value = record.get(name)
            if isinstance(value, str):
                record[name] = datetime.fromisoformat(value)
        return record

    return decode


def record_hash(encoded: str) -> str:
    return hashlib.blake2b(encoded.encode(), digest_size=16).hexdigest()


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
