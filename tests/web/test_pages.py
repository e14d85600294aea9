"""The pages of ``engine serve`` over real HTTP (SPEC §12, pages): login into a signed cookie,
CSRF tokens on every form, roles as the CLI and the API enforce them, and campaign content shown
as text. The browser tests (tests/web/test_browser.py) drive the same pages in Chromium."""

from __future__ import annotations

import re

import httpx

from engine import apikeys
from engine.web import session as sessions

from ._served import Served, served

SCRIPT_CAMPAIGN = """\
name: "<script>alert(1)</script>"
audience:
  rulesets:
    all: "true"
trigger:
  audience: true
steps:
  - id: hello
    email: {subject: "<b>Hi</b>", body: "Hello. {{ unsubscribe_url }}"}
  - wait: 3d
  - id: later
    email: {subject: "Later", body: "Later. {{ unsubscribe_url }}"}
"""


def key_for(site: Served, user: str) -> tuple[str, str]:
    with site.engine.store.transaction():
        return apikeys.create(site.engine.store, user, site.clock.now())


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def log_in(site: Served, user: str) -> httpx.Client:
    """A client of its own, logged in as ``user`` through the login form."""
    client = httpx.Client(base_url=site.url, timeout=10, follow_redirects=False)
    form = client.get("/login")
    assert form.status_code == 200
    done = client.post("/login", data={"key": key_for(site, user)[1], "csrf": csrf_of(form), "next": "/campaigns"})
    assert done.status_code == 303 and done.headers["location"] == "/campaigns", done.text[:300]
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    return client


def test_pages_need_a_login_and_a_key_logs_in(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        anonymous = site.get("/campaigns")
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")
        client = log_in(site, "alice")
        page = client.get("/campaigns")
        assert page.status_code == 200 and 'data-campaign="welcome"' in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no scripts


def test_a_wrong_key_or_a_login_without_its_form_token_is_refused(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        form = site.get("/login")
        wrong = site.post("/login", data={"key": "ek_nope", "csrf": csrf_of(form)})
        assert wrong.status_code == 401 and sessions.COOKIE not in wrong.headers.get("set-cookie", "")
        fresh = httpx.post(f"{site.url}/login", data={"key": key_for(site, "alice")[1], "csrf": "forged"})
        assert fresh.status_code == 403 and sessions.COOKIE not in fresh.headers.get("set-cookie", "")


def test_a_tampered_cookie_logs_out(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        client = log_in(site, "alice")
        token = client.cookies[sessions.COOKIE]
        payload, mac = token.split(".")
        client.cookies.set(sessions.COOKIE, payload + "." + ("A" if mac[0] != "A" else "B") + mac[1:])
        page = client.get("/campaigns")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        assert f'{sessions.COOKIE}=""' in page.headers["set-cookie"] or "Max-Age=0" in page.headers["set-cookie"]


def test_a_revoked_key_ends_its_sessions(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        client = httpx.Client(base_url=site.url, timeout=10, follow_redirects=False)
        form = client.get("/login")
        key_id, key = key_for(site, "alice")
        assert client.post("/login", data={"key": key, "csrf": csrf_of(form)}).status_code == 303
        assert client.get("/campaigns").status_code == 200
        with site.engine.store.transaction():
            pass
        assert apikeys.revoke(site.engine.store, key_id, site.clock.now())
        assert client.get("/campaigns").status_code == 303


def test_pause_from_the_partner_page_and_a_post_without_the_token_is_refused(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        client = log_in(site, "alice")
        page = client.get("/partners/p1")
        assert page.status_code == 200 and 'data-action="pause"' in page.text
        forged = client.post("/partners/p1/campaigns/welcome/pause", data={"csrf": "x" + csrf_of(page)})
        assert forged.status_code == 403
        missing = client.post("/partners/p1/campaigns/welcome/pause")
        assert missing.status_code == 403
        flooded = client.post("/partners/p1/campaigns/welcome/pause", content="&".join(f"f{n}=x" for n in range(500)),
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert flooded.status_code == 403
        assert site.engine.status(partner="p1")["enrollments"][0]["status"] == "active"
        done = client.post("/partners/p1/campaigns/welcome/pause", data={"csrf": csrf_of(page)})
        assert done.status_code == 303
        assert site.engine.status(partner="p1")["enrollments"][0]["status"] == "paused"
        again = client.get(done.headers["location"])
        assert 'data-action="resume"' in again.text and "Pause: done." in again.text
        twice = client.post("/partners/p1/campaigns/welcome/pause", data={"csrf": csrf_of(page)})
        assert twice.status_code == 409  # refused by state, in one line


def test_a_viewer_sees_no_buttons_and_their_post_is_refused(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        site.engine.tick()
        client = log_in(site, "bob")
        page = client.get("/partners/p1")
        assert page.status_code == 200 and 'data-status="active"' in page.text
        assert "data-action=" not in page.text
        refused = client.post("/partners/p1/campaigns/welcome/pause", data={"csrf": csrf_of(page)})
        assert refused.status_code == 403 and "viewer" in refused.text
        assert site.engine.status(partner="p1")["enrollments"][0]["status"] == "active"


def test_campaign_content_renders_as_text(tmp_path, store_url):
    with served(tmp_path, store_url, campaigns={"shout": SCRIPT_CAMPAIGN}) as site:
        site.engine.tick()
        client = log_in(site, "alice")
        for path in ("/campaigns", "/campaigns/shout", "/partners/p1"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert "<script>" not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/campaigns").text
        assert "&lt;b&gt;Hi&lt;/b&gt;" in client.get("/partners/p1").text


def test_unknown_campaign_and_partner_pages_are_404(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        client = log_in(site, "alice")
        assert client.get("/campaigns/nope").status_code == 404
        assert client.get("/partners/nope").status_code == 404


def test_after_login_the_page_asked_for_opens_and_only_pages_of_ours(tmp_path, store_url):
    with served(tmp_path, store_url) as site:
        client = httpx.Client(base_url=site.url, timeout=10, follow_redirects=False)
        form = client.get("/login?next=/partners/p1")
        assert 'value="/partners/p1"' in form.text
        done = client.post("/login", data={"key": key_for(site, "alice")[1], "csrf": csrf_of(form), "next": "//evil.example"})
        assert done.headers["location"] == "/campaigns"
