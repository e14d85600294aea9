"""Links inside messages (engine.links): tokens that verify only as signed, headers, tracking,
and what happens without the signing key."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.model import Web
from engine.channels.smtp import engine_id_of, message_id
from engine.links import CLICK, OPEN, UNSUBSCRIBE, Links, MissingSecret, Signer, links_for, require_signer

pytestmark = pytest.mark.no_store

SIGNER = Signer(b"k" * 32)
ids = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=80)
urls = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=200).map(lambda s: "https://x.example/" + s)


@settings(max_examples=300)
@given(message=ids, link=st.none() | urls, kind=st.sampled_from([UNSUBSCRIBE, OPEN, CLICK, "p"]))
def test_a_token_reads_back_what_was_signed(message, link, kind):
    token = SIGNER.token(kind, message, link)
    found = SIGNER.read(kind, token)
    assert found is not None and (found.message, found.link) == (message, link)
    assert all(ch.isalnum() or ch in "-_." for ch in token)  # safe in a URL path as it is


@settings(max_examples=300)
@given(message=ids, position=st.integers(min_value=0), replacement=st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."))
def test_any_changed_character_fails(message, position, replacement):
    token = SIGNER.token(UNSUBSCRIBE, message)
    i = position % len(token)
    if token[i] == replacement:
        return
    assert SIGNER.read(UNSUBSCRIBE, token[:i] + replacement + token[i + 1:]) is None


def test_the_spare_bits_of_base64_do_not_let_a_changed_token_through():
    token = SIGNER.token(OPEN, "c:p:1:s:1")
    last = token[-1]
    # the MAC is 32 bytes: its last base64 character carries 2 spare bits; a character that
    # differs only there decodes to the same bytes, and must still fail
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twins = [c for c in alphabet if c != last and alphabet.index(c) >> 2 == alphabet.index(last) >> 2]
    assert twins
    for twin in twins:
        changed = token[:-1] + twin
        mac = changed.partition(".")[2]
        assert base64.urlsafe_b64decode(mac + "=") == base64.urlsafe_b64decode(token.partition(".")[2] + "=")
        assert SIGNER.read(OPEN, changed) is None


def test_kinds_and_keys_do_not_mix():
    token = SIGNER.token(OPEN, "m")
    assert SIGNER.read(UNSUBSCRIBE, token) is None
    assert Signer(b"other").read(OPEN, token) is None
    for junk in ("", ".", "a.b.c", "é.x", "\x00", "a" * 5000):
        assert SIGNER.read(OPEN, junk) is None


def test_headers_and_tracking():
    links = Links("https://c.example", SIGNER, True, "unsub@example.com")
    headers = links.headers("m1")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<https://c.example/u/")
    assert headers["List-Unsubscribe"].endswith(", <mailto:unsub@example.com?subject=unsubscribe>")
    body = ('<html><body><a class="x" href="https://shop.example/a?b=1&amp;c=2">shop</a> '
            "<a href='http://old.example/'>old</a> <a href=\"mailto:x@example.com\">mail</a> "
            '<a href="https://c.example/u/keep">unsubscribe</a></body></html>')
    tracked = links.track("m1", body)
    assert "shop.example" not in tracked and "old.example" not in tracked
    assert 'href="mailto:x@example.com"' in tracked and 'href="https://c.example/u/keep"' in tracked
    click = tracked.split('href="https://c.example/c/', 1)[1].split('"', 1)[0]
    assert SIGNER.read(CLICK, click).link == "https://shop.example/a?b=1&c=2"
    assert tracked.index('src="https://c.example/o/') < tracked.index("</body>")
    assert Links("https://c.example", SIGNER, False, None).track("m1", body) == body


def test_a_tick_needs_the_key_once_base_url_is_set(monkeypatch):
    web = Web(base_url="https://c.example", secret_env="MY_KEY")
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(MissingSecret, match="MY_KEY"):
        require_signer(web)
    assert require_signer(web, offline=True) is not None  # a simulation signs with a placeholder
    assert require_signer(Web()) is None  # no base_url: no links, no key needed
    monkeypatch.setenv("MY_KEY", "secret")
    assert links_for(web, require_signer(web)) is not None


@given(ids)
def test_the_message_id_header_gives_the_engine_id_back(engine_id):
    header = message_id(engine_id, "news@example.com")
    assert engine_id_of(header) == engine_id


def test_a_header_of_someone_else_is_not_ours():
    assert engine_id_of("<14c5d75ce93.dfd.64b469@ismtpd-555>") is None
    assert engine_id_of("") is None and engine_id_of("<@>") is None


def test_tracking_is_one_pass_whatever_the_body_holds():
    links = Links("https://c.example", SIGNER, True, None)
    many = "<a href='https://x.example/'>x</a>" * 1500
    tracked = links.track("m", many)
    assert tracked.count("https://c.example/c/") == 1000 and tracked.count("https://x.example/") == 500
    for odd in ("<a" * 100_000, "<a " * 100_000, "<abbr href='https://x.example/'>", "<a href='https://x.example/"):
        out = links.track("m", odd)  # no anchor to rewrite: the body as it was, and the pixel
        assert out.startswith(odd) and out.count("<img") == 1
