"""What people do to enrollments (SPEC §7): start, pause, resume, remove, skip, run again.

Each operation is one store transaction: it checks the enrollment's state against the tables in
:mod:`campaigns.enrollment` (a :class:`Refused` changes nothing: exit code 3), makes the change,
and writes who did what, when, to the audit log. Operating on many partners at once is all or
nothing: one refusal refuses the batch.

Decisions where SPEC is silent:

- When ``users`` is configured, an operation needs a user with a role that :data:`ROLES` (the
  one table of who may do what) allows: ``marketing`` for the operations on enrollments and
  target groups; ``events`` or ``marketing`` to import events (``engine events import``) and to
  mark a pop-up read for a partner (``engine popup read``). Without ``users`` anyone may
  operate, and the log records ``--as`` (or ``ENGINE_USER``, else the login name).
- ``--as`` on the local command line is a *declaration*, not authentication: whoever can run
  ``engine`` on the workspace can read and write its store directly, so the check keeps honest
  people from mistakes and the audit log says who acted, no more. The web API authenticates (an
  API key acts as its user, with that user's roles).
- ``start`` ignores the audience's rulesets (a person chose this partner) but not engine.yaml's
  ``exclude``: a partner who must never be contacted cannot be started either.
- ``start --on DATE`` with a date in the future schedules the enrollment for that date's local
  midnight in the campaign's timezone (or that exact time, given one); a date in the past or now
  starts at once.
- ``skip`` marks a step that has not run yet (the next one or a later one) as skipped: when the
  enrollment reaches it, it passes over it, and the waits around it count as before.
- ``rerun`` executes an executed step once more, at the operation's time, with its own message id
  (run 2, 3, …); it still asks for consent and the exclude, but not the step's ``when``.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from campaigns.enrollment import (CURRENT, NotAllowed, Operation, Refused, SkipReason, Status, StepStatus, after_resume,
                                  current_status, PastEnrollment, step_transition, transition, window_opens)
from campaigns.flow import END
from dsl.diagnostics import did_you_mean
from dsl.runtime import Context

from .clock import iso
from .compiled import CompiledCampaign, CompiledWorkspace
from .errors import UnknownName
from .partners import PartnerBook
from .store import Enrollment, Store
from .delivery import deliver
from .tick import StoreFacts, Tick, TickReport, record_effects


MAX_RESULT = 200  # characters of a free result (engine complete)


@dataclass(frozen=True)
class Operator:
    """Everything an operation needs: the store, the compiled workspace, the partners, who and when."""

    store: Store
    plan: CompiledWorkspace
    book: PartnerBook
    user: str
    at: datetime


# Who may do what when engine.yaml lists users (SPEC §7): each action, what it is called in a
# refusal, and the roles that allow it (any one of them). The one place these rules live.
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "operate": ("operate campaigns", ("marketing",)),
    "events.import": ("import events", ("events", "marketing")),
    "popup.read": ("mark pop-ups read", ("marketing", "events")),
    "read": ("read campaigns and partners through the API", ("marketing", "events", "viewer")),
}


def resolve_user(plan: CompiledWorkspace, user: str | None, action: str = "operate") -> str:
    """The user an action (a key of :data:`ROLES`) runs as: ``user``, else ``ENGINE_USER``, else
    (without ``users`` in engine.yaml) the login name; refused unless engine.yaml's users give
    them a role the action needs."""
    what, roles = ROLES[action]
    users = plan.settings.users
    name = (user or os.environ.get("ENGINE_USER") or "").strip()
    if not users:
        return name or getpass.getuser()
    if not name:
        raise NotAllowed(f"engine.yaml lists users: say who you are with --as USER (one of {', '.join(sorted(users))})")
    if name not in users:
        raise NotAllowed(f"unknown user '{name}'{did_you_mean(name, list(users))}: engine.yaml lists {', '.join(sorted(users))}")
    held = users[name].roles
    if not any(role in held for role in roles):
        needed = " or ".join(f"the {role} role" for role in roles)
        raise NotAllowed(f"user '{name}' may not {what}: that needs {needed} "
                      f"(they have {', '.join(held) or 'no roles'})")
    return name


def campaign(op: Operator, campaign_id: str) -> CompiledCampaign:
    compiled = op.plan.campaigns.get(campaign_id)
    if compiled is not None:
        return compiled
    if campaign_id in op.plan.workspace.files:
        raise UnknownName(f"campaign '{campaign_id}' has errors and cannot run: see engine check")
    raise UnknownName(f"unknown campaign '{campaign_id}'{did_you_mean(campaign_id, list(op.plan.workspace.files))}")


def _partner(op: Operator, partner_id: str) -> dict:
    partner = op.book.get(partner_id)
    if partner is None:
        raise UnknownName(f"unknown partner '{partner_id}' (not in the partner source as last imported by a tick)")
    return partner


# --- start ---------------------------------------------------------------------------------------


def start(op: Operator, campaign_id: str, partner_id: str, on: datetime | None = None) -> Enrollment:
    compiled = campaign(op, campaign_id)
    partner = _partner(op, partner_id)
    refuse_start(op, compiled, partner)
    scheduled = on is not None and on > op.at
    with op.store.transaction():
        Tick(op.store, op.plan, op.book, op.at).catch_up(campaign_id, partner_id)
        history = [PastEnrollment(e.campaign, e.number, e.status, e.started_at, e.finished_at)
                   for e in op.store.enrollments_of(partner_id, campaign_id)]
        operation = Operation.SCHEDULE if scheduled else Operation.START
        status = transition(operation, current_status(campaign_id, history), partner=partner_id, campaign=campaign_id)
        begins = on if scheduled and on is not None else op.at
        next_step, due = compiled.flow.first(begins, compiled.local_tz(partner))
        created = op.store.add_enrollment(
            campaign_id, partner_id, status=str(status), origin="manual", source=op.user, created_at=op.at,
            started_at=begins, next_step=next_step, due_at=None if scheduled else due)
        if created is None:
            raise Refused(f"partner {partner_id} already has a current enrollment in {campaign_id}")
        op.store.log(op.at, op.user, "start", campaign_id, partner_id, status=str(status), on=iso(begins))
        enrollment = op.store.enrollment(created)
    deliver(op.store, op.plan, op.at)  # what catching up sent
    assert enrollment is not None
    return enrollment


def refuse_start(op: Operator, compiled: CompiledCampaign, partner: Mapping) -> None:
    """Why the partner cannot be started in the campaign whatever their enrollments say (a
    :class:`Refused`): the campaign is switched off or locked, or engine.yaml excludes them."""
    if not compiled.active:
        raise Refused(f"campaign {compiled.id} is not active (active: false in its file): switch it on to start partners in it")
    refuse_if_locked(op, compiled, "start partners in it")
    if _globally_excluded(op, compiled, partner):
        raise Refused(f"partner {partner[op.plan.id_field]} is excluded from every campaign by engine.yaml's exclude")


def refuse_if_locked(op: Operator, compiled: CompiledCampaign, what: str) -> None:
    """A one-shot campaign that started sending takes no one new."""
    locked = op.store.locks().get(compiled.id)
    if locked is not None:
        raise Refused(f"campaign {compiled.id} started sending at {locked[0]} and is locked: you cannot {what}; "
                      "copy it to a new file to send it to more partners")


def startable(op: Operator, partner_id: str) -> list[dict[str, Any]]:
    """Every campaign, and whether ``engine start`` would start the partner in it now (with
    why not): the partner campaign list's "Start" menu."""
    partner = _partner(op, partner_id)
    current = {e.campaign for e in op.store.enrollments_of(partner_id) if e.status in CURRENT}
    found = []
    for cid in sorted(op.plan.workspace.files):
        compiled = op.plan.campaigns.get(cid)
        why = None
        if compiled is None:
            why = "the campaign file has errors (see engine check)"
        elif cid in current:
            why = "already in it (scheduled, active or paused)"
        else:
            try:
                refuse_start(op, compiled, partner)
            except Refused as refused:
                why = str(refused)
        name = compiled.campaign.name if compiled is not None else None
        found.append({"campaign": cid, "name": name or cid, "startable": why is None, "why_not": why})
    return found


def execute(op: Operator, campaign_id: str) -> TickReport:
    """Fire the campaign's trigger now, on demand (the seed's "Start Marketing Activity"): its
    audience (or, without a trigger, its target group's new members) is enrolled at the
    operation's time and what falls due runs at once. Refused when the campaign does not run
    now: switched off, a draft, outside its window, or started by events."""
    compiled = campaign(op, campaign_id)
    if not compiled.active:
        raise Refused(f"campaign {campaign_id} is not active (active: false in its file): switch it on to execute it")
    if compiled.trigger == "event":
        raise Refused(f"campaign {campaign_id} is started by {compiled.campaign.trigger.event} events: "
                      "import them (engine events import) instead")
    window = compiled.campaign.window
    if window_opens(op.at, window, compiled.tz) != op.at:
        assert window is not None
        raise Refused(f"campaign {campaign_id} runs only inside its window, {window.start or '…'} to {window.end or '…'}: "
                      f"{iso(op.at)} is outside it")
    row = op.store.campaign_rows().get(campaign_id)
    if row is not None and row[3] == compiled.content_hash:
        raise Refused(f"campaign {campaign_id} is a draft (engine draft): edit its file to schedule it again")
    report = Tick(op.store, op.plan, op.book, op.at).execute(campaign_id)
    with op.store.transaction():
        op.store.log(op.at, op.user, "execute", campaign_id, enrolled=report.enrolled, executed=report.executed)
    return report


# --- pause, resume, remove -----------------------------------------------------------------------


def _current_or_latest(op: Operator, campaign_id: str, partner_id: str) -> tuple[Enrollment | None, Status]:
    """The enrollment an operation acts on, brought up to the operation's time first."""
    Tick(op.store, op.plan, op.book, op.at).catch_up(campaign_id, partner_id)
    enrollments = op.store.enrollments_of(partner_id, campaign_id)
    current = [e for e in enrollments if e.status in CURRENT]
    chosen = current[-1] if current else enrollments[-1] if enrollments else None
    return chosen, Status(chosen.status) if chosen else Status.NONE


def change(op: Operator, operation: Operation, campaign_ids: str | Sequence[str],
           partner_ids: Sequence[str]) -> list[Enrollment]:
    """Pause, resume or remove the current enrollment of each partner in each campaign: all of
    them or none (one refusal refuses the lot)."""
    campaign_ids = [campaign_ids] if isinstance(campaign_ids, str) else list(dict.fromkeys(campaign_ids))
    if not campaign_ids:
        raise UnknownName("name at least one campaign")
    for cid in campaign_ids:
        campaign(op, cid)
    if not partner_ids:
        raise UnknownName("name at least one partner (--partner P)")
    changed = []
    with op.store.transaction():
        for cid in campaign_ids:
            for pid in dict.fromkeys(partner_ids):
                _partner_known(op, pid)
                changed.append(_change_one(op, operation, cid, pid))
    deliver(op.store, op.plan, op.at)  # what catching up sent
    return [e for e in changed if e is not None]


def _change_one(op: Operator, operation: Operation, campaign_id: str, partner_id: str) -> Enrollment | None:
    e, status = _current_or_latest(op, campaign_id, partner_id)
    after = transition(operation, status, partner=partner_id, campaign=campaign_id)
    assert e is not None
    updates: dict = {"status": str(after)}
    if operation is Operation.PAUSE:
        updates["paused_at"] = op.at
    elif operation is Operation.RESUME:
        updates["paused_at"] = None
        if e.due_at is not None:
            updates["due_at"] = after_resume(e.due_at, op.at)
    elif operation is Operation.REMOVE:
        updates.update(finished_at=op.at, due_at=None, reason="removed")
    op.store.update_enrollment(e, **updates)
    op.store.log(op.at, op.user, str(operation), campaign_id, partner_id, number=e.number)
    return op.store.enrollment(e.id)


def _partner_known(op: Operator, partner_id: str) -> None:
    if not op.store.enrollments_of(partner_id) and op.book.get(partner_id) is None:
        raise UnknownName(f"unknown partner '{partner_id}'")


# --- steps: skip and run again -------------------------------------------------------------------


def step_status(compiled: CompiledCampaign, e: Enrollment, step_id: str, store: Store) -> StepStatus | None:
    """A step's status in an enrollment: its latest run's, or pending when the enrollment has
    yet to reach it; None when it will never run for it."""
    names = compiled.flow.names(step_id)
    runs = [r for name in names if (r := store.step_run(e.id, name)) is not None]
    if runs:
        return StepStatus(runs[0].status)
    if e.status not in CURRENT or e.next_step is None:
        return None
    return StepStatus.PENDING if compiled.flow.is_before(e.next_step, step_id) else None


def _step(compiled: CompiledCampaign, step_id: str, *, action: bool = False):
    """The step (an action step, a branch or a wait-for) of that id; ``action``: one that acts."""
    node = compiled.flow.node(step_id)
    if node is None or not node.is_position:
        known = [n.key for n in compiled.flow.positions]
        raise UnknownName(f"campaign '{compiled.id}' has no step '{step_id}'{did_you_mean(step_id, known)}")
    if action and node.key not in compiled.steps:
        raise Refused(f"step {step_id} of {compiled.id} is a {node.kind.replace('_', '-')}: only a step that sends or "
                      "creates something can run again")
    return node.item


def _reached_step(op: Operator, operation: Operation, compiled: CompiledCampaign, step_id: str,
                  partner_id: str) -> Enrollment:
    """The enrollment whose step a skip or rerun acts on, once both its state and the step's
    allow the operation (in the caller's transaction)."""
    _partner_known(op, partner_id)
    e, status = _current_or_latest(op, compiled.id, partner_id)
    if e is None:
        transition(operation, Status.NONE, partner=partner_id, campaign=compiled.id)
    assert e is not None
    current = step_status(compiled, e, step_id, op.store)
    if current is None:
        why = "the enrollment will not reach it (it is past it or finished)" if operation is Operation.SKIP else "it never ran"
        raise Refused(f"cannot {operation} step {step_id} of partner {partner_id} in {compiled.id}: {why}")
    step_transition(operation, status, current, step_id=step_id, partner=partner_id, campaign=compiled.id)
    return e


def skip(op: Operator, campaign_id: str, step_id: str, partner_id: str) -> Enrollment:
    compiled = campaign(op, campaign_id)
    step_id = compiled.flow.resolve(step_id) or step_id
    _step(compiled, step_id)
    with op.store.transaction():
        e = _reached_step(op, Operation.SKIP, compiled, step_id, partner_id)
        op.store.record_step(e.id, step_id, 1, "skipped", "skipped_by_user", None, op.at)
        op.store.log(op.at, op.user, "skip", campaign_id, partner_id, step=step_id, number=e.number)
    deliver(op.store, op.plan, op.at)  # what catching up sent
    return e


def rerun(op: Operator, campaign_id: str, step_id: str, partner_id: str) -> str:
    """Execute an executed step once more, now; the new run's status."""
    compiled = campaign(op, campaign_id)
    step_id = compiled.flow.resolve(step_id) or step_id
    step = _step(compiled, step_id, action=True)
    with op.store.transaction():
        e = _reached_step(op, Operation.RERUN, compiled, step_id, partner_id)
        partner = _partner(op, partner_id)
        names = compiled.flow.names(step_id)
        run = max(r.run for r in op.store.step_runs(e.id) if r.step in names) + 1
        effects = Tick(op.store, op.plan, op.book, op.at).effects(compiled, e, step, partner, op.at, run=run,
                                                                   condition=False)
        record_effects(op.store, e, step_id, run, effects, None, op.at)
        op.store.log(op.at, op.user, "rerun", campaign_id, partner_id, step=step_id, number=e.number, run=run,
                     status=effects.status, reason=effects.reason)
    deliver(op.store, op.plan, op.at)
    return effects.status


# --- responses -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    """What ``respond`` did: the response recorded, and the follow-up it started (if any)."""

    target: str
    kind: str  # activity | mailing
    campaign: str
    step: str
    partner: str
    response: str
    result: str
    follow_up: str | None
    follow_up_enrollment: Enrollment | None
    follow_up_note: str | None  # why the follow-up did not start, when it did not
    goto: str | None = None  # the step the response moved the enrollment to
    goto_note: str | None = None  # why it did not move, when it did not


def respond(op: Operator, target_id: str, key: str, answers: Mapping[str, str] | None = None,
            duration: timedelta | None = None) -> Answered:
    """Record a response to an activity or a mailing (a sent email or SMS), complete the
    activity, and start the response's follow-up campaign at once."""
    answers = dict(answers or {})
    activity = op.store.activity(target_id)
    record = activity if activity is not None else op.store.message(target_id)
    if record is None or (activity is None and record.get("channel") not in ("email", "sms")):
        raise UnknownName(f"no activity or mailing with id '{target_id}' (see engine activities, engine log)")
    kind = "activity" if activity is not None else "mailing"
    campaign_id, step_id, partner_id = record["campaign"], record["step"], record["partner"]
    compiled = op.plan.campaigns.get(campaign_id)
    step = compiled.steps.get(step_id) if compiled is not None else None
    choices = _choices(step, activity)
    where = f"step {step_id} of {campaign_id}"
    if not choices:
        raise Refused(f"the {kind} {target_id} takes no responses: {where} lists none")
    if key not in choices:
        raise Refused(f"unknown response '{key}' for {where} (valid responses: {', '.join(choices)})"
                      f"{did_you_mean(key, list(choices))}")
    _check_answers(answers, step, where)
    result, follow_up, goto = choices[key]
    seconds = int(duration.total_seconds()) if duration is not None else None
    with op.store.transaction():
        seq = op.store.add_response(target_id, kind, record["enrollment"], campaign_id, step_id, partner_id, key,
                                    result, answers, seconds, op.at, op.user)
        if seq is None or (activity is not None and not op.store.complete_activity(
                target_id, key, result, op.at, answers, seconds)):
            earlier = next((r for r in op.store.responses(partner_id, campaign_id) if r["target"] == target_id), None)
            said = f" '{earlier['response']}' by {earlier['user']} at {earlier['at']}" if earlier else ""
            raise Refused(f"the {kind} {target_id} was already answered{said}; responses are final")
        enrollment, note, goto_note = None, None, None
        if goto is not None:
            goto_note = _go_to(op, compiled, record["enrollment"], goto)
        if follow_up is not None:
            enrollment, note = _start_follow_up(op, follow_up, partner_id, f"response:{target_id}:{key}")
            op.store.link_follow_up(seq, follow_up, enrollment.id if enrollment else None)
        op.store.log(op.at, op.user, "respond", campaign_id, partner_id, target=target_id, kind=kind, step=step_id,
                     response=key, result=result, follow_up=follow_up,
                     follow_up_number=enrollment.number if enrollment else None, note=note,
                     goto=goto, goto_note=goto_note,
                     answers=answers or None, duration=seconds)
    deliver(op.store, op.plan, op.at)  # what catching up (the goto's, the follow-up's) sent
    return Answered(target_id, kind, campaign_id, step_id, partner_id, key, result, follow_up, enrollment, note,
                    goto, goto_note)


def complete(op: Operator, activity_id: str, result: str) -> dict:
    """Complete an activity whose step lists no responses, with a result in the rep's own
    words (an activity with responses is answered with one of them: ``respond``)."""
    result = result.strip()
    if not result or len(result) > MAX_RESULT:
        raise Refused(f"give a result of 1 to {MAX_RESULT} characters")
    activity = op.store.activity(activity_id)
    if activity is None:
        raise UnknownName(f"no activity with id '{activity_id}' (see engine activities)")
    compiled = op.plan.campaigns.get(activity["campaign"])
    step = compiled.steps.get(activity["step"]) if compiled is not None else None
    choices = _choices(step, activity)
    if choices:
        raise Refused(f"activity {activity_id} takes one of its responses ({', '.join(choices)}): "
                      f"engine respond {activity_id} RESPONSE")
    with op.store.transaction():
        if not op.store.complete_activity(activity_id, None, result, op.at, {}, None):
            raise Refused(f"activity {activity_id} was completed already, at {activity.get('responded_at')}")
        op.store.log(op.at, op.user, "complete", activity["campaign"], activity["partner"], target=activity_id,
                     step=activity["step"], result=result)
    found = op.store.activity(activity_id)
    assert found is not None
    return found


def _choices(step, activity: Mapping | None) -> dict[str, tuple[str, str | None, str | None]]:
    """The step's responses as the campaign file says now (result, follow-up, goto); an
    activity keeps the ones it was created with, should its step have left the file since."""
    if step is not None and getattr(step.action, "responses", None):
        return {k: (r.result, r.follow_up, r.goto) for k, r in step.action.responses.items()}
    if activity is not None:
        return {k: (r["result"], r.get("follow_up"), r.get("goto")) for k, r in (activity.get("responses") or {}).items()}
    return {}


def _go_to(op: Operator, compiled: CompiledCampaign | None, enrollment_id: int, target: str) -> str | None:
    """A response's ``goto``: the enrollment that asked moves to ``target``, due now, when it is
    still active or paused and has not passed it (the steps in between are skipped, reason
    response). Why it did not move, when it did not."""
    if compiled is None or not compiled.active:
        return "its campaign is not running"
    tick = Tick(op.store, op.plan, op.book, op.at)
    e = op.store.enrollment(enrollment_id)
    if e is not None and e.status in ("active", "paused"):
        tick.catch_up(compiled.id, e.partner)
        e = op.store.enrollment(enrollment_id)
    if e is None or e.status not in ("active", "paused"):
        return "the enrollment has ended"
    if target != END and compiled.flow.node(target) is None:
        return f"step {target} is no longer in the campaign"
    if not compiled.flow.is_before(e.next_step, target):
        return f"the enrollment has passed step {target}"
    tick.jump(compiled, e, e.next_step, compiled.flow.resolve(target) or target, op.at,
              compiled.local_tz(op.book.get(e.partner)), SkipReason.RESPONSE, inclusive=True)
    return None


def _check_answers(answers: Mapping[str, str], step, where: str) -> None:
    questions = {q.id: q for q in step.activity.questions} if step is not None and step.activity is not None else {}
    for qid, value in answers.items():
        question = questions.get(qid)
        if question is None:
            known = f"; its questions: {', '.join(questions)}" if questions else ": it asks no questions"
            raise Refused(f"unknown question '{qid}' for {where}{did_you_mean(qid, list(questions))}{known}")
        if question.answers and value not in question.answers:
            raise Refused(f"'{value}' is not an answer to question {qid} of {where}; "
                          f"valid answers: {', '.join(question.answers)}")


def _start_follow_up(op: Operator, campaign_id: str, partner_id: str, source: str) -> tuple[Enrollment | None, str | None]:
    """Enroll the partner in the follow-up campaign now, whatever its trigger: its first step is
    due at the time of the response. Only a current enrollment there, a campaign that does not
    run, or engine.yaml's exclude keep it from starting (the response is recorded anyway)."""
    compiled = op.plan.campaigns.get(campaign_id)
    if compiled is None or not compiled.active:
        return None, f"follow-up campaign {campaign_id} is not running"
    partner = op.book.get(partner_id)
    if partner is None:
        return None, f"partner {partner_id} is no longer in the partner source"
    if _globally_excluded(op, compiled, partner):
        return None, f"partner {partner_id} is excluded from every campaign by engine.yaml's exclude"
    Tick(op.store, op.plan, op.book, op.at).catch_up(campaign_id, partner_id)
    if any(e.status in CURRENT for e in op.store.enrollments_of(partner_id, campaign_id)):
        return None, f"partner {partner_id} is already in {campaign_id}"
    next_step, due = compiled.flow.first(op.at, compiled.local_tz(partner))
    created = op.store.add_enrollment(campaign_id, partner_id, status="active", origin="follow_up", source=source,
                                      created_at=op.at, started_at=op.at, next_step=next_step, due_at=due)
    return (op.store.enrollment(created) if created is not None else None), None


def _globally_excluded(op: Operator, compiled: CompiledCampaign, partner: Mapping) -> bool:
    if op.plan.exclude is None:
        return False
    ctx = Context(now=op.at, tz=compiled.tz, facts=StoreFacts(op.store, op.plan, compiled.id, None, op.at))
    return op.plan.exclude.test(partner, ctx)


# --- drafts --------------------------------------------------------------------------------------


def draft(op: Operator, campaign_id: str) -> None:
    """Return a scheduled one-shot campaign to draft: its `at` time does not fire while the file
    stays as it is; any edit schedules it again (from the tick that sees the edit)."""
    compiled = campaign(op, campaign_id)
    trigger = compiled.campaign.trigger
    if trigger is None or trigger.at is None:
        raise Refused(f"only a scheduled one-shot campaign (trigger: at) can return to draft; {campaign_id} is not one")
    with op.store.transaction():
        locked = op.store.locks().get(campaign_id)
        if locked is not None:
            raise Refused(f"campaign {campaign_id} started sending at {locked[0]}: it is locked, so it cannot return "
                          "to draft; copy it to a new file to change it")
        row = op.store.campaign_rows().get(campaign_id)
        if row is None:
            raise Refused(f"campaign {campaign_id} is not scheduled yet (no tick has seen it): edit its file instead")
        if row[3] == compiled.content_hash:
            raise Refused(f"campaign {campaign_id} is a draft already; edit its file to schedule it again")
        if op.store.last_firing(campaign_id, "at:") is not None:
            raise Refused(f"campaign {campaign_id} has fired already; copy it to a new file to send it again")
        op.store.set_draft(campaign_id, compiled.content_hash)
        op.store.log(op.at, op.user, "draft", campaign_id)
