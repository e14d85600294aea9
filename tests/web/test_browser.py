"""The pages in a real browser: headless Chromium from Debian's ``chromium`` and
``chromium-driver`` packages, driven by Selenium, against ``engine serve`` on 127.0.0.1.

Skipped with the reason when Chromium or its driver is missing here; CI installs both and sets
``ENGINE_REQUIRE_BROWSER=1``, which turns the skip into a failure. Each test saves screenshots of
the pages it visits under ``ENGINE_SCREENSHOTS`` (default ``build/screenshots``) for a person to
look at. One store is enough for what a browser shows; the pages' store work runs on both in
test_pages.py."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from engine import apikeys
from engine.web import session as sessions

from ._served import SECRET, Served, served
from .test_portal import NOTICE, set_web

pytestmark = pytest.mark.sqlite_only("one store is enough for what a browser shows (test_pages.py runs on both)")

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOTS = Path(os.environ.get("ENGINE_SCREENSHOTS") or Path(__file__).resolve().parents[2] / "build" / "screenshots")
ROOT = Path(__file__).resolve().parents[2]

BRANCHING = """\
name: Follow-up
audience:
  rulesets:
    all: "true"
trigger:
  audience: true
steps:
  - id: hello
    email: {subject: "Hello", body: "Hello. {{ unsubscribe_url }}"}
  - wait: 2d
  - id: route
    branch:
      - {when: opened("hello"), goto: thanks}
      - {else: nudge}
  - id: nudge
    email: {subject: "Did you see this?", body: "A nudge. {{ unsubscribe_url }}"}
  - id: thanks
    sms: {text: "Thanks for reading"}
"""


@pytest.fixture
def browser(tmp_path) -> Iterator:
    missing = [path for path in (CHROMIUM, DRIVER) if not Path(path).exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = f"no {', '.join(missing)}: apt-get install chromium chromium-driver (CI does)"
        if os.environ.get("ENGINE_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                 f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def log_in(driver, site: Served, user: str) -> None:
    from selenium.webdriver.common.by import By

    with site.engine.store.transaction():
        key = apikeys.create(site.engine.store, user, site.clock.now())[1]
    driver.get(f"{site.url}/partners/p1")  # not logged in: the login page, then back here
    assert "/login" in driver.current_url
    driver.find_element(By.ID, "key").send_keys(key)
    submit_and_wait(driver, driver.find_element(By.ID, "login"))
    assert driver.current_url == f"{site.url}/partners/p1"


def submit_and_wait(driver, button) -> None:
    """Click a form's button and wait until the page it posts to has replaced this one (a click
    returns before the navigation ends)."""
    from selenium.webdriver.support.expected_conditions import staleness_of
    from selenium.webdriver.support.wait import WebDriverWait

    page = driver.find_element("tag name", "html")
    button.click()
    WebDriverWait(driver, 15).until(staleness_of(page))


def cli_status(site: Served, partner: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "engine", "-w", str(site.root), "status", "--partner", partner, "--json"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_marketer_pauses_an_enrollment_on_the_partner_page(tmp_path, browser):
    from selenium.webdriver.common.by import By

    with served(tmp_path, None) as site:
        site.engine.tick()
        log_in(browser, site, "alice")
        screenshot(browser, "partner-page")
        submit_and_wait(browser, browser.find_element(By.CSS_SELECTOR, 'tr[data-campaign="welcome"] button[data-action="pause"]'))
        assert "Pause: done." in browser.find_element(By.CSS_SELECTOR, ".flash").text
        assert browser.find_element(By.CSS_SELECTOR, 'tr[data-campaign="welcome"]').get_attribute("data-status") == "paused"
        screenshot(browser, "partner-page-paused")
        assert cli_status(site, "p1")["enrollments"][0]["status"] == "paused"
        browser.get(f"{site.url}/campaigns")
        assert browser.find_element(By.CSS_SELECTOR, 'tr[data-campaign="welcome"]')
        screenshot(browser, "campaigns-page")


def test_a_viewer_has_no_pause_button_and_their_post_is_refused(tmp_path, browser):
    from selenium.webdriver.common.by import By

    with served(tmp_path, None) as site:
        site.engine.tick()
        log_in(browser, site, "bob")
        assert browser.find_element(By.CSS_SELECTOR, 'tr[data-campaign="welcome"]').get_attribute("data-status") == "active"
        assert browser.find_elements(By.CSS_SELECTOR, "button[data-action]") == []
        screenshot(browser, "partner-page-viewer")
        # the form the page does not show, posted with the viewer's own session and token
        cookie = browser.get_cookie(sessions.COOKIE)
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        token = re.search(r'name="csrf" value="([^"]+)"', browser.page_source).group(1)
        refused = httpx.post(f"{site.url}/partners/p1/campaigns/welcome/pause", data={"csrf": token},
                             cookies={sessions.COOKIE: cookie["value"]})
        assert refused.status_code == 403
        assert cli_status(site, "p1")["enrollments"][0]["status"] == "active"


def test_the_campaign_page_draws_a_flow_with_a_branch(tmp_path, browser):
    from selenium.webdriver.common.by import By

    with served(tmp_path, None, campaigns={"follow-up": BRANCHING}) as site:
        site.engine.tick()
        log_in(browser, site, "alice")
        browser.get(f"{site.url}/campaigns/follow-up")
        diagram = browser.find_element(By.CSS_SELECTOR, "#flow svg")
        assert diagram.size["width"] > 100 and diagram.size["height"] > 200  # drawn, not just present
        steps = [n.get_attribute("data-step") for n in diagram.find_elements(By.CSS_SELECTOR, "g.node")]
        assert [s for s in steps if s] == ["hello", "route", "nudge", "thanks", "end"]
        branch = diagram.find_element(By.CSS_SELECTOR, 'g.node-branch[data-step="route"]')
        assert branch.is_displayed()
        jumps = {(e.get_attribute("data-to"), e.get_attribute("data-label"))
                 for e in diagram.find_elements(By.CSS_SELECTOR, 'g.edge-jump[data-from="route"]')}
        assert jumps == {("thanks", "case 1"), ("nudge", "else")}
        screenshot(browser, "campaign-page")


def portal_link(site: Served, partner: str, page: str) -> str:
    """What `engine portal-link` prints, signed with the server's key."""
    env = {**os.environ, "ENGINE_SECRET": SECRET.decode()}
    done = subprocess.run([sys.executable, "-m", "engine", "-w", str(site.root), "portal-link", partner, "--page", page],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@contextmanager
def portal_page(url: str) -> Iterator[str]:
    """A partner portal on another origin (127.0.0.1, its own port) whose page shows ``url`` in an iframe."""
    page = f'<!doctype html><title>Portal</title><h1>Partner portal</h1><iframe id="center" src="{url}" width="900" height="600"></iframe>'

    class Portal(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_a_pop_up_read_in_the_message_center_leaves_the_page_and_stays_in_the_history(tmp_path, browser):
    from selenium.webdriver.common.by import By

    with served(tmp_path, None, campaigns={"notice": NOTICE}) as site:
        site.engine.tick()
        browser.get(portal_link(site, "p1", "dashboard"))
        offered = browser.find_elements(By.CSS_SELECTOR, "article.popup")
        titles = [a.find_element(By.TAG_NAME, "h3").text for a in offered]
        assert titles == ["New terms <script>alert('title')</script>"]  # the dashboard's only, shown as text
        screenshot(browser, "message-center")
        popup = offered[0].get_attribute("data-popup")
        submit_and_wait(browser, offered[0].find_element(By.CSS_SELECTOR, 'button[data-action="read"]'))
        assert browser.find_elements(By.CSS_SELECTOR, "article.popup") == []
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-popup="{popup}"]')
        assert row.get_attribute("data-read") == "yes" and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", row.text)
        screenshot(browser, "message-center-read")
        assert site.engine.popups("p1", page="dashboard") == []  # the page offers it no more
        assert {p["id"]: p["read_at"] is not None for p in site.engine.popups("p1")}[popup]


def test_the_message_center_shows_in_the_portals_iframe_and_nowhere_else(tmp_path, browser):
    from selenium.webdriver.common.by import By

    with served(tmp_path, None, campaigns={"notice": NOTICE}) as site:
        site.engine.tick()
        link = portal_link(site, "p1", "dashboard")
        with portal_page(link) as portal:
            set_web(site.root, frame_ancestors=[portal.rstrip("/")])
            browser.get(portal)
            browser.switch_to.frame(browser.find_element(By.ID, "center"))
            assert len(browser.find_elements(By.CSS_SELECTOR, "article.popup h3")) == 1
            browser.switch_to.default_content()
            screenshot(browser, "message-center-in-portal")
            set_web(site.root, frame_ancestors=["https://portal.example.com"])  # another portal's origin only
            time.sleep(1.1)  # the server looks at engine.yaml again at most once a second
            browser.get(portal)
            browser.switch_to.frame(browser.find_element(By.ID, "center"))
            assert browser.find_elements(By.CSS_SELECTOR, "article.popup") == []  # the browser refused to frame it
            browser.switch_to.default_content()


def test_the_login_page(tmp_path, browser):
    with served(tmp_path, None) as site:
        browser.get(f"{site.url}/campaigns")
        assert "/login" in browser.current_url
        screenshot(browser, "login-page")
