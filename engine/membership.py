"""What leaving a campaign's target group does to the partner's enrollment there.

A member is enrolled by the tick with origin ``manual`` and source ``member``: the target group
is the only reason they are in the campaign. When they leave the group (``engine group C
remove``, ``remove-group``, ``remove-campaign``, ``keep-filter``, ``dedupe``, or their line
leaving the static group file they were added from), that enrollment is removed too: status
``removed``, reason ``target_group``, one audit-log line each. Enrollments that a trigger, a
person (``engine start``) or a response started stay: the partner is in the campaign for a
reason of its own.

Used by the group operations and by the tick; it imports neither.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Mapping, Sequence

from campaigns.enrollment import CURRENT, Operation, Status, transition

from .store import Enrollment, Store

MEMBER_SOURCE = "member"  # the source of an enrollment the target group started
TARGET_GROUP = "target_group"  # the reason of an enrollment removed with its membership
GROUPS_SEEN = "groups.seen"  # meta: the static group files' digest as the last tick saw them


def enrolled_as_member(e: Enrollment) -> bool:
    """Whether the target group (not a trigger, a person or a response) started the enrollment."""
    return e.origin == "manual" and e.source == MEMBER_SOURCE


def started_by(e: Enrollment) -> str:
    """What started the enrollment, in the words of the partner campaign list: ``automatic``
    (a trigger), ``manual`` (a person), ``follow_up`` (a response) or ``group`` (the target
    group)."""
    return started_by_row(e.origin, e.source)


def started_by_row(origin: str, source: str | None) -> str:
    """:func:`started_by` of an enrollment's stored origin and source."""
    if origin == "manual" and source == MEMBER_SOURCE:
        return "group"
    return {"trigger": "automatic", "follow_up": "follow_up"}.get(origin, "manual")


def member_enrollments(store: Store, campaign_id: str, partners: Sequence[str]) -> list[Enrollment]:
    """The current enrollments in the campaign that the target group started, of these partners."""
    history = store.history(list(partners)) if partners else {}
    return [e for pid in partners for e in history.get(pid, [])
            if e.campaign == campaign_id and e.status in CURRENT and enrolled_as_member(e)]


def end_member_enrollments(store: Store, campaign_id: str, partners: Sequence[str], at: datetime,
                           user: str) -> list[str]:
    """Remove (reason target_group) the enrollments the target group started, of partners who
    just left it; the partners whose enrollment ended. In the caller's transaction."""
    ended = []
    for e in member_enrollments(store, campaign_id, partners):
        transition(Operation.REMOVE, Status(e.status), partner=e.partner, campaign=campaign_id)
        store.update_enrollment(e, status="removed", reason=TARGET_GROUP, finished_at=at, due_at=None)
        store.log(at, user, "remove", campaign_id, e.partner, number=e.number, reason=TARGET_GROUP)
        ended.append(e.partner)
    return ended


def groups_digest(groups: Mapping[str, frozenset[str]]) -> str:
    """One digest of every static group's members, to notice that a group file changed."""
    text = json.dumps({name: sorted(ids) for name, ids in sorted(groups.items())})
    return hashlib.sha256(text.encode()).hexdigest()


def leave_static_groups(store: Store, groups: Mapping[str, frozenset[str]], at: datetime, user: str) -> int:
    """Members added from a static group (``engine group C add-group G``) who are no longer in
    ``groups/G.csv`` leave the target group, and their member enrollments end. Only when a
    group file changed since the last tick; the number of memberships that ended. In the
    caller's transaction."""
    digest = groups_digest(groups)
    if store.meta(GROUPS_SEEN) == digest:
        return 0
    gone: dict[str, list[str]] = {}
    for campaign_id, partner, origin in store.members_from_groups():
        if partner not in groups.get(origin.removeprefix("group:"), frozenset()):
            gone.setdefault(campaign_id, []).append(partner)
    for campaign_id, partners in gone.items():
        store.remove_members(campaign_id, partners)
        ended = end_member_enrollments(store, campaign_id, partners, at, user)
        store.log(at, user, "group.left", campaign_id, removed=len(partners), ended=len(ended))
    store.set_meta(GROUPS_SEEN, digest)
    return sum(len(p) for p in gone.values())
