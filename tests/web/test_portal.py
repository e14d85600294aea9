"""The partner's message center (SPEC §12) over real HTTP: the signed link that ``engine
portal-link`` prints, the pop-ups of a page, marking one read, and the headers that let a
partner portal (and only it) show the center in an iframe."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from campaigns.model import Web
from engine import apikeys, portal_links
from engine.cli import main
from engine.clock import from_iso
from engine.links import UNSUBSCRIBE, Signer
from engine.testing import dump_store

from ._served import SECRET, Served, served

PORTAL_ORIGIN = "https://portal.example.com"

NOTICE = """\
name: Notice
audience:
  rulesets:
    all: "true"
trigger:
  audience: true
steps:
  - id: terms
    popup:
      pages: [dashboard]
      title: "New terms <script>alert('title')</script>"
      body: "Hello {{ partner.name }}: <script>alert('body')</script> please read & accept."
  - id: survey
    popup: {pages: [orders], title: "Tell us", body: "How are your orders?"}
"""


def set_web(root: Path, **settings: object) -> None:
    """Change engine.yaml's ``web`` (None drops a key)."""
    file = root / "engine.yaml"
    data = yaml.safe_load(file.read_text(encoding="utf-8"))
    data["web"].update(settings)
    data["web"] = {key: value for key, value in data["web"].items() if value is not None}
    file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


@contextmanager
def open_center(tmp_path, store_url, frame_ancestors: list[str]) -> Iterator[Served]:
    """The served workspace with the pop-up campaign and ``web.frame_ancestors`` (written before
    the server's engine first reads engine.yaml, on the first request), ticked once."""
    with served(tmp_path, store_url, campaigns={"notice": NOTICE}) as site:
        set_web(site.root, frame_ancestors=frame_ancestors)
        site.engine.tick()
        yield site


@pytest.fixture
def center(tmp_path, store_url, monkeypatch):
    monkeypatch.setenv("ENGINE_SECRET", SECRET.decode())  # what `engine portal-link` signs with
    with open_center(tmp_path, store_url, [PORTAL_ORIGIN]) as site:
        yield site


def link(site: Served, partner: str = "p1", days: int = 90, page: str | None = None) -> str:
    """The path of a link as ``engine portal-link`` makes it (signed with the server's key)."""
    token = portal_links.token(Signer(SECRET), partner, site.clock.now() + timedelta(days=days))
    return f"/m/{token}" + (f"?page={page}" if page else "")


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def actions_of(page: str) -> list[str]:
    return re.findall(r'<form method="post" action="([^"]+)"', page)


def unread_part(page: str) -> str:
    return page.split('id="history"')[0]


def popup_id(site: Served, step: str, partner: str = "p1") -> str:
    return next(p["id"] for p in site.engine.popups(partner) if p["step"] == step)


def test_engine_portal_link_prints_a_url_that_opens_the_partners_center(center, capsys):
    assert main(["-w", str(center.root), "portal-link", "p1", "--page", "dashboard"]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith(f"{center.url}/m/") and url.endswith("?page=dashboard")
    page = center.get(center.path_of(url))
    assert page.status_code == 200
    assert "Hello Ann:" in page.text and "Hello Bo:" not in page.text  # p1's pop-ups only
    assert main(["-w", str(center.root), "portal-link", "p1", "--days", "7", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["partner"] == "p1" and center.get(center.path_of(made["url"])).status_code == 200
    in_a_week = datetime.now(UTC) + timedelta(days=7)  # the command's clock is the wall clock
    assert abs(from_iso(made["expires"]) - in_a_week) < timedelta(minutes=5)
    assert main(["-w", str(center.root), "portal-link", "nobody"]) == 1
    assert "unknown partner 'nobody'" in capsys.readouterr().err


def test_portal_link_refuses_without_the_key_or_base_url(center, capsys, monkeypatch):
    assert main(["-w", str(center.root), "portal-link", "p1", "--days", "0"]) == 2
    monkeypatch.delenv("ENGINE_SECRET")
    assert main(["-w", str(center.root), "portal-link", "p1"]) == 1
    assert "ENGINE_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("ENGINE_SECRET", SECRET.decode())
    set_web(center.root, base_url=None)
    assert main(["-w", str(center.root), "portal-link", "p1"]) == 1
    assert "web.base_url" in capsys.readouterr().err


def _altered(token: str) -> list[str]:
    return [token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:] for i in (0, len(token) // 2, len(token) - 1)]


def test_a_tampered_expired_or_foreign_link_is_404_and_records_nothing(center):
    good = link(center).removeprefix("/m/")
    tid = popup_id(center, "terms")
    csrf = csrf_of(center.get(f"/m/{good}").text)
    signer = Signer(SECRET)
    expired = portal_links.token(signer, "p1", center.clock.now())
    bad = [*_altered(good), expired, portal_links.token(signer, "nobody", center.clock.now() + timedelta(days=1)),
           signer.token(UNSUBSCRIBE, json.dumps(["p1", "2099-01-01T00:00:00Z"])),
           portal_links.token(Signer(b"another key"), "p1", center.clock.now() + timedelta(days=1))]
    before = dump_store(center.root)
    for token in bad:
        page = center.get(f"/m/{token}?page=dashboard")
        assert page.status_code == 404, token
        assert "New terms" not in page.text and 'method="post"' not in page.text
        posted = center.post(f"/m/{token}/popups/{tid}/read", data={"csrf": csrf})
        assert posted.status_code == 404
    assert "This link has expired" in center.get(f"/m/{expired}").text
    assert dump_store(center.root) == before


def test_a_page_shows_its_unread_popups_and_below_every_popup(center):
    page = center.get(link(center, page="dashboard"))
    assert page.status_code == 200
    unread = unread_part(page.text)
    assert "Hello Ann:" in unread and "Tell us" not in unread  # the survey names the orders page
    assert "Tell us" in page.text.split('id="history"')[1]  # the history keeps everything
    assert len(actions_of(page.text)) == 1
    everything = center.get(link(center))
    assert "New terms" in unread_part(everything.text) and "Tell us" in unread_part(everything.text)
    assert len(actions_of(everything.text)) == 2


def test_campaign_text_is_shown_as_text_never_as_markup(center):
    page = center.get(link(center, page="dashboard")).text
    assert "<script" not in page
    assert "New terms &lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(&#39;body&#39;)&lt;/script&gt; please read &amp; accept." in page


def test_marking_read_needs_the_form_token_of_the_same_link(center):
    path = link(center, page="dashboard")
    action = actions_of(center.get(path).text)[0]
    other_link_csrf = csrf_of(center.get(link(center, "p2")).text)
    before = dump_store(center.root)
    for form in ({}, {"csrf": "nonsense"}, {"csrf": other_link_csrf}):
        refused = center.post(action, data={**form, "page": "dashboard"})
        assert refused.status_code == 403 and "Not done" in refused.text
    assert dump_store(center.root) == before
    assert all(p["read_at"] is None for p in center.engine.popups("p1"))


def test_mark_read_goes_back_to_the_page_and_keeps_the_popup_with_its_read_time(center, capsys):
    path = link(center, page="dashboard")
    shown = center.get(path).text
    done = center.post(actions_of(shown)[0], data={"csrf": csrf_of(shown), "page": "dashboard"})
    assert done.status_code == 303 and done.headers["location"] == path
    after = center.get(path).text
    assert "New terms" not in unread_part(after) and "No new messages." in after
    read_at = from_iso(next(p for p in center.engine.popups("p1") if p["step"] == "terms")["read_at"])
    assert read_at == center.clock.now()
    local = read_at.astimezone(center.engine.plan.tz).strftime("%Y-%m-%d %H:%M")
    history = after.split('id="history"')[1]
    assert "New terms" in history and local in history and "not read yet" in history  # the survey is not read
    assert main(["-w", str(center.root), "popups", "--partner", "p1", "--json"]) == 0
    listed = {p["step"]: p["read_at"] for p in json.loads(capsys.readouterr().out)}
    assert listed["terms"] is not None and listed["survey"] is None
    logged = [e for e in center.engine.log("notice") if e["action"] == "popup.read"]
    assert [e["user"] for e in logged] == ["partner:p1"]  # the partner, through the signed link
    entries = len(center.engine.log("notice"))
    again = center.post(actions_of(shown)[0], data={"csrf": csrf_of(shown), "page": "dashboard"})
    assert again.status_code == 303 and len(center.engine.log("notice")) == entries  # read once, logged once


def test_another_partners_popup_is_404(center):
    shown = center.get(link(center)).text
    theirs = popup_id(center, "terms", "p2")
    refused = center.post(f"{link(center)}/popups/{theirs}/read", data={"csrf": csrf_of(shown)})
    assert refused.status_code == 404
    assert center.engine.popups("p2")[0]["read_at"] is None


def test_only_the_configured_portal_may_frame_the_center(center):
    page = center.get(link(center))
    policy = page.headers["content-security-policy"]
    assert f"frame-ancestors 'self' {PORTAL_ORIGIN}" in policy
    assert "script-src" not in policy and "default-src 'none'" in policy
    assert "x-frame-options" not in page.headers
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'self' " in center.get("/m/not-a-token").headers["content-security-policy"]


def test_without_origins_the_center_may_not_be_framed(tmp_path, store_url):
    with open_center(tmp_path, store_url, []) as site:
        policy = site.get(link(site)).headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "'self'" not in policy.split("frame-ancestors")[1]


def key_for(site: Served, user: str) -> str:
    with site.engine.store.transaction():
        return apikeys.create(site.engine.store, user, site.clock.now())[1]


def test_the_api_gives_a_portal_fresh_links(center):
    key = key_for(center, "bob")  # a viewer: reading is enough
    answer = center.api("GET", "/api/partners/p1/portal-link?page=dashboard&days=7", key)
    assert answer.status_code == 200
    made = answer.json()
    assert from_iso(made["expires"]) == center.clock.now() + timedelta(days=7)
    assert urlsplit(made["url"]).query == "page=dashboard"
    assert "Hello Ann:" in center.get(center.path_of(made["url"])).text
    assert center.api("GET", "/api/partners/nobody/portal-link", key).status_code == 404
    assert center.api("GET", "/api/partners/p1/portal-link?days=0", key).status_code == 422
    assert center.api("GET", "/api/partners/p1/portal-link", None).status_code == 401


@pytest.mark.no_store
@pytest.mark.parametrize("origin", ["https://portal.example.com/deals", "portal.example.com",
                                    "ftp://portal.example.com", "https://portal.example.com; script-src *",
                                    "https://portal.example.com:70000"])
def test_frame_ancestors_must_be_origins(origin):
    with pytest.raises(ValueError, match="an origin is http"):
        Web(frame_ancestors=[origin])
    assert Web(frame_ancestors=["https://portal.example.com/", "http://localhost:8000"]).frame_ancestors == [
        "https://portal.example.com", "http://localhost:8000"]
