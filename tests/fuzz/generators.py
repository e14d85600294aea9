"""Generators of fuzz cases for the engine (issue 18, "What it must show").

A *case* is a set of files written over a prepared copy of the example workspace (``ws/``:
examples/ plus a control campaign, ticked once at :data:`T0`) and a list of ``engine`` command
lines run one after the other in it. Six input kinds:

``yaml``      mutated campaign files (from examples/campaigns/*.yaml and a skeleton): edge values
              for every key the issue names (``wait: 999999999d``, ``window: {end: 9999-12-31}``,
              cron, ids with CR/LF or ``:``...), type confusions, alias bombs, 600-deep nesting,
              lone surrogates, NUL, odd unicode, odd file names, truncations and byte flips;
``expr``      expressions generated from dsl/grammar.lark, placed in a campaign (rulesets,
              exclude, ``when``, ``exit_when``, the event trigger's ``when``) or given to
              ``group C add-filter``;
``template``  jinja2 snippets (the issue's sandbox bombs included) in a campaign's messages or in
              a template file;
``partners``  partners.csv / partners.jsonl with bad ids, surrogates, wrong types, huge fields;
``events``    events JSONL files (surrogates in data, unknown types, bad dates...);
``cli``       argument vectors for every subcommand of ``engine`` (introspected from the parser),
              with random and edge values.

Every generator takes a :class:`random.Random`, so a long run is reproducible by seed
(:func:`generate_case`), and :func:`cases` wraps them as hypothesis strategies.

**What "the other campaigns still deliver" means per kind** (``Command.control``): the control
campaign (``campaigns/control.yaml``: an hourly cron with one email to partner ``ctl001``,
never touched by any generator) must put a new message into ``.engine/outbox/email.jsonl`` in

* every ``tick`` after a ``yaml``, ``expr`` or ``template`` mutation: a bad campaign or template
  fails that campaign alone (SPEC 10), whatever the exit code;
* every ``tick`` after an ``events`` import: a bad line is reported and skipped;
* every ``tick`` after a ``partners`` mutation that keeps the header and the control partner's
  record (the first record) as they were: a bad file may be refused as a whole or in part (by
  design), but the store keeps the records it had, so the tick still runs on them. A mutated
  header can legitimately change what the control record means: no control check then;
* for ``cli``: a tick at T1 after a command that reads, or changes state only at a legitimate
  time before T1, and names neither the control campaign nor its partner. Ticks and runs given
  on the command line move the clock (or must be refused): no control check.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

KINDS = ("yaml", "expr", "template", "partners", "events", "cli")

# --- the base workspace ----------------------------------------------------------------------

WS = "ws"  # the workspace, relative to the case directory (the commands' working directory)
CONTROL_CAMPAIGN = "control"
CONTROL_PARTNER = "ctl001"
T0 = "2026-07-01T00:00:00Z"  # the prepared store has ticked here
T1 = "2026-07-01T01:00:00Z"  # the case's first tick
T2 = "2026-07-01T02:00:00Z"  # a second tick: nothing a case did may stall later ticks

CONTROL_YAML = """\
# The fuzz suite's control campaign: always valid; it must deliver at every tick.
name: Fuzz control
description: One email an hour to the control partner; the fuzz suite checks that it arrives.
owner: fuzz@example.com
active: true

audience:
  groups: [control]

trigger:
  cron: "0 * * * *"

reenroll: after_exit

steps:
  - id: ping
    email:
      subject: "control"
      body: "control message"
"""
CONTROL_GROUP = "id\nctl001\n"
CONTROL_CSV_ROW = ("ctl001,Control Partner,ctl001@example.com,en,FI,Control Oy,silver,0,2026-01-01,"
                   "2026-06-01T00:00,,true,false,,partner_admin,true,false,,false")
# A partner record used by the base: enrolled by the control campaign only (silver, revenue 0).

BASE_SETUP = [  # commands run once on the base workspace, before any case
    ["-w", WS, "tick", "--at", "2026-06-30T22:00:00Z"],
    ["-w", WS, "start", "demo-invite", "--partner", "p001", "--as", "alice", "--at", "2026-06-30T23:00:00Z"],
    ["-w", WS, "tick", "--at", T0],
]

AS_ALICE = {"ENGINE_USER": "alice"}  # a marketing user (events import asks for a role once issue 14 is fixed)
FORBIDDEN = ("internal error", "Traceback (most recent call last)")  # never generated as text


@dataclass
class Command:
    argv: list[str]
    control: bool = False  # the control campaign must deliver during this command
    allowed_exit: tuple[int, ...] = (0, 1, 2, 3)
    expect_exit: tuple[int, ...] | None = None  # a corpus entry may fix the exit code further
    env: dict[str, str] = field(default_factory=dict)  # ENGINE_* variables (all others are unset)

    def to_json(self) -> dict:
        data: dict[str, Any] = {"argv": self.argv, "control": self.control}
        if self.env:
            data["env"] = self.env
        if self.allowed_exit != (0, 1, 2, 3):
            data["allowed_exit"] = list(self.allowed_exit)
        if self.expect_exit is not None:
            data["expect_exit"] = list(self.expect_exit)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Command:
        return cls(list(data["argv"]), bool(data.get("control", False)),
                   tuple(data.get("allowed_exit", (0, 1, 2, 3))),
                   tuple(data["expect_exit"]) if data.get("expect_exit") is not None else None,
                   dict(data.get("env", {})))


@dataclass
class Case:
    """Files to write over the base workspace (path relative to ws/ → bytes; None deletes;
    ``{"symlink": target}`` makes a symbolic link), then the commands, in order."""

    kind: str
    files: dict[str, Any]
    commands: list[Command]
    note: str = ""
    seed: str = ""
    forbid_in_outbox: list[str] = field(default_factory=list)  # text that must not be sent
    forbid_files: list[str] = field(default_factory=list)  # case-relative paths that must not appear

    def to_json(self) -> dict:
        files: dict[str, Any] = {}
        for path, content in self.files.items():
            if content is None or isinstance(content, dict):
                files[path] = content
            else:
                try:
                    files[path] = content.decode("utf-8")
                except UnicodeDecodeError:
                    files[path] = {"base64": base64.b64encode(content).decode("ascii")}
        return {"kind": self.kind, "note": self.note, "seed": self.seed, "files": files,
                "commands": [c.to_json() for c in self.commands],
                "forbid_in_outbox": self.forbid_in_outbox, "forbid_files": self.forbid_files}

    @classmethod
    def from_json(cls, data: dict) -> Case:
        files: dict[str, Any] = {}
        for path, content in data.get("files", {}).items():
            if content is None:
                files[path] = None
            elif isinstance(content, dict) and "base64" in content:
                files[path] = base64.b64decode(content["base64"])
            elif isinstance(content, dict):
                files[path] = content
            else:
                files[path] = content.encode("utf-8", "surrogatepass")
        return cls(data["kind"], files, [Command.from_json(c) for c in data["commands"]], data.get("note", ""),
                   data.get("seed", ""), list(data.get("forbid_in_outbox", [])), list(data.get("forbid_files", [])))


def tick(at: str = T1, control: bool = True) -> Command:
    return Command(["-w", WS, "tick", "--at", at], control=control)


# --- examples -----------------------------------------------------------------------------------


@cache
def example_campaigns() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted((EXAMPLES / "campaigns").glob("*.yaml"))}


@cache
def example_templates() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted((EXAMPLES / "templates").iterdir()) if p.is_file()}


@cache
def partner_rows() -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO((EXAMPLES / "partners.csv").read_text(encoding="utf-8"))))
    return rows[0], rows[1:]


@cache
def partner_fields() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "engine.yaml").read_text(encoding="utf-8"))["partners"]["fields"]


@cache
def example_events() -> list[str]:
    return [line for line in (EXAMPLES / "events.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def partner_ids() -> list[str]:
    return [row[0] for row in partner_rows()[1]]


CAMPAIGN_IDS = ["partner-onboarding", "demo-invite", "nurture", "payment-failed", "renewal-reminder", "summer-webinar"]
STEP_IDS = ["welcome", "welcome-nudge", "intro-call", "portal-note", "welcome-letter", "demo-confirmation",
            "prepare-demo", "demo", "demo-recap", "case-study", "check-in", "notice", "notice-sms", "billing-check",
            "reminder", "second-reminder", "renewal-sms", "renewal-task", "invite-popup", "invite", "feedback-survey"]
GROUPS = ["summit-2026"]


# --- shared edge values -------------------------------------------------------------------------

ODD_TEXT = [
    "", " ", "\t", "ä", "Ω≈ç√", "日本語", "\u202eevil", "a\u200bb", "e\u0301\u0301\u0301", "😀👍🏽", "\ufeff",
    "\u0000", "a\u0000b", "\ud800", "X\ud800Y", "\udcff", "\r\n", "line\nbreak", "a\rb", "\\", "\"", "'", "{{", "}}",
    "{%", "%}", "#", "&", "*", "!", "|", ">", "- x", ": x", "? x", "%", "%s%n", "null", "~", "yes", "no", "on",
    "0x1F", "1e400", "-0", "NaN", "x" * 10_000, "a:b", "p001", "../partners.csv", "/etc/passwd", "$(touch pwned)",
    "\x1b[31mred", "\u00a0", "\u2028", "\U0010ffff",
]

EDGE_NUMBERS = [0, -1, 1, 2**31, 2**63, 2**64, 10**30, 10**400, -(10**400), 1.5, float("inf"), float("nan"), 1e-300]

EDGE_DURATIONS = ["999999999d", "100000000000d", "99999999999w", "0d", "0m", "-1d", "1y", "1s", "3", "", "d", "1.5d",
                  "1000000000000000000000d", "9" * 40 + "m", "1 d", "٣d", "P1D", "3d 2h"]
EDGE_DATES = ["9999-12-31", "0001-01-01", "0000-00-00", "10000-01-01", "2026-02-30", "2026-13-01", "1970-01-01",
              "2026-07-01", "", "tomorrow", "2026-7-1", "٢٠٢٦-٠٧-٠١", 20260701, "2026-07-01T25:00"]
EDGE_DATETIMES = ["9999-12-31T23:59:59Z", "9999-12-31T23:59", "0001-01-01T00:00", "2026-07-01T00:30",
                  "2026-07-01T01:00:00+14:00", "2026-07-01T01:00:00-12:00", "2026-07-01T24:00", "2026-07-01T09:00+25:00",
                  "2026-03-29T03:30", "2026-10-25T03:30", "2026-07-01T09:00:00.1234567Z", "", "now", "1e9"]


def pick(r: random.Random, seq):
    return seq[r.randrange(len(seq))]


def odd_string(r: random.Random) -> str:
    if r.random() < 0.3:
        return "".join(pick(r, ODD_TEXT) for _ in range(r.randint(1, 4)))[:20_000]
    return pick(r, ODD_TEXT)


def random_scalar(r: random.Random) -> Any:
    """Any YAML value: type confusions for whatever key it replaces."""
    choice = r.randrange(10)
    if choice == 0:
        return pick(r, EDGE_NUMBERS)
    if choice == 1:
        return odd_string(r)
    if choice == 2:
        return r.choice([True, False, None])
    if choice == 3:
        return [random_scalar(r) for _ in range(r.randint(0, 3))] if r.random() < 0.7 else []
    if choice == 4:
        return {odd_string(r) or "k": random_scalar(r) for _ in range(r.randint(0, 2))}
    if choice == 5:
        return pick(r, EDGE_DURATIONS)
    if choice == 6:
        return pick(r, EDGE_DATES)
    if choice == 7:
        return pick(r, EDGE_DATETIMES)
    if choice == 8:
        return gen_expression(r, 2)
    return gen_template_text(r, small=True)


def clean(text: str) -> str:
    """Generated text never contains the strings the runner looks for in the output."""
    for word in FORBIDDEN:
        text = text.replace(word, word.upper())
    return text


# --- bytes-level mutations ----------------------------------------------------------------------


def mutate_bytes(r: random.Random, data: bytes, rounds: int | None = None) -> bytes:
    buf = bytearray(data)
    for _ in range(rounds if rounds is not None else r.randint(1, 4)):
        op = r.randrange(11)
        n = len(buf)
        if op == 0 and n:  # flip a bit
            i = r.randrange(n)
            buf[i] ^= 1 << r.randrange(8)
        elif op == 1 and n:  # random byte
            buf[r.randrange(n)] = r.randrange(256)
        elif op == 2:  # truncate
            del buf[r.randint(0, n):]
        elif op == 3 and n:  # delete a slice
            i = r.randrange(n)
            del buf[i:i + r.randint(1, 40)]
        elif op == 4:  # insert special bytes
            i = r.randint(0, n)
            buf[i:i] = pick(r, [b"\x00", b"\r", b"\n", b"\r\n", b"\t", b"\xff", b"\xed\xa0\x80", b"\xc3", b"\xef\xbb\xbf",
                               b"'", b'"', b"\\", b":", b"- ", b"{", b"[", b"&a", b"*a", b"!!", b"%", b"#", b"\x85",
                               "\u2028".encode(), b"\x1a", b"\x7f"])
        elif op == 5 and n:  # duplicate a slice
            i = r.randrange(n)
            j = min(n, i + r.randint(1, 200))
            buf[j:j] = buf[i:j]
        elif op == 6:  # CRLF line ends
            buf = bytearray(bytes(buf).replace(b"\n", b"\r\n"))
        elif op == 7:  # old Mac line ends
            buf = bytearray(bytes(buf).replace(b"\n", b"\r"))
        elif op == 8:  # a BOM
            buf[0:0] = b"\xef\xbb\xbf"
        elif op == 9 and n:  # swap two lines
            lines = bytes(buf).split(b"\n")
            if len(lines) > 2:
                a, b = r.randrange(len(lines)), r.randrange(len(lines))
                lines[a], lines[b] = lines[b], lines[a]
                buf = bytearray(b"\n".join(lines))
        elif op == 10:  # a long run
            i = r.randint(0, n)
            buf[i:i] = pick(r, [b"a", b" ", b"\x00", b"9", b"["]) * r.choice([100, 5000, 100_000])
    return bytes(buf)


def encode(r: random.Random, text: str) -> bytes:
    """UTF-8, keeping lone surrogates as (invalid) bytes."""
    return clean(text).encode("utf-8", "surrogatepass")


# --- expressions (dsl/grammar.lark) -------------------------------------------------------------

FUNCTIONS = {"days_since": 1, "lower": 1, "upper": 1, "len": 1, "contains": 2, "starts_with": 2, "ends_with": 2,
             "matches": 2, "coalesce": 3, "in_group": 1, "in_campaign": 1, "was_in_campaign": 2, "opened": 1,
             "clicked": 1, "bounced": 1, "responded": 1, "response": 1, "variant": 1, "split": 1}
COMPARE = ["==", "!=", "<", "<=", ">", ">="]
ARITH = ["+", "-", "*", "/", "%"]
STRING_BODIES = ["FI", "gold", "vip", "", " ", "ä", "日本", "a\\\"b", "\\n", "\\t", "\\\\", "\\u0000", "\\ud800",
                 "\\udfff", "\\x00", "\\0", "\\", "x" * 5000, "(a+)+$", "[", "(?P<x", ".*", "%", "_", "'", "a'b",
                 "e\u0301", "\u202e", "\u0000", "NUL\u0000inside", "@gmail.com", "summit-2026", "welcome", "nope",
                 "p001", "\U0001F600", "\ufffd", "SELECT 1; --", "' OR 1=1 --"]


def gen_literal(r: random.Random) -> str:
    choice = r.randrange(9)
    if choice == 0:
        return str(pick(r, [0, 1, 2, 42, 100000, 2**31, 2**63, 2**64, 10**30, 10**400 if r.random() < 0.3 else 7]))
    if choice == 1:
        return pick(r, ["1.5", "0.0", "0.000001", "1" + "0" * 400 + ".5", "3.14159", "99999999999999999999.9"])
    if choice == 2:
        body = pick(r, STRING_BODIES)
        return f'"{body}"' if "\"" not in body.replace('\\"', "") or r.random() < 0.1 else f"'{body}'"
    if choice == 3:
        return str(pick(r, [d for d in EDGE_DATES if isinstance(d, str) and len(d) == 10 and d[4] == "-"]))
    if choice == 4:
        return pick(r, ["2026-07-01T09:00", "2026-07-01T09:00Z", "2026-07-01T09:00:00+03:00", "9999-12-31T23:59:59Z",
                        "0001-01-01T00:00", "2026-02-30T00:00", "2026-07-01T25:61", "2026-07-01T09:00:00.999999-23:59"])
    if choice == 5:
        return pick(r, ["15m", "12h", "3d", "2w", "0d", "999999999d", "100000000000d", "99999999999999999999w"])
    if choice == 6:
        return pick(r, ["true", "false", "null"])
    if choice == 7:
        return "[" + ", ".join(gen_literal(r) for _ in range(r.randint(0, 3))) + "]"
    return '"' + pick(r, ["gold", "platinum", "silver", "diamond", "FI", "fi", "en"]) + '"'


def gen_name(r: random.Random) -> str:
    fields = list(partner_fields())
    choice = r.randrange(10)
    if choice < 6:
        return "partner." + (pick(r, fields) if r.random() < 0.9 else pick(r, ["countyr", "id", "nope", "__class__",
                                                                                 "email.x", "tags.len"]))
    if choice == 6:
        return "event." + pick(r, ["amount", "data", "data.x", "type", "partner", "at"])
    if choice == 7:
        return pick(r, ["now", "today"])
    if choice == 8:
        return pick(r, ["partner", "event", "nope", "_", "self", "__import__"])
    return "partner." + pick(r, fields) + "[" + gen_literal(r) + "]"


def gen_call(r: random.Random, depth: int) -> str:
    name = pick(r, list(FUNCTIONS)) if r.random() < 0.9 else pick(r, ["nope", "eval", "len_", "LOWER"])
    arity = FUNCTIONS.get(name, 1)
    if r.random() < 0.15:
        arity = r.randint(0, 4)
    args: list[str] = []
    for i in range(arity):
        if name in ("opened", "clicked", "bounced", "responded", "response", "variant", "split") and r.random() < 0.7:
            args.append('"' + pick(r, STEP_IDS + ["nope", "", "hello"]) + '"')
        elif name in ("in_campaign", "was_in_campaign") and i == 0 and r.random() < 0.7:
            args.append('"' + pick(r, CAMPAIGN_IDS + ["nope", ""]) + '"')
        elif name == "was_in_campaign" and i == 1:
            args.append(pick(r, ["30d", "999999999d", "0d", "1"]))
        elif name == "in_group" and r.random() < 0.7:
            args.append('"' + pick(r, GROUPS + ["nope", "control", "../partners"]) + '"')
        elif name == "matches" and i == 1 and r.random() < 0.7:
            args.append('"' + pick(r, ["^a", "(a+)+$", "[", "(?i)fi", ".*" * 50, "\\\\d{1,99999}", "(?P<n>x)"]) + '"')
        else:
            args.append(gen_expression(r, depth - 1))
    trailing = "," if args and r.random() < 0.05 else ""
    return f"{name}({', '.join(args)}{trailing})"


def gen_expression(r: random.Random, depth: int = 4) -> str:
    """An expression from the grammar, mostly well formed: precedence, literals, names,
    functions, lists, indexing; sometimes deep, sometimes broken."""
    if depth <= 0 or r.random() < 0.25:
        return gen_literal(r) if r.random() < 0.45 else gen_name(r)
    choice = r.randrange(12)
    if choice <= 2:
        op = pick(r, ["or", "and"])
        return f"{gen_expression(r, depth - 1)} {op} {gen_expression(r, depth - 1)}"
    if choice <= 4:
        op = pick(r, COMPARE + ["in", "not in"])
        return f"{gen_expression(r, depth - 1)} {op} {gen_expression(r, depth - 1)}"
    if choice == 5:
        return f"{gen_expression(r, depth - 1)} {pick(r, ARITH)} {gen_expression(r, depth - 1)}"
    if choice == 6:
        return f"not {gen_expression(r, depth - 1)}" if r.random() < 0.7 else f"-{gen_expression(r, depth - 1)}"
    if choice == 7:
        return f"({gen_expression(r, depth - 1)})"
    if choice == 8:
        return gen_call(r, depth)
    if choice == 9:
        return "[" + ", ".join(gen_expression(r, depth - 1) for _ in range(r.randint(0, 3))) + "]"
    if choice == 10:
        return f"{gen_expression(r, depth - 1)}[{gen_expression(r, depth - 1)}]"
    return gen_name(r)


def edge_expression(r: random.Random) -> str:
    """The shapes the issue names, and a few more."""
    n = pick(r, [100, 600, 3000])
    choice = r.randrange(10)
    if choice == 0:
        return "(" * n + "partner.revenue > 1" + ")" * n
    if choice == 1:
        return "not " * n + "partner.active"
    if choice == 2:
        return "partner.name == \"X\ud800Y\""  # a lone surrogate in the expression text itself
    if choice == 3:
        return " and ".join(["partner.revenue > 0"] * n)
    if choice == 4:
        return "-" * n + "1 > 0"
    if choice == 5:
        return "[" * n + "1" + "]" * n + " == 1"
    if choice == 6:
        return 'partner.name == "a\\u0000b" or contains(partner.name, "\\u0000")'
    if choice == 7:
        return "partner.joined_at > today - " + pick(r, ["999999999d", "100000000000d", "99999999999999999999w"])
    if choice == 8:
        return "1 " + " ".join(f"{pick(r, ARITH)} 1" for _ in range(n))
    return gen_expression(r, 4)[: r.randint(0, 60)]  # truncated


def expression(r: random.Random) -> str:
    text = edge_expression(r) if r.random() < 0.2 else gen_expression(r, r.randint(1, 5))
    if r.random() < 0.1:
        text = mutate_bytes(r, text.encode("utf-8", "surrogatepass"), 1).decode("utf-8", "surrogateescape")
    return clean(text)


# --- templates ----------------------------------------------------------------------------------

TEMPLATE_VARS = ["partner.name", "partner.company", "partner.tier", "partner.revenue", "partner.tags", "partner.nope",
                 "partner['name']", "partner.get('name')", "campaign.id", "step.id", "now", "today", "nope",
                 "unsubscribe_url", "partner", "partner.joined_at", "partner.last_login", "today.strftime('%d.%m.%Y')",
                 "now.year", "partner.email|upper", "partner.tags|join(', ')", "partner.name|length",
                 "partner.revenue * 1.5", "(partner.revenue or 0) // 0", "1 / 0", "partner.name[0]",
                 "partner.tags[99]", "range(10)|list", "loop", "self", "varargs"]
TEMPLATE_BOMBS = [
    "{{ lipsum(10**6) }}", "{{ 'a' * 10**9 }}", "{{ ' '|center(10**10) }}", "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ partner.__class__.__init__.__globals__ }}",
    "{% for a in range(1000) %}{% for b in range(1000) %}x{% endfor %}{% endfor %}",
    "{% for a in range(100) %}{% for b in range(100) %}{% for c in range(100) %}{{ a }}{% endfor %}{% endfor %}{% endfor %}",
    "{{ range(10**9)|list }}", "{{ 10**10**10 }}", "{{ 9**9**9 }}", "{{ [0] * 10**9 }}", "{{ 'x'.ljust(10**10) }}",
    "{{ 'x'|indent(10**9) }}", "{{ 'a b'|wordwrap(10**9) }}", "{{ range(100000)|join('x' * 100000) }}",
    "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}", "{% set x = [1] %}{% for i in x %}{{ x.append(i) }}{% endfor %}",
    "{{ '%s' % ('a' * 10**9) }}", "{{ '{0:>1000000000}'.format(1) }}", "{{ cycler }}", "{{ joiner }}", "{{ namespace }}",
    "{% include 'letter.txt.j2' %}", "{% include '../engine.yaml' %}", "{% include '/etc/passwd' %}",
    "{% include 'fuzz.txt.j2' %}", "{% extends 'welcome.html.j2' %}", "{% import 'letter.txt.j2' as l %}",
    "{{ lipsum(n=10**5, html=False) }}", "{{ (partner.name ~ 'x') * 10**8 }}", "{{ 'a'|replace('', 'b' * 10**5) }}",
    "{{ partner.name|format(*range(10**6)) }}", "{{ range(10**5)|map('string')|join }}" * 3,
    "{{ config }}", "{{ request }}", "{{ self.__init__.__globals__ }}", "{{ ().__class__.__base__ }}",
    "{{ partner.items() }}", "{{ now.__class__.max }}", "{{ now + now }}", "{{ today.replace(year=10000) }}",
]
TEMPLATE_SYNTAX = ["{{", "}}", "{% if %}", "{% for x in %}", "{% endfor %}", "{{ partner. }}", "{{ 'unterminated }}",
                   "{% raw %}", "{# unterminated", "{{ partner.name|nofilter }}", "{% block b %}{% block b %}",
                   "{{ partner.name }", "{%- -%}", "{{ {} }}", "{% set %}", "{{ (((((( }}", "{{ 1 if }}"]


def gen_template_text(r: random.Random, small: bool = False) -> str:
    parts: list[str] = []
    for _ in range(r.randint(1, 2 if small else 5)):
        choice = r.randrange(12)
        if choice <= 2:
            parts.append(odd_string(r) if r.random() < 0.4 else pick(r, ["Hi ", "Hello,\n", "Best regards", "€", "日本 "]))
        elif choice <= 5:
            parts.append("{{ " + pick(r, TEMPLATE_VARS) + " }}")
        elif choice == 6:
            parts.append("{% if " + pick(r, TEMPLATE_VARS) + " %}yes{% else %}no{% endif %}")
        elif choice == 7:
            n = pick(r, [3, 10, 1000, 100000])
            parts.append("{% for i in range(" + str(n) + ") %}{{ i }}{% endfor %}")
        elif choice == 8:
            if small and r.random() < 0.7:
                continue
            parts.append(pick(r, TEMPLATE_BOMBS))
        elif choice == 9:
            parts.append(pick(r, TEMPLATE_SYNTAX))
        elif choice == 10:
            parts.append("{{ " + pick(r, TEMPLATE_VARS) + "|" + pick(r, ["upper", "lower", "title", "e", "safe",
                         "truncate(3)", "center(80)", "default('x')", "int", "float", "round", "abs", "first", "last",
                         "reverse", "sort", "unique", "wordcount", "urlencode", "tojson", "pprint", "list", "sum",
                         "string", "striptags", "xmlattr", "filesizeformat", "batch(0)", "slice(0)"]) + " }}")
        else:
            parts.append("{# " + odd_string(r).replace("#}", "") + " #}")
    return clean("".join(parts))


# --- campaigns -------------------------------------------------------------------------------------


def skeleton(r: random.Random) -> dict:
    return {
        "name": "Fuzz campaign",
        "description": "A generated campaign.",
        "owner": "fuzz@example.com",
        "active": True,
        "audience": {"rulesets": {"fi": 'partner.country == "FI"', "big": "partner.revenue >= 100000"}},
        "trigger": {"audience": True},
        "reenroll": "never",
        "steps": [
            {"id": "hello", "email": {"subject": "Hello {{ partner.name }}", "body": "Hi {{ partner.name }}"}},
            {"wait": "1h"},
            {"id": "note", "popup": {"pages": ["dashboard"], "title": "Note", "body": "For {{ partner.company }}"}},
        ],
    }


EDGE_SETTINGS: list[tuple[tuple, list[Any]]] = [
    (("window",), [{"end": "9999-12-31"}, {"start": "0001-01-01"}, {"start": "2026-12-31", "end": "2026-01-01"},
                   {"start": "2026-02-30"}, {"end": "10000-01-01"}, "always", [], {"end": None}, {"start": 20260701}]),
    (("trigger",), [{"cron": "0 0 31 2 *"}, {"cron": "*/0 * * * *"}, {"cron": "60 25 * * *"}, {"cron": "@reboot"},
                    {"cron": ""}, {"cron": "* * * * *"}, {"cron": "0 9 * * MON", "audience": True},
                    {"at": "9999-12-31T23:59"}, {"at": "0001-01-01T00:00"}, {"at": "2026-07-01T00:30"},
                    {"at": "2026-02-30T00:00"}, {"event": ""}, {"event": "x" * 5000}, {"event": "opened"},
                    {"event": "invoice.payment_failed", "when": "event.amount > 100"}, {"audience": "yes"}, {}]),
    (("reenroll",), ["99999999999999d", "100000000000d", "after_exit", "sometimes", 0, -1, "0d", None]),
    (("monitor",), [{"in_campaign_min": "1000%"}, {"in_campaign_min": "-5%"}, {"in_campaign_min": "NaN%"},
                    {"alert": ["not-an-email"]}, {"alert": "x"}, {"in_campaign_min": 10**400}]),
    (("holdout",), ["200%", "-1%", "abc", 1e400, "100%", "0%"]),
    (("priority",), [10**30, -(10**30), "high", 1.5]),
    (("timezone",), ["Mars/Olympus", "", "UTC", "+03:00", "../../etc/passwd", "Europe/Helsinki\n"]),
    (("exclusive",), ["maybe", 2, None]),
    (("previously_treated",), ["999999999d", "include", "sometimes", "100000000000d"]),
    (("exit_when",), None), (("audience", "exclude"), None),
    (("audience", "groups"), [["nope"], ["../partners"], "summit-2026", [None], ["summit-2026"] * 3]),
    (("audience", "dedupe"), [["nope"], "email", ["email", "company", "phone"], [["email"]]]),
    (("audience", "rulesets"), [{}, [], {"": "true"}, {"a\nb": "true"}, {"x": None}, {"x": 1}]),
    (("goal",), [{"when": "partner.paid == true", "within": "999999999d"}, {"event": "invoice.paid", "within": "0d"},
                 {"when": "partner.paid", "within": "30d", "exit": "maybe"}]),
    (("active",), ["yes", None, 1]),
    (("name",), None), (("description",), None),
]

STEP_EDGES: list[Callable[[random.Random], dict]] = [
    lambda r: {"wait": pick(r, EDGE_DURATIONS)},
    lambda r: {"wait": {"until": pick(r, ["25:00", "09:00:00", "", "9", "24:00", "09:60", "02:30"])}},
    lambda r: {"wait": {"for": "opened(\"hello\")", "at_most": pick(r, EDGE_DURATIONS)}},
    lambda r: {"id": pick(r, ["hello\n", "a\r\nb", "a:b", "", " ", "ü", "x" * 500, 123, None, "hello", "end",
                              "p001:1:x", "a/b", "..", "\ud800"]), "sms": {"text": "Hi"}},
    lambda r: {"id": "resp", "activity": {"kind": pick(r, ["call", "meeting", "nope", ""]), "assignee": "x@example.com",
                                          "subject": "S", "responses": {f"r{i}": {"result": "successful"}
                                                                        for i in range(r.choice([0, 5, 6, 50]))}}},
    lambda r: {"id": "fu", "activity": {"kind": "call", "assignee": "a@example.com", "subject": "S",
                                        "responses": {"x": {"result": "successful",
                                                            "follow_up": pick(r, ["nope", "fu", "demo-invite", ""])}}}},
    lambda r: {"id": "letter", "letter": {"template": pick(r, ["letter.txt.j2", "nope.j2", "../engine.yaml",
                                                               "/etc/passwd", "", "fuzz.txt.j2"])}},
    lambda r: {"id": "v", "email": {"subject": "S", "body": "B", "variants": {
        "a": {"weight": pick(r, [0, -1, 10**30, "x", 50]), "subject": "A"}, "b": {"weight": pick(r, [0, 50, 1e400])}}}},
    lambda r: {"id": "sp", "split": {"x": {"weight": pick(r, [0, 30, -5]), "goto": pick(r, ["hello", "end", "nope",
                                                                                            "sp"])}}},
    lambda r: {"id": "br", "branch": [{"when": expression(r), "goto": pick(r, ["end", "hello", "nope"])}, {"else": "end"}]},
    lambda r: {"id": pick(r, ["w", "hello", "end", None]), "renamed_from": pick(r, ["hello", ["x", "x"], [], "", 5, None]),
               "wait": {"for": expression(r), "at_most": pick(r, EDGE_DURATIONS)}},
    lambda r: {"id": "call", "activity": {"kind": "call", "subject": "S", "responses": {
        "x": {"result": "successful", "goto": pick(r, ["end", "hello", "nope", "call", "", None, ["end"]])}}}},
    lambda r: {"id": "renamed", "renamed_from": pick(r, ["hello", ["old", "old"], [], "", 5, ["end"], "a\nb"]),
               "sms": {"text": "Hi"}},
    lambda r: {"id": "tr", "email": {"subject": "S", "body": "B", "translations": {
        pick(r, ["fi", "", "xx-YY", "\ud800", "e\u0301"]): {"subject": gen_template_text(r, small=True)}}}},
    lambda r: {"id": "many", "email": {"subject": "S", "body": "B"}, "sms": {"text": "T"}},
    lambda r: {"id": "pop", "popup": {"pages": pick(r, [[], "dashboard", [None], ["x" * 1000]]), "title": "", "body": ""}},
]


def set_path(doc: dict, path: tuple, value: Any) -> None:
    node = doc
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


def random_path(r: random.Random, node: Any, depth: int = 0) -> list:
    """A random key path into nested dicts/lists (at least one step)."""
    path: list = []
    while isinstance(node, (dict, list)) and node and (not path or r.random() < 0.6):
        key = pick(r, list(node)) if isinstance(node, dict) else r.randrange(len(node))
        path.append(key)
        node = node[key]
    return path


def mutate_structure(r: random.Random, doc: Any) -> Any:
    if not isinstance(doc, dict):
        return doc
    op = r.randrange(8)
    if op <= 2:  # an edge value of a known setting
        path, values = pick(r, EDGE_SETTINGS)
        if values is None:
            value = expression(r) if path[-1] in ("exit_when", "exclude") else odd_string(r)
        else:
            value = pick(r, values)
            if isinstance(value, dict) and "when" in value and r.random() < 0.5:
                value = dict(value, when=expression(r))
        set_path(doc, path, value)
    elif op == 3:  # an edge step
        steps = doc.get("steps") if isinstance(doc.get("steps"), list) else []
        steps.insert(r.randint(0, len(steps)), pick(r, STEP_EDGES)(r))
        doc["steps"] = steps
    elif op == 4:  # a type confusion anywhere
        path = random_path(r, doc)
        if path:
            node = doc
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = random_scalar(r)
    elif op == 5:  # delete a key anywhere
        path = random_path(r, doc)
        if path:
            node = doc
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]
    elif op == 6:  # an unknown key
        path = random_path(r, doc)[:-1]
        node = doc
        for key in path:
            node = node[key]
        if isinstance(node, dict):
            node[pick(r, ["countyr", "stepz", "", "x" * 300, "\ud800", "<<", "id", "steps"])] = random_scalar(r)
    else:  # a list of steps duplicated (duplicate ids), or emptied
        if isinstance(doc.get("steps"), list):
            doc["steps"] = doc["steps"] * r.choice([0, 2, 50])
    return doc


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=r_width(doc))


def r_width(_doc: Any) -> int:
    return 100


def alias_bomb(levels: int = 10) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return ("name: Bomb\ndescription: billion laughs\nowner: o@example.com\nactive: true\n" + "\n".join(lines)
            + f"\naudience:\n  rulesets:\n    x: partner.revenue > 0\nsteps:\n  - id: s\n    email: {{subject: *a{levels - 1}, body: b}}\n")


def deep_nesting(r: random.Random, depth: int = 600) -> str:
    style = r.randrange(3)
    if style == 0:
        return "name: Deep\nactive: true\nsteps: " + "[" * depth + "1" + "]" * depth + "\n"
    if style == 1:
        return "name: Deep\nactive: true\naudience: " + "{a: " * depth + "1" + "}" * depth + "\n"
    body = "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + "v: 1\n"
    return "name: Deep\nactive: true\nmonitor:\n" + "".join("  " + line + "\n" for line in body.splitlines())


WHOLE_FILES: list[Callable[[random.Random], str]] = [
    lambda r: alias_bomb(pick(r, [5, 9, 10, 12])),
    lambda r: deep_nesting(r, pick(r, [100, 600, 5000])),
    lambda r: "",
    lambda r: "---\n---\n",
    lambda r: "- a\n- b\n",
    lambda r: "just a string\n",
    lambda r: "!!python/object/apply:os.system ['touch pwned']\n",
    lambda r: "name: !!python/name:os.system\n",
    lambda r: "base: &base {name: X, active: true}\n<<: *base\nsteps: [{id: s, sms: {text: t}}]\n",
    lambda r: "name: a\nname: b\nactive: true\n",
    lambda r: "name: " + "x" * 2_000_000 + "\n",
    lambda r: "key: \"\\ud800\"\nname: \"X\\ud800Y\"\nactive: true\n",
    lambda r: "name: \"a\\0b\"\ndescription: \"\\x00\"\n",
    lambda r: "\t name: tab\n",
    lambda r: "name: [unclosed\n",
    lambda r: "? [complex, key]\n: value\n",
    lambda r: "%YAML 1.1\n%TAG ! tag:evil:\n--- !evil\nname: x\n",
    lambda r: "name: " + "&a " * 3 + "x\n",
    lambda r: "a: *undefined\n",
    lambda r: "x: 0o777777777777777777777777777777\ny: .inf\nz: .nan\nw: 1_000_000\n",
]

# The issue's campaign lines, spliced into a valid campaign text.
ISSUE_LINES = [
    ("window: {start: 2026-07-01, end: 2026-12-31}", "window: {end: 9999-12-31}"),
    ("  - wait: 3d", "  - wait: 999999999d"),
    ("  - wait: 3d", "  - wait: 100000000000d"),
    ('    big-spenders: partner.revenue >= 100000', '    big-spenders: "partner.name == \\"X\\ud800Y\\""'),
    ('    big-spenders: partner.revenue >= 100000', '    big-spenders: "partner.name == \\"a\\0b\\""'),
    ("  - id: welcome\n", "  - id: \"welcome\\n\"\n"),
    ("  - id: welcome\n", "  - id: \"wel\\r\\ncome\"\n"),
    ("  - id: welcome\n", "  - id: \"a:b\"\n"),
    ("reenroll: never", "reenroll: 100000000000d"),
    ("exclusive: true", "exclusive: [true]"),
]

CAMPAIGN_FILE_NAMES = ["a:b.yaml", "sp ace.yaml", "ünïcödé.yaml", "x\r\ny.yaml", "-dash.yaml", ".yaml", "..yaml",
                       "x" * 200 + ".yaml", "UPPER.yaml", "partner-onboarding.YAML", "tab\t.yaml", "emoji😀.yaml",
                       "%s%n.yaml", "a.b.yaml", "$(touch pwned).yaml", "p001:1:x.yaml", "new\n.yaml", "e\u0301.yaml",
                       "\u202egnp.yaml", "--help.yaml", "x.yaml.yaml", "nurture:1.yaml", "'quote.yaml", "*.yaml"]


def campaign_text(r: random.Random) -> tuple[str, str]:
    """(text, where it came from)."""
    examples = example_campaigns()
    choice = r.random()
    if choice < 0.12:
        maker = pick(r, WHOLE_FILES)
        return maker(r), "whole file"
    if choice < 0.3:
        name = pick(r, list(examples))
        text = examples[name]
        old, new = pick(r, ISSUE_LINES)
        if old in text:
            return text.replace(old, new, 1), f"{name} with {new.strip()!r}"
        return examples["partner-onboarding"].replace(old, new, 1), f"partner-onboarding with {new.strip()!r}"
    if choice < 0.6:
        base = yaml.safe_load(examples[pick(r, list(examples))])
    else:
        base = skeleton(r)
    for _ in range(r.randint(1, 3)):
        base = mutate_structure(r, base)
    return dump(base), "structural mutation"


def campaign_bytes(r: random.Random) -> tuple[bytes, str]:
    text, note = campaign_text(r)
    data = encode(r, text)
    if r.random() < 0.2:
        data = mutate_bytes(r, data)
        note += " + byte mutations"
    return data, note


def campaign_name(r: random.Random) -> str:
    choice = r.random()
    if choice < 0.6:
        return "fuzz.yaml"
    if choice < 0.82:
        return pick(r, CAMPAIGN_IDS) + ".yaml"
    return pick(r, CAMPAIGN_FILE_NAMES)


def campaign_id(file_name: str) -> str:
    return file_name.removesuffix(".yaml")


def file_kind_commands(r: random.Random, cid: str, file_name: str, replaced: str | None) -> list[Command]:
    """A tick (the control must deliver), or another command over the workspace followed by a tick."""
    ws_file = f"{WS}/campaigns/{file_name}"
    if r.random() < 0.55:
        commands = [tick(T1)]
    else:
        other = pick(r, [
            ["check"], ["check", "--json"], ["check", ws_file], ["check", "--strict", WS], ["fmt", "--check"], ["fmt"],
            ["plan"], ["plan", "--json"], ["diff", f"{WS}/campaigns/{replaced or 'nurture'}.yaml", ws_file],
            ["diff", "--textconv", ws_file], ["diff", "--json", ws_file, ws_file],
            ["test", cid, "--partner", "p001", "--at", T1], ["test", cid, "--at", T1, "--json"],
            ["explain", cid, "--partner", pick(r, ["p001", "p016", "p024"]), "--at", T1],
            ["simulate", "--from", T1, "--until", "2026-07-01T03:00:00Z", "--every", "1h"],
            ["status", "--campaign", cid], ["stats", cid], ["status", "--json"],
        ])
        commands = [Command(["-w", WS, *other]), tick(T1)]
    if r.random() < 0.3:
        commands.append(tick(T2))
    return commands


def gen_yaml(r: random.Random) -> Case:
    files: dict[str, Any] = {}
    notes = []
    for _ in range(1 if r.random() < 0.85 else 2):
        name = campaign_name(r)
        data, note = campaign_bytes(r)
        files[f"campaigns/{name}"] = data
        notes.append(f"{name}: {note}")
    name = list(files)[-1].split("/", 1)[1]
    replaced = campaign_id(name) if campaign_id(name) in CAMPAIGN_IDS else None
    return Case("yaml", files, file_kind_commands(r, campaign_id(name), name, replaced), "; ".join(notes),
                forbid_files=["pwned", f"{WS}/pwned"])


# --- expressions in campaigns ----------------------------------------------------------------------


def gen_expr(r: random.Random) -> Case:
    expr = expression(r)
    choice = r.randrange(10)
    if choice == 9:  # on the command line
        action = pick(r, ["add-filter", "keep-filter"])
        campaign = pick(r, CAMPAIGN_IDS)
        argv = ["-w", WS, "group", campaign, action, expr, "--as", "alice", "--at", T0]
        if r.random() < 0.5:
            argv.append("--dry-run")
        return Case("expr", {}, [Command(argv), tick(T1)], f"group {campaign} {action}")
    doc = skeleton(r)
    where = ["rulesets", "rulesets", "exclude", "when", "exit_when", "event", "goal", "branch", "wait_for", "consent"][choice]
    if where == "rulesets":
        doc["audience"]["rulesets"] = {"r": expr} if r.random() < 0.5 else {"r": expr, "fi": 'partner.country == "FI"'}
    elif where == "exclude":
        doc["audience"]["exclude"] = expr
    elif where == "when":
        doc["steps"][0]["when"] = expr
    elif where == "exit_when":
        doc["exit_when"] = expr
    elif where == "event":
        doc["trigger"] = {"event": "invoice.payment_failed", "when": expr}
    elif where == "goal":
        doc["goal"] = {"when": expr, "within": "30d"}
    elif where == "branch":
        doc["steps"].insert(1, {"id": "br", "branch": [{"when": expr, "goto": "note"}]})
    elif where == "wait_for":
        doc["steps"][1] = {"wait": {"for": expr, "at_most": "2h"}}
    else:  # a message's `when` and a ruleset at once
        doc["steps"][2]["when"] = expr
        doc["audience"]["rulesets"]["r"] = expr
    text = dump(doc)
    files = {"campaigns/fuzz.yaml": encode(r, text)}
    extra = []
    if where == "event":  # an event for the trigger to evaluate the condition on
        events = [{"type": "invoice.payment_failed", "at": "2026-07-01T00:30:00Z", "partner": "p002",
                   "data": {"amount": pick(r, [150, "x", None, 10**30, 1.5, [1]])}}]
        files["fuzz-events.jsonl"] = encode(r, "\n".join(json.dumps(e) for e in events) + "\n")
        extra = [Command(["-w", WS, "events", "import", f"{WS}/fuzz-events.jsonl", "--at", T1], env=AS_ALICE)]
    commands = extra + file_kind_commands(r, "fuzz", "fuzz.yaml", None)
    return Case("expr", files, commands, f"expression in {where}: {expr[:200]!r}")


# --- templates -------------------------------------------------------------------------------------


def gen_template(r: random.Random) -> Case:
    text = gen_template_text(r)
    if r.random() < 0.25:
        text = pick(r, TEMPLATE_BOMBS) + text
    files: dict[str, Any] = {}
    choice = r.randrange(10)
    if choice <= 5:  # in a new campaign: rendered at T1 for its audience
        doc = skeleton(r)
        place = r.randrange(7)
        if place == 0:
            doc["steps"][0]["email"] = {"subject": "S", "template": "fuzz.txt.j2"}
            files["templates/fuzz.txt.j2"] = encode(r, text)
        elif place == 1:
            doc["steps"][0]["email"]["body"] = text
        elif place == 2:
            doc["steps"][0]["email"]["subject"] = text
        elif place == 3:
            doc["steps"][0] = {"id": "hello", "sms": {"text": text}}
        elif place == 4:
            doc["steps"][0] = {"id": "hello", "activity": {"kind": "task", "assignee": text, "subject": text}}
        elif place == 5:
            doc["steps"][0] = {"id": "hello", "letter": {"template": "fuzz.txt.j2"}}
            files["templates/fuzz.txt.j2"] = encode(r, text)
        else:
            doc["steps"][0]["email"]["translations"] = {"fi": {"subject": "T", "body": text}}
        if r.random() < 0.3:  # everyone, not only the Finnish and the big
            doc["audience"]["rulesets"] = {"all": "true"}
        files["campaigns/fuzz.yaml"] = encode(r, dump(doc))
        commands = file_kind_commands(r, "fuzz", "fuzz.yaml", None)
        note = f"template in a new campaign (place {place})"
    elif choice <= 7:  # an example template replaced
        name = pick(r, list(example_templates()))
        data = encode(r, text) if r.random() < 0.7 else mutate_bytes(r, encode(r, example_templates()[name]))
        files[f"templates/{name}"] = data
        commands = file_kind_commands(r, "partner-onboarding", "partner-onboarding.yaml", "partner-onboarding")
        note = f"templates/{name} replaced"
    else:  # a template file as a symlink out of the workspace (issue item 16) or odd template names
        doc = skeleton(r)
        name = pick(r, ["fuzz.txt.j2", "../partners.csv", "/etc/hostname", "", "nope.j2", "fuzz dir/x.j2"])
        doc["steps"][0]["email"] = {"subject": "S", "template": name}
        files["campaigns/fuzz.yaml"] = encode(r, dump(doc))
        if name == "fuzz.txt.j2":
            files["templates/fuzz.txt.j2"] = {"symlink": "../../secret.txt"}
        commands = file_kind_commands(r, "fuzz", "fuzz.yaml", None)
        note = f"template {name!r}"
    return Case("template", files, commands, note + f": {text[:200]!r}", forbid_in_outbox=["FUZZ-SECRET-42"])


# --- partners ----------------------------------------------------------------------------------------

BAD_IDS = ["p8\r\nX", "p8\nX", "p8\rX", "", " ", "X\ud800Y", "a:b", "p001:1:welcome", "x" * 10_000, "p001 ", " p001",
           "P001", "p\u0000", "ü", "e\u0301", "\u202ep", "1e5", "null", "0", "-", "p001", "p002", "'; DROP TABLE partners; --",
           "%", "_", "*", "\t", "😀", "\ufeff"]


def bad_value(r: random.Random, kind: Any) -> Any:
    if kind == "number":
        return pick(r, ["abc", "1e400", "NaN", "-0", "9" * 500, "1,5", "Infinity", "0x10", "", " 1 ", "1_000"])
    if kind == "date":
        return pick(r, ["2026-13-45", "9999-12-31", "0000-00-00", "0001-01-01", "tomorrow", "2026-02-30", "", "20260701"])
    if kind == "datetime":
        return pick(r, ["2026-07-01T25:00", "9999-12-31T23:59:59Z", "2026-07-01T09:00+99:00", "x", "0001-01-01T00:00"])
    if kind == "bool":
        return pick(r, ["yes", "2", "TRUE", "nope", "", "null", "1", "0"])
    if kind == "list[string]":
        return pick(r, [";;;", ";" * 10_000, "a;" * 1000, "\ud800", "vip;\r\nx"])
    if isinstance(kind, dict):
        return pick(r, ["diamond", "", "GOLD", "gold ", "\ud800"])
    return odd_string(r)


def gen_partners(r: random.Random) -> Case:
    header, rows = partner_rows()
    fields = partner_fields()
    chosen = [list(row) for row in rows if r.random() < 0.8]
    for _ in range(r.randint(0, 6)):
        if not chosen:
            break
        row = pick(r, chosen)
        op = r.randrange(6)
        if op == 0:
            row[0] = pick(r, BAD_IDS)
        elif op <= 2 and len(row) > 1:
            i = r.randrange(1, min(len(row), len(header)))
            row[i] = bad_value(r, fields.get(header[i], "string"))
        elif op == 3 and len(row) > 1:
            i = r.randrange(1, min(len(row), len(header)))
            row[i] = pick(r, ["x" * 1_000_000, "y" * 100_000])
        elif op == 4 and len(row) > 1:
            del row[r.randrange(1, len(row)):]
        else:
            row.extend(odd_string(r) for _ in range(r.randint(1, 3)))
    chosen = [row for row in chosen if row[0] != CONTROL_PARTNER]
    if r.random() < 0.2 and chosen:
        chosen.append(list(pick(r, chosen)))  # a duplicate id
    control = True
    header_out = list(header)
    if r.random() < 0.12:
        control = False
        op = r.randrange(5)
        if op == 0:
            header_out[r.randrange(len(header_out))] = pick(r, ["", "id", "nope", "name", "\ud800", "x" * 1000])
        elif op == 1:
            header_out.append("extra")
        elif op == 2:
            del header_out[r.randrange(1, len(header_out))]
        elif op == 3:
            header_out.remove("id")
        else:
            r.shuffle(header_out)
    if r.random() < 0.65:
        return _partners_csv(r, header_out, chosen, control)
    return _partners_jsonl(r, header, chosen, control)


def _partners_csv(r: random.Random, header: list[str], rows: list[list[str]], control: bool) -> Case:
    head = io.StringIO()
    csv.writer(head, lineterminator="\n").writerow(header)
    head.write(CONTROL_CSV_ROW + "\n")
    body = io.StringIO()
    csv.writer(body, lineterminator=pick(r, ["\n", "\r\n"])).writerows(rows)
    head_bytes = encode(r, head.getvalue())
    body_bytes = encode(r, body.getvalue())
    note = f"partners.csv: {len(rows)} records"
    if r.random() < 0.35:
        body_bytes = mutate_bytes(r, body_bytes)
        note += " + byte mutations"
    if r.random() < 0.05:
        body_bytes = pick(r, [b"", b"\x00" * 1000, bytes(range(256)) * 10, b'"unterminated,quote\n' + body_bytes])
        note += " + junk"
    commands = _partner_commands(r, "partners.csv", control)
    return Case("partners", {"partners.csv": head_bytes + body_bytes}, commands, note)


def _typed(value: str, kind: Any) -> Any:
    if value == "":
        return None
    try:
        if kind == "number":
            return float(value) if "." in value else int(value)
        if kind == "bool":
            return {"true": True, "false": False}.get(value, value)
    except ValueError:
        return value
    if kind == "list[string]":
        return value.split(";")
    return value


def _partners_jsonl(r: random.Random, header: list[str], rows: list[list[str]], control: bool) -> Case:
    fields = partner_fields()
    control_record = {k: _typed(v, fields.get(k, "string")) for k, v in zip(header, CONTROL_CSV_ROW.split(","))}
    control_record = {k: v for k, v in control_record.items() if v is not None}
    lines = [json.dumps(control_record, ensure_ascii=r.random() < 0.5)]
    for row in rows:
        record: dict[str, Any] = {k: _typed(v, fields.get(k, "string")) for k, v in zip(header, row)}
        record = {k: v for k, v in record.items() if v is not None}
        if r.random() < 0.15:
            key = pick(r, list(record) or ["id"])
            record[key] = pick(r, [10**400, -(10**400), float("nan"), float("inf"), [1, [2]], {"a": {"b": None}},
                                   "X\ud800Y", "\u0000", True, 1.5, None, "x" * 100_000, [None]])
        if r.random() < 0.05:
            record["id"] = pick(r, [123, None, ["p001"], {"x": 1}, 1.5, True])
        try:
            lines.append(json.dumps(record, ensure_ascii=r.random() < 0.7))
        except ValueError:
            lines.append(json.dumps({k: str(v) for k, v in record.items()}))
    for _ in range(r.randint(0, 2) if r.random() < 0.3 else 0):
        lines.insert(r.randint(1, len(lines)), pick(r, ["", "[]", "1", "null", "\"str\"", "{", "{\"id\": \"p9\"",
                                                        "[" * 100_000, "{\"a\":" * 50_000, "NaN", "{\"id\": NaN}",
                                                        "{\"id\": \"x\", \"id\": \"y\"}", "\ufeff{}", "{\"id\":\"X\\ud800Y\"}"]))
    head = encode(r, lines[0] + "\n")
    body = encode(r, "\n".join(lines[1:]) + ("\n" if r.random() < 0.9 else ""))
    note = f"partners.jsonl: {len(rows)} records"
    if r.random() < 0.3:
        body = mutate_bytes(r, body)
        note += " + byte mutations"
    settings = (EXAMPLES / "engine.yaml").read_text(encoding="utf-8").replace("source: partners.csv", "source: partners.jsonl")
    files = {"partners.jsonl": head + body, "engine.yaml": settings.encode("utf-8")}
    return Case("partners", files, _partner_commands(r, "partners.jsonl", control), note)


def _partner_commands(r: random.Random, source: str, control: bool) -> list[Command]:
    first = Command(["-w", WS, "tick", "--at", T1], control=control)
    if r.random() < 0.35:
        other = pick(r, [["check"], ["check", "--json"], ["status", "--partner", pick(r, partner_ids())],
                         ["explain", "partner-onboarding", "--partner", pick(r, partner_ids() + BAD_IDS[:8]), "--at", T1],
                         ["test", "partner-onboarding", "--sample", f"{WS}/{source}", "--at", T1], ["plan"],
                         ["group", "nurture", "dedupe", pick(r, ["email", "company", "opt-outs"]), "--as", "alice",
                          "--at", T0, "--dry-run"]])
        commands = [Command(["-w", WS, *other]), first]
    else:
        commands = [first]
    if r.random() < 0.3:
        commands.append(Command(["-w", WS, "tick", "--at", T2], control=control))
    return commands


# --- events ------------------------------------------------------------------------------------------

EVENT_TYPES = ["opened", "clicked", "bounced", "unsubscribed", "opted_in", "terms.accepted", "read",
               "invoice.payment_failed", "invoice.paid", "unknown.type", "", "x" * 1000, "OPENED", "a..b", ".", "\ud800"]


def gen_event(r: random.Random) -> Any:
    event: dict[str, Any] = {
        "type": pick(r, EVENT_TYPES) if r.random() < 0.9 else random_scalar(r),
        "at": pick(r, ["2026-07-01T00:30:00Z", "2026-06-30T12:00:00Z", "2026-07-01T00:45:00+03:00", "2026-07-01T00:59",
                       "2026-07-01"]) if r.random() < 0.7 else pick(r, EDGE_DATETIMES + EDGE_DATES),
        "partner": pick(r, partner_ids()) if r.random() < 0.8 else pick(r, BAD_IDS),
    }
    if r.random() < 0.5:
        event["campaign"] = pick(r, CAMPAIGN_IDS + ["nope", ""])
        event["step"] = pick(r, STEP_IDS + ["nope", ""])
    if r.random() < 0.2:
        event["message"] = pick(r, ["partner-onboarding:p001:1:welcome:1", "nope", "", "a:b:c:d:e", "x" * 1000])
    if r.random() < 0.6:
        data: Any = {"amount": pick(r, [150, 50, "x", None, 10**400, 1e308, float("nan")]),
                     "kind": pick(r, ["hard", "soft", "", "nope", None]),
                     "channel": pick(r, ["email", "sms", "fax", "", 123, None]),
                     "url": pick(r, ["https://example.com/", "javascript:alert(1)", "x" * 10_000]),
                     "note": pick(r, ["X\ud800Y", "\u0000", "ok", "e\u0301", {"deep": [1, {"x": "\udfff"}]}])}
        for key in list(data):
            if r.random() < 0.5:
                del data[key]
        if r.random() < 0.1:
            data = pick(r, [[], "x", 1, None, [{"a": 1}]])
        event["data"] = data
    if r.random() < 0.3:
        event["id"] = pick(r, ["e1", "e1", "", 1, None, "x" * 1000, "\ud800"])
    for key in list(event):
        if r.random() < 0.05:
            del event[key]
    if r.random() < 0.05:
        event[pick(r, ["extra", "", "type"])] = random_scalar(r)
    if event.get("partner") == CONTROL_PARTNER:
        event["partner"] = "p001"
    return event


def gen_events(r: random.Random) -> Case:
    lines = list(example_events()) if r.random() < 0.5 else []
    for _ in range(r.randint(1, 12)):
        event = gen_event(r)
        try:
            lines.insert(r.randint(0, len(lines)), json.dumps(event, ensure_ascii=r.random() < 0.7))
        except ValueError:
            lines.append(json.dumps({k: str(v) for k, v in event.items()}))
    if r.random() < 0.3:
        for _ in range(r.randint(1, 3)):
            lines.insert(r.randint(0, len(lines)), pick(r, ["", "   ", "[]", "1", "null", "{", "not json", "[" * 100_000,
                                                            "{\"a\":" * 50_000, "{\"type\": \"opened\", \"at\": NaN}",
                                                            "{\"type\": \"opened\"}\u2028", "\ufeff{}", "{}",
                                                            "{\"type\":\"opened\",\"partner\":\"p001\",\"at\":\"2026-07-01T00:30:00Z\",\"data\":{\"x\":\"\\ud800\"}}"]))
    data = encode(r, "\n".join(lines) + ("\n" if r.random() < 0.9 else ""))
    note = f"{len(lines)} event lines"
    if r.random() < 0.25:
        data = mutate_bytes(r, data)
        note += " + byte mutations"
    path = f"{WS}/fuzz-events.jsonl"
    choice = r.random()
    if choice < 0.75:
        commands = [Command(["-w", WS, "events", "import", path, "--at", T1], env=AS_ALICE)]
        if r.random() < 0.2:
            commands.append(Command(["-w", WS, "events", "import", path, "--at", T1], env=AS_ALICE))
    else:
        commands = [Command(["-w", WS, "simulate", "--from", T1, "--until", "2026-07-01T03:00:00Z", "--every", "1h",
                             "--events", path])]
    commands.append(tick(T1))
    if r.random() < 0.25:
        commands.append(tick(T2))
    return Case("events", {"fuzz-events.jsonl": data}, commands, note)


# --- command lines -----------------------------------------------------------------------------------

LEGIT_TIMES = ["2026-07-01T00:30:00Z", "2026-06-30T23:00:00Z", "2026-07-01", "2026-07-01T03:00", "2026-06-30",
               "2026-07-01T00:45:00+03:00"]  # within hours of T0: cheap, and before T1
EDGE_TIMES = ["9999-12-31T23:59:59Z", "9999-12-31", "0001-01-01", "0001-01-01T00:00:00Z", "0000-00-00", "10000-01-01",
              "", " ", "yesterday", "2026-13-01", "2026-02-30", "2026-07-01T24:00", "2026-07-01T09:00+25:00", "1e400",
              "-1", "2026-07-01T09:00:00.1234567Z", "٢٠٢٦-٠٧-٠١", "2026-07-01 09:00", "2026-07-01T09:00:00+03:00:00",
              "2026-W27", "20260701", "\udcff", "2026-07-01\n", "--at", "T"]
LEGIT_EVERY = ["1h", "2h", "30m"]
EDGE_EVERY = ["0m", "0h", "-1h", "99999999999w", "1000000000000000000000d", "", "abc", "1x", "1.5h", "1s", "٣h",
              "1h1m", " 1h", "9" * 30 + "s", "1w"]
EDGE_INTS = ["0", "-1", "99999999999999999999999", "9223372036854775808", "x", "1e3", "", " 1", "٣"]
USERS = ["alice", "bob", "", "nobody", "ALICE", "\udcff", "alice\n"]
EDGE_PARTNERS = ["", " ", "nope", "p001\r\nX", "p0" * 100, "\udcff", "'; DROP TABLE x;--", "%", "*", "p001:1", "-p"]
EDGE_CAMPAIGNS = ["nope", "", "../engine", "a:b", "x" * 300, "\udcff", "-", "campaigns/nurture.yaml", "nurture.yaml",
                  "NURTURE", "%", "broken"]
ACTIVITY_IDS = ["demo-invite:p001:1:prepare-demo:1", "demo-invite:p001:1:demo-confirmation:1",
                "partner-onboarding:p001:1:welcome:1", "nope", "", "a:b:c:d:e", "demo-invite:p001:1:prepare-demo:99",
                "x" * 1000]
RESPONSES = ["ready", "blocked", "interested", "not-now", "nope", "", "READY", "\udcff"]
PATHS = [WS, f"{WS}/campaigns/nurture.yaml", f"{WS}/campaigns", "nonexistent", "", f"{WS}/partners.csv",
         f"{WS}/engine.yaml", "other/bad.yaml", f"{WS}/templates/letter.txt.j2", f"{WS}/events.jsonl", ".", "-"]
STORES = ["sqlite:///.engine/other.db", "sqlite:////nonexistent/dir/x.db", "mysql://x", "", "sqlite:///",
          "sqlite:///.engine", "sqlite:///partners.csv", "postgresql://127.0.0.1:1/x?connect_timeout=2",
          "sqlite:///.engine/state.db", "sqlite://relative", "%", "\udcff", "file:///x"]


@cache
def cli_spec() -> dict[tuple[str, ...], dict[str, Any]]:
    """Every (sub)command of the ``engine`` parser with its positionals and options."""
    import argparse

    from engine.cli import build_parser

    spec: dict[tuple[str, ...], dict[str, Any]] = {}

    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            for name, sub in subs[0].choices.items():
                walk(sub, prefix + (name,))
            return
        positionals, options = [], []
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if action.option_strings:
                options.append({"flags": action.option_strings, "dest": action.dest, "nargs": action.nargs,
                                "required": action.required, "choices": list(action.choices or []),
                                "flag": action.nargs == 0, "append": isinstance(action, argparse._AppendAction)})
            else:
                positionals.append({"dest": action.dest, "nargs": action.nargs, "choices": list(action.choices or [])})
        spec[prefix] = {"positionals": positionals, "options": options}

    walk(build_parser(), ())
    return spec


def cli_value(r: random.Random, dest: str, choices: list, command: tuple[str, ...]) -> str:
    edge = r.random() < 0.3
    if choices and not edge:
        return str(pick(r, choices))
    if choices and r.random() < 0.5:
        return pick(r, ["", "nope", "EMAIL", "\udcff", str(choices[0]) + " "])
    if dest in ("at", "on", "until", "start"):
        return pick(r, EDGE_TIMES) if edge else pick(r, LEGIT_TIMES)
    if dest == "every":
        return pick(r, EDGE_EVERY) if edge else pick(r, LEGIT_EVERY)
    if dest in ("partner", "partners"):
        return pick(r, EDGE_PARTNERS) if edge else pick(r, partner_ids()[:30])
    if dest in ("campaign",):
        return pick(r, EDGE_CAMPAIGNS) if edge else pick(r, CAMPAIGN_IDS)
    if dest == "step":
        return pick(r, ["", "nope", "a:b", "welcome\n", "\udcff"]) if edge else pick(r, STEP_IDS)
    if dest == "user":
        return pick(r, USERS)
    if dest in ("limit", "number"):
        return pick(r, EDGE_INTS) if edge else pick(r, ["1", "2", "10"])
    if dest == "store":
        return pick(r, STORES)
    if dest == "workspace":
        return pick(r, [WS, WS, "nonexistent", "", f"{WS}/campaigns", f"{WS}/engine.yaml", "."])
    if dest == "paths":
        return pick(r, PATHS)
    if dest in ("file", "events", "sample"):
        return pick(r, [f"{WS}/events.jsonl", f"{WS}/partners.csv", "nonexistent.jsonl", WS, "/dev/null", "",
                        f"{WS}/engine.yaml", f"{WS}/campaigns/nurture.yaml"])
    if dest in ("old", "new", "textconv"):
        return pick(r, [f"{WS}/campaigns/nurture.yaml", f"{WS}/campaigns/demo-invite.yaml", "HEAD:campaigns/nurture.yaml",
                        "HEAD~99999:x", ":", "a:b:c", "nonexistent.yaml", "", f"{WS}/partners.csv", f"{WS}/engine.yaml",
                        "--output={case}/diff-out.txt", "--output={case}/diff-out.txt:nurture.yaml"])
    if dest == "target":
        return pick(r, ACTIVITY_IDS)
    if dest == "response":
        return pick(r, RESPONSES)
    if dest == "answers":
        return pick(r, ["q=a", "=", "x", "", "q=" + "a" * 10_000, "\udcff=1"])
    if dest == "duration":
        return pick(r, EDGE_EVERY + ["15m", "1h"])
    if dest == "argument":
        return pick(r, ["summit-2026", "nope", "p001", "email", "company", "opt-outs", "demo-invite", ""]) if r.random() < 0.6 \
            else expression(r)
    if dest == "assignee":
        return pick(r, ["presales@example.com", "", "\udcff"])
    if dest in ("page", "popup"):
        return pick(r, ["dashboard", "deals", "", "nope", "summer-webinar:p001:1:invite-popup:1", "\udcff"])
    if dest == "kind":
        return pick(r, ["campaign", "settings", "nope", ""])
    return pick(r, ["", "x", "\udcff", "-", "--", "1"])


READ_ONLY = {"check", "schema", "status", "steps", "log", "activities", "consent", "mailings", "outbox", "stats",
             "alerts", "popups", "test", "explain", "plan", "diff", "simulate", "fmt"}
OPERATIONS = {"start", "pause", "resume", "remove", "skip", "rerun", "respond", "draft", "group", "popup", "events"}


NEVER_ENDING = {"serve"}  # a server runs until stopped: its arguments are tested in tests/web


def gen_cli(r: random.Random) -> Case:
    spec = cli_spec()
    command = pick(r, sorted(c for c in spec if c[0] not in NEVER_ENDING))
    info = spec[command]
    argv: list[str] = []
    workspace = WS if r.random() < 0.92 else cli_value(r, "workspace", [], command)
    argv += ["-w", workspace]
    argv += list(command)
    for pos in info["positionals"]:
        count = {None: 1, "?": r.randint(0, 1), "*": r.randint(0, 2), "+": r.randint(1, 2)}.get(pos["nargs"], 1)
        argv += [cli_value(r, pos["dest"], pos["choices"], command) for _ in range(count)]
    legit_range = command[0] in ("run", "simulate") and r.random() < 0.6
    for opt in info["options"]:
        if opt["dest"] in ("workspace", "help"):
            continue
        # tick and run always get --at: without it they tick up to the wall clock, months of the hourly
        # control campaign after T0: legitimate work, far more than a case's time limit
        must = opt["dest"] == "at" and command[0] in ("tick", "run")
        if not (opt["required"] or must or r.random() < 0.35 or (opt["dest"] == "at" and r.random() < 0.9)):
            continue
        flag = pick(r, opt["flags"])
        if opt["flag"]:
            argv.append(flag)
            continue
        for _ in range(2 if opt["append"] and r.random() < 0.3 else 1):
            argv += [flag, cli_value(r, opt["dest"], opt["choices"], command)]
    if legit_range:  # a bounded legitimate period: at most a few ticks
        argv = [a for a in argv]
        start = pick(r, ["2026-07-01T00:30:00Z", "2026-06-30T22:00:00Z"])
        _set_option(argv, "--from", start) if command[0] == "simulate" or r.random() < 0.5 else None
        _set_option(argv, "--until", pick(r, ["2026-07-01T03:00:00Z", "2026-07-01T01:00:00Z"]))
        _set_option(argv, "--every", pick(r, LEGIT_EVERY))
    perturbed = False
    if r.random() < 0.2 and command[0] not in ("tick", "run"):  # (a perturbation could drop --at)
        perturbed = True
        op = r.randrange(8)
        if op == 0 and len(argv) > 3:
            del argv[r.randrange(3, len(argv))]
        elif op == 1:
            argv.insert(r.randint(2, len(argv)), pick(r, ["--nope", "-x", "--", "---", "-", "--json", "--at"]))
        elif op == 2:
            argv.append(pick(r, ["--help", "-h"]))
        elif op == 3:
            argv += ["--", pick(r, ["--output={case}/diff-out.txt", "--output={case}/diff-out.txt:nurture.yaml"])]
        elif op == 4:
            argv.insert(2, pick(r, ["--json", "--store", "--at", "--as"]))
        elif op == 5:
            argv.append(odd_string(r).replace("\x00", "") or "x")
        elif op == 6 and len(argv) > 2:
            i = r.randrange(2, len(argv))
            argv[i] = argv[i] + pick(r, ["\udcff", "\r\n", " ", "="])
        else:
            argv = argv[:2] + ["--help"]
    argv = [a.replace("\x00", "") for a in argv]
    # the control tick at T1, when this command may not legitimately keep the control from sending
    mentions_control = any(CONTROL_CAMPAIGN in a or CONTROL_PARTNER in a for a in argv)
    name = command[0]
    timed_ok = all(not (a in ("--at", "--on") and i + 1 < len(argv) and argv[i + 1] not in LEGIT_TIMES)
                   for i, a in enumerate(argv)) and ("--at" in argv or name in READ_ONLY or name == "popup")
    checks = not mentions_control and name not in ("tick", "run") and (name in READ_ONLY or (name in OPERATIONS and timed_ok))
    env = {"ENGINE_USER": pick(r, ["alice", "bob", "nobody"])} if r.random() < 0.5 else {}
    commands = [Command(argv, env=env)]
    if checks and r.random() < 0.6:
        commands.append(tick(T1))
    note = " ".join(command) + (" (perturbed)" if perturbed else "")
    return Case("cli", {}, commands, note, forbid_files=["diff-out.txt*", f"{WS}/diff-out.txt*"])


def _set_option(argv: list[str], flag: str, value: str) -> None:
    if flag in argv:
        i = argv.index(flag)
        if i + 1 < len(argv):
            argv[i + 1] = value
            return
    argv += [flag, value]


# --- entry points -----------------------------------------------------------------------------------

GENERATORS: dict[str, Callable[[random.Random], Case]] = {
    "yaml": gen_yaml, "expr": gen_expr, "template": gen_template, "partners": gen_partners, "events": gen_events,
    "cli": gen_cli,
}


def generate(kind: str, r: random.Random) -> Case:
    return GENERATORS[kind](r)


def generate_case(seed: int, index: int, kinds: tuple[str, ...] = KINDS) -> Case:
    """Case number ``index`` of run ``seed``: the same case whatever the number of workers."""
    r = random.Random(f"{seed}:{index}")
    kind = kinds[index % len(kinds)]
    case = generate(kind, r)
    case.seed = f"{seed}:{index}"
    return case


def cases(kind: str):
    """A hypothesis strategy of cases of one kind."""
    from hypothesis import strategies as st

    return st.randoms(use_true_random=False, note_method_calls=False).map(lambda r: generate(kind, r))
