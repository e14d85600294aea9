"""``engine serve`` over real HTTP (SPEC §12): links in messages, the public routes, the API and
its error codes, on each store. The server runs in the test's process with a fixed clock; the
test ticks through its own engine, as the background tick would."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlsplit

from engine import apikeys
from engine.links import Signer
from engine.testing import dump_store

from ._served import SECRET, Served, served


def emails(site: Served) -> list[dict]:
    return site.engine.outbox("email")


def steps_of(site: Served, partner: str) -> dict[str, dict]:
    found = site.engine.steps("welcome", partner)
    assert found is not None
    return {s["step"]: s for s in found["steps"]}


def key_for(site: Served, user: str) -> str:
    with site.engine.store.transaction():
        return apikeys.create(site.engine.store, user, site.clock.now())[1]


def unsubscribe_path(message: dict) -> str:
    header = message["headers"]["List-Unsubscribe"]
    first = header.split(",")[0].strip().strip("<>")
    return urlsplit(first).path


def test_a_tick_puts_both_list_unsubscribe_headers_on_every_email(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        sent = emails(site)
        assert [m["partner"] for m in sent] == ["p1", "p2"]
        for message in sent:
            headers = message["headers"]
            assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert headers["List-Unsubscribe"].startswith(f"<{site.url}/u/")
            assert headers["List-Unsubscribe"].endswith(", <mailto:unsubscribe@example.com?subject=unsubscribe>")
            assert f'src="{site.url}/o/' in message["body"]  # the open pixel
            assert "https://portal.example.com" not in message["body"]  # the link goes through /c/
            assert f"{site.url}/u/" in message["body"]  # {{ unsubscribe_url }}, not rewritten


def test_one_click_unsubscribes_and_the_next_email_is_skipped_for_consent(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        message = next(m for m in emails(site) if m["partner"] == "p1")
        page = site.get(unsubscribe_path(message))
        assert page.status_code == 200 and "Unsubscribe" in page.text
        assert site.engine.consent("p1")["ledger"] == []  # a GET (a mail scanner) changes nothing
        answer = site.post(unsubscribe_path(message), content="List-Unsubscribe=One-Click",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200
        again = site.post(unsubscribe_path(message), content="List-Unsubscribe=One-Click")
        assert again.status_code == 200
        ledger = site.engine.consent("p1")["ledger"]
        assert [(e["channel"], e["granted"], e["source"]) for e in ledger] == [("email", False, f"link:{message['id']}")]
        site.clock.advance(timedelta(days=1))
        site.engine.tick()
        assert steps_of(site, "p1")["again"]["status"] == "skipped"
        assert steps_of(site, "p1")["again"]["reason"] == "no_consent"
        assert steps_of(site, "p2")["again"]["status"] == "executed"


def test_the_confirmation_page_unsubscribes_on_its_button(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        message = emails(site)[0]
        done = site.post(unsubscribe_path(message))
        assert done.status_code == 200 and "You are unsubscribed" in done.text
        assert done.headers["content-type"].startswith("text/html")
        assert site.engine.consent(message["partner"])["channels"]["email"]["consent"] is False


def _altered(token: str) -> list[str]:
    """The token with each of a few characters changed (first, middle, the MAC's last)."""
    out = []
    for i in (0, len(token) // 2, len(token) - 1):
        for replacement in "AB":
            if token[i] != replacement:
                out.append(token[:i] + replacement + token[i + 1:])
                break
    return out


def test_a_token_with_one_character_changed_is_404_and_records_nothing(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        message = emails(site)[0]
        token = unsubscribe_path(message).removeprefix("/u/")
        open_token = Signer(SECRET).token("o", message["id"])
        click_token = Signer(SECRET).token("c", message["id"], "https://portal.example.com/")
        before = dump_store(site.root)
        for bad in _altered(token):
            assert site.post(f"/u/{bad}", content="List-Unsubscribe=One-Click").status_code == 404
            assert site.get(f"/u/{bad}").status_code == 404
            assert site.get(f"/p/{bad}").status_code == 404
        for bad in _altered(open_token):
            assert site.get(f"/o/{bad}").status_code == 404
        for bad in _altered(click_token):
            assert site.get(f"/c/{bad}").status_code == 404
        assert site.get(f"/o/{token}").status_code == 404  # an unsubscribe token is no pixel
        assert site.get(f"/u/{open_token}").status_code == 404
        assert dump_store(site.root) == before


def test_the_pixel_and_the_click_are_counted_in_stats(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        body = next(m for m in emails(site) if m["partner"] == "p1")["body"]
        pixel = body.split(f'src="{site.url}', 1)[1].split('"', 1)[0]
        click = body.split(f'href="{site.url}/c/', 1)[1].split('"', 1)[0]
        gif = site.get(pixel)
        assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif" and gif.content.startswith(b"GIF")
        jump = site.get(f"/c/{click}")
        assert jump.status_code == 302
        assert jump.headers["location"] == "https://portal.example.com/deals?a=1&b=2"  # the href, unescaped
        row = next(r for r in site.engine.stats("welcome")["steps"] if r["step"] == "welcome")
        assert (row["sent"], row["opens"], row["unique_opens"], row["clicks"], row["unique_clicks"]) == (2, 1, 1, 1, 1)
        events = site.engine.store.db.execute("SELECT type, data FROM events ORDER BY type").fetchall()
        assert [(t, json.loads(d)) for t, d in events] == [
            ("clicked", {"url": "https://portal.example.com/deals?a=1&b=2"}), ("opened", {})]


def test_a_click_token_cannot_redirect_anywhere_else(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        message = emails(site)[0]
        forged = Signer(b"another key").token("c", message["id"], "https://evil.example/")
        assert site.get(f"/c/{forged}").status_code == 404


def test_the_preference_page_switches_channels(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        message = next(m for m in emails(site) if m["partner"] == "p2")
        token = Signer(SECRET).token("p", message["id"])
        page = site.get(f"/p/{token}")
        assert page.status_code == 200 and 'name="email"' in page.text and 'name="sms"' in page.text
        saved = site.post(f"/p/{token}", data={"submitted": "1", "sms": "on"})  # email unticked
        assert saved.status_code == 200 and "Saved" in saved.text
        channels = site.engine.consent("p2")["channels"]
        assert channels["email"]["consent"] is False and channels["sms"]["consent"] is True
        assert len(site.engine.consent("p2")["ledger"]) == 1  # only the switch that changed


# --- the API -----------------------------------------------------------------------------------


def test_api_errors_401_403_404_409_413_422(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        alice, bob = key_for(site, "alice"), key_for(site, "bob")
        assert site.api("GET", "/api/campaigns", None).status_code == 401
        assert site.api("GET", "/api/campaigns", "ek_nope_nope").status_code == 401
        assert site.api("GET", "/api/campaigns", alice[:-1] + ("A" if alice[-1] != "A" else "B")).status_code == 401
        assert site.api("GET", "/api/campaigns", bob).status_code == 200
        refused = site.api("POST", "/api/campaigns/welcome/enrollments/p1/pause", bob)
        assert refused.status_code == 403 and "marketing" in refused.json()["error"]
        assert site.api("GET", "/api/campaigns/nope", alice).status_code == 404
        assert site.api("GET", "/api/partners/nobody/campaigns", alice).status_code == 404
        assert site.api("POST", "/api/campaigns/welcome/enrollments/p1/pause", alice).status_code == 200
        twice = site.api("POST", "/api/campaigns/welcome/enrollments/p1/pause", alice)
        assert twice.status_code == 409 and twice.json()["error"]
        started = site.api("POST", "/api/campaigns/welcome/enrollments", alice, json={"partner": "p1"})
        assert started.status_code == 409  # already enrolled (paused)
        invalid = site.api("POST", "/api/campaigns/welcome/enrollments", alice, json={"partner": 3, "x": 1})
        assert invalid.status_code == 422 and invalid.json()["problems"]
        big = site.api("POST", "/api/events", alice, content=b"[" + b" " * (2 * 1024 * 1024) + b"]",
                       headers={"Content-Type": "application/json"})
        assert big.status_code == 413
        bad_event = site.api("POST", "/api/events", alice, json={"type": "opened", "partner": "p1"})
        assert bad_event.status_code == 422 and "at" in bad_event.text


def test_a_revoked_key_is_refused_on_the_next_request(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        key = key_for(site, "alice")
        assert site.api("GET", "/api/campaigns", key).status_code == 200
        key_id = key.split("_")[1]
        with site.engine.store.transaction():
            assert apikeys.revoke(site.engine.store, key_id, site.clock.now())
        assert site.api("GET", "/api/campaigns", key).status_code == 401


def test_api_operations_are_in_the_audit_log_under_the_keys_user(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        alice = key_for(site, "alice")
        assert site.api("POST", "/api/campaigns/welcome/enrollments/p2/pause", alice).json()["status"] == "paused"
        assert site.api("POST", "/api/campaigns/welcome/enrollments/p2/resume", alice).json()["status"] == "active"
        assert site.api("POST", "/api/campaigns/welcome/enrollments/p2/steps/again/skip", alice).status_code == 200
        log = [(e["user"], e["action"]) for e in site.engine.log("welcome") if e["partner"] == "p2"]
        assert ("alice", "pause") in log and ("alice", "resume") in log and ("alice", "skip") in log


def test_events_api_takes_one_a_list_or_ndjson_and_counts_an_id_once(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        feed = key_for(site, "feed")
        message = next(m for m in emails(site) if m["partner"] == "p1")
        one = {"id": "e1", "type": "opened", "at": "2026-07-01T10:00:00Z", "partner": "p1", "message": message["id"]}
        assert site.api("POST", "/api/events", feed, json=one).json() == {"imported": 1, "duplicates": 0, "ignored": 0}
        assert site.api("POST", "/api/events", feed, json=[one]).json() == {"imported": 0, "duplicates": 1, "ignored": 0}
        two = {**one, "id": "e2", "type": "clicked", "data": {"url": "https://portal.example.com/"}}
        ndjson = json.dumps(two) + "\n"
        assert site.api("POST", "/api/events", feed, content=ndjson,
                        headers={"Content-Type": "application/x-ndjson"}).json()["imported"] == 1
        row = next(r for r in site.engine.stats("welcome")["steps"] if r["step"] == "welcome")
        assert (row["opens"], row["clicks"]) == (1, 1)
        assert ("feed", "events.import") in [(e["user"], e["action"]) for e in site.engine.log()]


def test_an_events_batch_with_one_bad_event_stores_none(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        feed = key_for(site, "feed")
        good = {"id": "g", "type": "opened", "at": "2026-07-01T10:00:00Z", "partner": "p1", "campaign": "welcome",
                "step": "welcome"}
        bad = {**good, "id": "b", "step": "nope"}
        before = dump_store(site.root)
        answer = site.api("POST", "/api/events", feed, json=[good, bad])
        assert answer.status_code == 422 and "nope" in answer.text
        after = dump_store(site.root)
        assert after.pop("api_keys") != before.pop("api_keys")  # the key's last use, nothing else
        assert after == before


def test_openapi_lists_the_api(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        paths = site.get("/openapi.json").json()["paths"]
        assert "/api/events" in paths and "/api/campaigns/{campaign}/enrollments" in paths
        assert not any(p.startswith("/u/") for p in paths)


# --- ESP webhooks ------------------------------------------------------------------------------


def test_sendgrid_and_ses_payloads_change_the_stats(tmp_path, store_url):
    from engine.channels.smtp import message_id

    from .test_esp import NOTIFICATIONS, envelope, ours_ses, sample

    with served(tmp_path, store_url) as site:
        site.engine.tick()
        p1, p2 = (next(m for m in emails(site) if m["partner"] == p) for p in ("p1", "p2"))
        feed = key_for(site, "feed")
        at = 1782896400  # 2026-07-01T09:00:00Z, when the emails went out
        events = [sample("open", **{"smtp-id": message_id(p1["id"], "news@example.com"), "timestamp": at + 60}),
                  sample("click", **{"smtp-id": message_id(p1["id"], "news@example.com"), "timestamp": at + 90}),
                  sample("spamreport", **{"smtp-id": message_id(p1["id"], "news@example.com"), "timestamp": at + 120})]
        answer = site.api("POST", "/api/webhooks/sendgrid", feed, json=events)
        assert answer.status_code == 200 and answer.json()["imported"] == 3
        again = site.api("POST", "/api/webhooks/sendgrid", feed, json=events)  # a retried delivery counts once
        assert again.json()["imported"] == 0 and again.json()["duplicates"] == 3
        gone = sample("open", **{"smtp-id": message_id("welcome:p1:9:welcome:1", "news@example.com")})
        unknown = site.api("POST", "/api/webhooks/sendgrid", feed, json=[gone])  # our format, no such message
        assert unknown.status_code == 200 and unknown.json()["ignored"] == 1  # not a 422 the ESP would retry

        bounce = ours_ses(NOTIFICATIONS["bounce_with_dsn"], header=message_id(p2["id"], "news@example.com"))
        bounce["bounce"]["timestamp"] = "2026-07-01T09:05:00.000Z"
        answer = site.api("POST", "/api/webhooks/ses", feed, json=envelope(bounce))
        assert answer.status_code == 200 and answer.json()["imported"] >= 1

        row = next(r for r in site.engine.stats("welcome")["steps"] if r["step"] == "welcome")
        assert (row["opens"], row["clicks"], row["bounces"]) == (1, 1, 1)
        site.clock.advance(timedelta(days=1))
        assert site.engine.consent("p1")["channels"]["email"]["consent"] is False  # the complaint unsubscribed
        site.engine.tick()
        assert steps_of(site, "p1")["again"]["reason"] == "no_consent"
        assert steps_of(site, "p2")["again"]["reason"] == "undeliverable"  # the hard bounce


def test_an_sns_subscription_confirmation_is_logged_for_an_operator(tmp_path, store_url):
    from .test_esp import SNS

    with served(tmp_path, store_url) as site:
        feed = key_for(site, "feed")
        answer = site.api("POST", "/api/webhooks/ses", feed, json=SNS["SubscriptionConfirmation"])
        assert answer.status_code == 200 and answer.json()["subscription"] is True
        (entry,) = [e for e in site.engine.log() if e["action"] == "webhook.subscription"]
        assert entry["user"] == "feed" and entry["detail"]["SubscribeURL"].startswith("https://sns.")
        assert site.api("POST", "/api/webhooks/ses", feed, content=b"{not json").status_code == 422
        deep = b"[" * 100_000 + b"]" * 100_000
        assert site.api("POST", "/api/webhooks/sendgrid", feed, content=deep).status_code == 422
        assert site.api("POST", "/api/events", feed, content=deep, headers={"Content-Type": "application/json"}
                        ).status_code == 422
        assert site.api("POST", "/api/webhooks/sendgrid", feed, json={"event": "open"}).status_code == 422


def test_campaigns_members_and_the_partner_list_read_like_the_cli(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        bob = key_for(site, "bob")  # a viewer may read
        (campaign,) = site.api("GET", "/api/campaigns", bob).json()["campaigns"]
        assert (campaign["campaign"], campaign["status"], campaign["trigger"]) == ("welcome", "active", "audience")
        assert campaign["enrollments"]["active"] == 2 and campaign["alerts"] == []
        page = site.api("GET", "/api/campaigns/welcome/members?limit=1&offset=1", bob).json()
        assert (page["total"], [m["partner"] for m in page["members"]]) == (2, ["p2"])
        assert site.api("GET", "/api/campaigns/welcome/members?status=bogus", bob).status_code == 422
        mine = site.api("GET", "/api/partners/p1/campaigns", bob).json()
        assert [(e["campaign"], e["status"]) for e in mine["enrollments"]] == [("welcome", "active")]
        assert site.api("GET", "/api/campaigns/welcome/stats", bob).json() == site.engine.stats("welcome")


CALL = """\
name: Call
audience:
  rulesets:
    all: "true"
trigger:
  audience: true
steps:
  - id: call
    activity:
      kind: call
      subject: Intro call
      responses:
        interested: {result: successful}
        declined: {result: unsuccessful}
  - id: note
    popup: {pages: [dashboard], title: "Hello", body: "News for you"}
"""


def test_responses_and_popups_through_the_api(tmp_path, store_url):
    with served(tmp_path, store_url, campaigns={"call": CALL}) as site:
        site.engine.tick()
        alice, feed = key_for(site, "alice"), key_for(site, "feed")
        (activity,) = site.engine.activities(campaign="call", partner="p1")
        body = {"id": activity["id"], "response": "interested", "duration": "15m"}
        wrong = site.api("POST", "/api/responses", alice, json={**body, "response": "maybe"})
        assert wrong.status_code == 409 and "interested" in wrong.json()["error"]  # as the CLI: refused, exit 3
        answered = site.api("POST", "/api/responses", alice, json=body)
        assert answered.status_code == 200 and answered.json()["result"] == "successful"
        assert site.api("POST", "/api/responses", alice, json=body).status_code == 409  # answered already
        assert site.api("POST", "/api/responses", alice, json={**body, "id": "nope"}).status_code == 404
        assert site.api("POST", "/api/responses", alice, json={**body, "duration": "soon"}).status_code == 422

        shown = site.api("GET", "/api/partners/p1/popups?page=dashboard", feed).json()["popups"]
        assert [p["title"] for p in shown] == ["Hello"]
        assert site.api("POST", f"/api/popups/{shown[0]['id']}/read", feed).status_code == 200
        assert site.api("GET", "/api/partners/p1/popups?page=dashboard", feed).json()["popups"] == []
        assert len(site.api("GET", "/api/partners/p1/popups", feed).json()["popups"]) == 1  # the message center keeps it
        assert site.api("POST", "/api/popups/nope/read", feed).status_code == 404
