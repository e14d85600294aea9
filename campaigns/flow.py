"""A campaign's steps as one explicit graph: the sequence of the file, plus the jumps.

Everything that asks "where does an enrollment go next" reads this one structure: the checker
(unknown targets, backward jumps, unreachable steps), the tick (positions and due times), the
operations (a response's ``goto``), ``engine test``, ``explain``, ``diff``, ``plan`` and the drawn
flow. Built once per campaign model (:func:`flow_of`) and never changed.

Nodes are the items of ``steps:`` in file order:

- an action step (email, sms, popup, activity, letter), a ``branch`` and a ``wait: {for}`` are
  *positions*: an enrollment can be waiting at one, and each leaves a step run when passed or
  jumped over;
- a duration or ``{until}`` wait is folded into due times, and is a position only as a jump
  target (when it has an id): the wait then counts from the jump.

A wait-for without an id still needs a position: it gets the key ``wait@PREVIOUS`` (the id of
the nearest step with an id before it, ``start`` at the top; ``wait@PREVIOUS.2`` for a second
one), so the key stays the same when steps elsewhere are added or removed, and a rename of that
step (``renamed_from``) renames the wait with it. Giving it an id is better.

Jumps go forward only (the checker refuses the others): a branch case, a response's ``goto``,
and a split path. Their target is a node key or :data:`END`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo

from .enrollment import next_due
from .shapes import END, Branch, Campaign, Located, Split, Step, Wait, WaitFor

POSITION_KINDS = ("email", "sms", "popup", "activity", "letter", "branch", "split", "wait_for")
CHOICE_KINDS = ("branch", "split")  # positions that choose where to go, and send nothing


@dataclass(frozen=True)
class Jump:
    """Where a node may send an enrollment other than to the next node."""

    target: str  # a node key or END
    reason: str  # branch | split | response: the skip reason of the nodes jumped over
    label: str  # "case 2", "else", the split path's key, or the response key
    owner: Located  # the case or response that says so (its ``goto`` / ``else`` is the position)
    field: str  # "goto" or "else_"


@dataclass(frozen=True)
class Node:
    index: int
    key: str | None  # None: a plain wait without an id
    kind: str  # an action kind, "branch", "split", "wait" or "wait_for"
    item: Step | Wait | Branch | Split
    jumps: tuple[Jump, ...] = ()
    falls_through: bool = True  # may go on with the next node (a branch ending in `else` never does)
    old_keys: tuple[str, ...] = ()  # the keys it had: its `renamed_from`, or for a wait-for without
    # an id, the keys the renames of the step before it gave it

    @property
    def is_position(self) -> bool:
        return self.kind in POSITION_KINDS

    @property
    def wait_for(self) -> WaitFor | None:
        return self.item.wait if isinstance(self.item, Wait) and isinstance(self.item.wait, WaitFor) else None


class Flow:
    """The graph of one campaign's steps."""

    def __init__(self, campaign: Campaign):
        self.nodes: tuple[Node, ...] = tuple(_nodes(campaign))
        self._index = {n.key: n.index for n in self.nodes if n.key is not None}
        self._at_once: dict[str, tuple[str, ...]] = {}
        self.renamed: dict[str, str] = {}  # an old id → the id that node has now
        for n in self.nodes:
            for old in n.old_keys:
                if old not in self._index:
                    self.renamed.setdefault(old, n.key)  # type: ignore[arg-type]

    # --- names -----------------------------------------------------------------------------

    def resolve(self, key: str | None) -> str | None:
        """The key a stored position has now (following ``renamed_from``), or None when it left the file."""
        if key is None:
            return None
        if key in self._index:
            return key
        return self.renamed.get(key)

    def node(self, key: str | None) -> Node | None:
        key = self.resolve(key)
        return self.nodes[self._index[key]] if key is not None else None

    def names(self, key: str) -> tuple[str, ...]:
        """A node's id and the ids it had: what its history in the store may be recorded under."""
        node = self.node(key)
        return (node.key, *node.old_keys) if node is not None and node.key is not None else (key,)

    @property
    def keys(self) -> list[str]:
        return [n.key for n in self.nodes if n.key is not None]

    @property
    def positions(self) -> list[Node]:
        return [n for n in self.nodes if n.is_position]

    # --- where an enrollment goes ----------------------------------------------------------

    def first(self, due: datetime, tz: tzinfo) -> tuple[str | None, datetime]:
        """The first position of a new enrollment, and when it is due (``due``: the enrollment time)."""
        return self._from(0, due, tz)

    def after(self, key: str | None, due: datetime, tz: tzinfo) -> tuple[str | None, datetime]:
        """The position after ``key`` (None: the start) and when it is due, ``due`` being when
        ``key`` was due or ended: each wait in between counts from there. None and the end of any
        trailing waits when nothing follows. KeyError when ``key`` left the file."""
        if key is None:
            return self._from(0, due, tz)
        node = self.node(key)
        if node is None:
            raise KeyError(key)
        return self._from(node.index + 1, due, tz)

    def at(self, target: str, due: datetime, tz: tzinfo) -> tuple[str | None, datetime]:
        """Where a jump to ``target`` (not END) at ``due`` puts the enrollment: at that position,
        or, for a plain wait with an id, past the wait counted from the jump."""
        node = self.node(target)
        if node is None:
            raise KeyError(target)
        return self._from(node.index, due, tz)

    def _from(self, index: int, due: datetime, tz: tzinfo) -> tuple[str | None, datetime]:
        for node in self.nodes[index:]:
            if node.is_position:
                return node.key, due
            due = next_due(due, node.item, tz)  # type: ignore[arg-type]
        return None, due

    def jumped_over(self, origin: str | None, target: str, *, inclusive: bool = False) -> list[Node]:
        """The positions a jump from ``origin`` to ``target`` passes over, in order (from the
        start when ``origin`` is None; ``inclusive``: ``origin`` itself too, for an enrollment
        that was waiting at it)."""
        start = 0 if origin is None else self._index[self.resolve(origin)] + (0 if inclusive else 1)
        end = len(self.nodes) if target == END else self._index[self.resolve(target)]
        return [n for n in self.nodes[start:end] if n.is_position]

    def is_before(self, key: str | None, target: str) -> bool:
        """Whether an enrollment at ``key`` has not passed ``target`` (None: past the last step)."""
        if key is None:
            return False
        if target == END:
            return True
        here, there = self.node(key), self.node(target)
        return here is not None and there is not None and here.index <= there.index

    # --- the graph as a whole --------------------------------------------------------------

    def following(self, node: Node, *, at_once: bool = False) -> Iterator[Node]:
        """The nodes ``node`` may lead to: the next one, unless it always jumps, and its jump
        targets (``end`` is no node). ``at_once``: only where a tick may go at the same instant
        (not a response's goto, which comes later)."""
        if node.falls_through and node.index + 1 < len(self.nodes):
            yield self.nodes[node.index + 1]
        for jump in node.jumps:
            target = self.node(jump.target) if jump.target != END else None
            if target is not None and not (at_once and jump.reason == "response"):
                yield target

    def _reach(self, start: Node, follow) -> list[Node]:
        """The nodes reached from ``start`` (itself included) going by ``follow(node)``."""
        reached: dict[int, Node] = {}
        todo = [start]
        while todo:
            node = todo.pop()
            if node.index not in reached:
                reached[node.index] = node
                todo.extend(follow(node))
        return [reached[i] for i in sorted(reached)]

    def reached_at_once(self, key: str) -> tuple[str, ...]:
        """The action steps an enrollment at ``key`` may reach at the same instant: ``key`` and
        what follows it or is jumped to, up to the next wait (a batch asks the store about them
        all at once)."""
        cached = self._at_once.get(key)
        if cached is None:
            start = self.node(key)
            waits = ("wait", "wait_for")
            nodes = [] if start is None or start.kind in waits else self._reach(
                start, lambda n: (f for f in self.following(n, at_once=True) if f.kind not in waits))
            cached = self._at_once[key] = tuple(n.key for n in nodes if n.kind not in CHOICE_KINDS)
        return cached

    def unreachable(self) -> list[Node]:
        """Nodes no enrollment can reach from the start (after a branch that always jumps)."""
        if not self.nodes:
            return []
        reached = {n.index for n in self._reach(self.nodes[0], self.following)}
        return [n for n in self.nodes if n.index not in reached]


def flow_of(campaign: Campaign) -> Flow:
    """The campaign's flow, built once per campaign (parts are immutable: ``campaign.flow``)."""
    return campaign.flow


def position_after(campaign: Campaign, step_id: str | None, due: datetime, tz: tzinfo) -> tuple[str | None, datetime]:
    """:meth:`Flow.after` of the campaign's flow."""
    return flow_of(campaign).after(step_id, due, tz)


def _nodes(campaign: Campaign) -> Iterator[Node]:
    last, last_old = "start", ()  # the nearest id before, and the ids it had
    repeats = 0
    for index, item in enumerate(campaign.steps):
        old = getattr(item, "renamed_from", ())
        if isinstance(item, Step):
            yield Node(index, item.id, item.kind, item, _response_jumps(item), old_keys=old)
        elif isinstance(item, Branch):
            jumps = tuple(Jump(case.target, "branch", "else" if case.else_ is not None else f"case {number}", case,
                               "else_" if case.else_ is not None else "goto")
                          for number, case in enumerate(item.branch, 1))
            yield Node(index, item.id, "branch", item, jumps, falls_through=item.branch[-1].else_ is None,
                       old_keys=old)
        elif isinstance(item, Split):
            jumps = tuple(Jump(path.goto, "split", key, path, "goto") for key, path in item.split.items()
                          if path.goto is not None)
            yield Node(index, item.id, "split", item, jumps,
                       falls_through=any(path.goto is None for path in item.split.values()), old_keys=old)
        elif isinstance(item.wait, WaitFor):
            key = item.id
            if key is None:
                repeats += 1
                suffix = f".{repeats}" if repeats > 1 else ""
                key, old = f"wait@{last}{suffix}", tuple(f"wait@{name}{suffix}" for name in last_old)
            yield Node(index, key, "wait_for", item, old_keys=old)
        else:
            yield Node(index, item.id, "wait", item, old_keys=old)
        if getattr(item, "id", None) is not None:
            last, last_old, repeats = item.id, old, 0


def _response_jumps(step: Step) -> tuple[Jump, ...]:
    responses = getattr(step.action, "responses", None) or {}
    return tuple(Jump(r.goto, "response", key, r, "goto") for key, r in responses.items() if r.goto is not None)
