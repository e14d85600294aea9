"""The example workspace through whole months of ticks (SPEC §6: granularity invariance).

July 2026, worked out by hand from examples/partners.csv and the campaign files:

- partner-onboarding (audience trigger): the first tick, at local midnight on 1 July, enrolls
  21 partners: gold/platinum in FI, revenue >= 100k, or in groups/summit-2026.csv; not p008 and
  p032 (inactive), p038/p039 (internal roles), p016 (same mailbox as p015, which is older).
  Welcome email at once; three days later an SMS to those who did not open it and opted in to
  SMS (p001 and p006 opened it, see events.jsonl); the intro call at the next 09:00; a week
  later the pop-up and the printed letter for all 21.
- renewal-reminder (cron, Mondays 09:00 Helsinki = 06:00Z): agreements at least 330 days old or
  quiet VIPs, not paid, not inactive, not small silver accounts, not while in onboarding
  (exclusive). 6 July: p010 p014 p018 p021 p029 (p029 is a VIP without a login for 96 days);
  13 July: p006 p028 p036, whose onboarding ended on 11 July; 27 July: p011 (agreement from
  25 Aug 2025). A week later a second email (nobody opened), three days later an SMS to those
  with SMS consent.
- collections (event `invoice.overdue`, events.jsonl): p003 and p024 on 6 July at 07:00Z, p034 on
  8 July at 07:00Z. The call is created at once; nobody answers it in a simulation, so the
  wait-for ends at its `at_most`, two days later, and the reminder email is due then: only p034
  has email consent (p003 never opted in, p024 only accepts the terms on 3 August), so p034
  gets it on 10 July at 07:00Z. A week later the branch finds no promise and goes to the final
  notice letter: 15 July at 07:00Z for p003 and p024, 17 July for p034; then the flow ends.
  One tick or hourly ticks give the same times: the wait-for ends at its at_most, which is a
  due time, not a tick's.
- pay-by-portal (one-shot `at`, 7 July 10:00 Helsinki = 07:00Z): unpaid partners with email
  consent, not test contacts, one per mailbox (p016 shares p015's): 28. Three are in the 10 %
  holdout (sha256 of `pay-by-portal/holdout/PARTNER`: p005 p014 p031) and p026's address
  hard-bounced on 1 July, so 24 get the nudge. invoice.paid events (events.jsonl) convert p001,
  p007, p012, p019 and p021 before the reminder a week later, which ends their enrollments (the
  goal's exit): 19 get the reminder on 14 July at 07:00Z; p028 pays only after it.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import pytest

from engine.links import Signed, Signer

EXAMPLES = Path(__file__).parents[2] / "examples"

JULY: dict[tuple[str, str, str, str], str] = {
    # (channel, campaign, step, logical time): partners
    ("email", "partner-onboarding", "welcome", "2026-06-30T21:00:00Z"):
        "p001 p002 p004 p005 p006 p007 p009 p011 p013 p015 p019 p020 p023 p026 p027 p028 p033 p035 p036 p037 p040",
    ("sms", "partner-onboarding", "welcome-nudge", "2026-07-03T21:00:00Z"):
        "p004 p007 p011 p019 p023 p026 p028 p033 p035 p036 p037 p040",
    ("letter", "partner-onboarding", "welcome-letter", "2026-07-11T06:00:00Z"):
        "p001 p002 p004 p005 p006 p007 p009 p011 p013 p015 p019 p020 p023 p026 p027 p028 p033 p035 p036 p037 p040",
    ("email", "renewal-reminder", "reminder", "2026-07-06T06:00:00Z"): "p010 p014 p018 p021 p029",
    ("email", "renewal-reminder", "second-reminder", "2026-07-13T06:00:00Z"): "p010 p014 p018 p021 p029",
    ("sms", "renewal-reminder", "renewal-sms", "2026-07-16T06:00:00Z"): "p014 p018 p021",
    ("email", "renewal-reminder", "reminder", "2026-07-13T06:00:00Z"): "p006 p028 p036",
    ("email", "renewal-reminder", "second-reminder", "2026-07-20T06:00:00Z"): "p006 p028 p036",
    ("sms", "renewal-reminder", "renewal-sms", "2026-07-23T06:00:00Z"): "p006 p028 p036",
    ("email", "renewal-reminder", "reminder", "2026-07-27T06:00:00Z"): "p011",
    ("email", "collections", "reminder", "2026-07-10T07:00:00Z"): "p034",
    ("letter", "collections", "final-notice", "2026-07-15T07:00:00Z"): "p003 p024",
    ("letter", "collections", "final-notice", "2026-07-17T07:00:00Z"): "p034",
    ("email", "pay-by-portal", "nudge", "2026-07-07T07:00:00Z"):
        "p001 p004 p006 p007 p009 p010 p011 p012 p013 p015 p018 p019 p020 p021 p022 p025 p027 p028 p029 p033 p034 "
        "p035 p036 p037",
    ("email", "pay-by-portal", "reminder", "2026-07-14T07:00:00Z"):
        "p004 p006 p009 p010 p011 p013 p015 p018 p020 p022 p025 p027 p028 p029 p033 p034 p035 p036 p037",
}


def expected(table: dict[tuple[str, str, str, str], str]) -> list[tuple[str, str, str, str, str]]:
    return sorted((channel, campaign, step, at, partner)
                  for (channel, campaign, step, at), partners in table.items() for partner in partners.split())


def sends(engine) -> list[tuple[str, str, str, str, str]]:
    """(channel, campaign, step, at, partner) of every message the transport wrote."""
    found = [(m["channel"], m["campaign"], m["step"], m["at"], m["partner"])
             for channel in ("email", "sms") for m in engine.sent(channel)]
    for path in sorted((engine.root / ".engine" / "letters").glob("*/*.csv")):
        found += [("letter", row["campaign"], row["step"], row["at"], row["partner"])
                  for row in engine.letters(path.parent.name, path.stem)]
    return sorted(found)


def simulate(make_engine, until: str, every: str | None, name: str):
    engine = make_engine(EXAMPLES, at="2026-07-01T00:00", name=name)
    imported = engine.import_events(EXAMPLES / "events.jsonl")
    assert imported.imported == 16 and not imported.diagnostics
    engine.tick()  # the first tick sees every campaign: the same starting point for every grid
    if every is None:
        report = engine.tick(until)
    else:
        report = engine.run(until, every=every)
    assert not report.diagnostics
    return engine


_RUNS: dict[tuple, tuple[list, list]] = {}


def simulated(make_engine, until: str, every: str | None, name: str) -> tuple[list, list]:
    """(sends, step states) of a simulation, run once per store kind and kept for the tests
    that compare with the same run (an hourly July, a three-hourly quarter)."""
    key = (os.environ.get("ENGINE_STORE") is None, until, every)
    if key not in _RUNS:
        engine = simulate(make_engine, until, every, name)
        _RUNS[key] = (sends(engine), _steps(engine))
    return _RUNS[key]


def test_july_hourly_equals_the_list_written_by_hand(make_engine):
    sent, _ = simulated(make_engine, "2026-08-01T00:00", "1h", "hourly")
    assert sent == expected(JULY)
    assert len(sent) == 124


def test_july_in_one_tick_equals_hourly_ticks(make_engine):
    hourly = simulated(make_engine, "2026-08-01T00:00", "1h", "hourly")
    once = simulate(make_engine, "2026-08-01T00:00", None, "once")
    assert sends(once) == hourly[0] == expected(JULY)
    assert _steps(once) == hourly[1]


@pytest.mark.parametrize("every", ["7h", None])
def test_july_to_october_on_any_grid_equals_three_hourly_ticks(make_engine, every):
    """Over three months the `at` one-shot (summer webinar, 20 Aug) and the payment-failed
    event (3 Sep) join in; any tick grid gives the same messages, activities and pop-ups."""
    reference = simulated(make_engine, "2026-10-01T00:00", "3h", "reference")
    other = simulate(make_engine, "2026-10-01T00:00", every, "other")
    assert sends(other) == reference[0]
    assert _steps(other) == reference[1]
    by_step = defaultdict(set)
    for channel, campaign, step, at, partner in reference[0]:
        by_step[(campaign, step)].add(partner)
    assert by_step[("summer-webinar", "invite")]  # the one-shot fired
    assert by_step[("payment-failed", "notice")] == {"p007"}  # 450 > 100; p012's 60 is not


def test_a_second_tick_at_the_same_time_does_nothing(make_engine):
    engine = simulate(make_engine, "2026-08-01T00:00", None, "once")
    before = sends(engine)
    report = engine.tick("2026-08-01T00:00")
    assert (report.enrolled, report.executed, report.skipped, report.finished) == (0, 0, 0, 0)
    assert sends(engine) == before


def test_the_first_emails_carry_signed_unsubscribe_links_and_html_tracking(make_engine):
    """engine.yaml sets web.base_url (SPEC §12): the welcome emails of the first tick carry
    List-Unsubscribe headers, their bodies the same unsubscribe link, and the HTML ones (English
    and Finnish templates) click redirects and an open pixel; the Swedish inline body is plain
    text, so it is not tracked. Every token is signed with the tests' ENGINE_SECRET."""
    engine = make_engine(EXAMPLES, at="2026-07-01T00:00")
    engine.tick()
    base = "http://127.0.0.1:8080"
    signer = Signer(os.environ["ENGINE_SECRET"].encode())

    def token(kind: str, url: str) -> Signed | None:
        assert url.startswith(f"{base}/{kind}/"), url
        return signer.read(kind, url.removeprefix(f"{base}/{kind}/"))

    welcomes = {m["partner"]: m for m in engine.sent("email") if m["step"] == "welcome"}
    assert len(welcomes) == 21
    for message in welcomes.values():
        headers = message["headers"]
        assert headers["List-Unsubscribe"].startswith(f"<{base}/u/")
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe, mailto = headers["List-Unsubscribe"].split(", ")
        assert mailto == "<mailto:unsubscribe@example.com?subject=unsubscribe>"
        assert token("u", unsubscribe.strip("<>")) == Signed(message["id"])
        assert unsubscribe.strip("<>") in message["body"]  # the footer links to the same address

    for partner, language in (("p013", "default"), ("p001", "fi")):  # welcome.html.j2, welcome.fi.html.j2
        message = welcomes[partner]
        body = message["body"]
        assert message["language"] == language
        assert "portal.example.com" not in body  # the portal link goes through the redirect
        hrefs = {kind: [h for h in re.findall(r'href="([^"]+)"', body) if h.startswith(f"{base}/{kind}/")]
                 for kind in ("c", "u", "p")}
        assert sum(map(len, hrefs.values())) == body.count("href=")  # every link is one of ours now
        portal = Signed(message["id"], "https://portal.example.com/")
        assert [token("c", href) for href in hrefs["c"]] == [portal]
        assert [token("u", href) for href in hrefs["u"]] == [Signed(message["id"])]  # not redirected
        assert [token("p", href) for href in hrefs["p"]] == [Signed(message["id"])]
        (pixel,) = re.findall(r'<img src="([^"]+)"', body)
        assert token("o", pixel) == Signed(message["id"])
        assert body.index(pixel) < body.index("</body>")

    swedish = welcomes["p005"]  # an inline text body: its link as written, no pixel
    assert swedish["language"] == "sv" and "<img" not in swedish["body"]
    unsubscribe = swedish["headers"]["List-Unsubscribe"].split(", ")[0].strip("<>")
    assert swedish["body"].endswith(f"\n\nAvsluta prenumerationen: {unsubscribe}\n")


def _steps(engine) -> list[tuple]:
    """Every step state of every enrollment, activities and pop-ups included."""
    rows = engine.store.db.execute(
        "SELECT e.campaign, e.partner, e.number, r.step, r.run, r.status, r.reason, r.at "
        "FROM step_runs r JOIN enrollments e ON e.id = r.enrollment ORDER BY 1, 2, 3, 4, 5").fetchall()
    return [tuple(r) for r in rows]
