"""Login sessions and CSRF tokens (engine.web.session): what a cookie or a form token that was
changed, made with another key, or outlived its hours is worth: nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.links import Signer
from engine.web import session as sessions

pytestmark = pytest.mark.no_store

KEY = Signer(b"the workspace's key")
AT = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def test_a_session_reads_back_until_it_expires():
    started = sessions.issue(KEY, "alice", "k1", AT)
    assert sessions.read(KEY, started.token, AT + timedelta(hours=1)) == started
    assert sessions.read(KEY, started.token, AT + timedelta(hours=sessions.SESSION_HOURS)) is None
    assert sessions.read(Signer(b"another key"), started.token, AT) is None
    assert sessions.read(KEY, None, AT) is None and sessions.read(KEY, "", AT) is None


@settings(max_examples=60, deadline=None)
@given(user=st.text(min_size=1, max_size=20), position=st.integers(min_value=0), replacement=st.characters())
def test_any_changed_character_of_a_cookie_is_no_session(user, position, replacement):
    token = sessions.issue(KEY, user, "k1", AT).token
    i = position % len(token)
    changed = token[:i] + replacement + token[i + 1:]
    if changed != token:
        assert sessions.read(KEY, changed, AT) is None


@settings(max_examples=60, deadline=None)
@given(bound=st.text(min_size=1, max_size=40), presented=st.one_of(st.none(), st.text(max_size=120)))
def test_a_form_token_holds_for_its_own_session_only(bound, presented):
    token = sessions.form_token(KEY, bound)
    assert sessions.form_token_ok(KEY, bound, token)
    assert not sessions.form_token_ok(KEY, bound + "x", token)
    assert not sessions.form_token_ok(Signer(b"another key"), bound, token)
    assert sessions.form_token_ok(KEY, bound, presented) == (presented == token)
