"""API keys of the web API (`engine apikey`): a key acts as its user (engine.yaml's ``users``),
with that user's roles, and in the audit log under that user's name.

A key reads ``ek_<id>_<secret>``. The id (letters and digits) names the key's row: `engine apikey
list` shows it, `engine apikey revoke` takes it, the audit log records it. The secret
(``secrets.token_urlsafe(32)``) is shown once, when the key is made: the store keeps a random
salt and the scrypt hash of the secret, never the key, so a copy of the store lets nobody in.

scrypt costs tens of milliseconds on purpose, so :func:`verify` remembers, in this process, the
keys that verified (by their SHA-256, not their text). A request with a remembered key still
reads the key's row, one lookup by primary key: a key that another process revoked is refused
from the next request on. The last use is written at most once a minute per key, so requests
stay read-mostly and never wait for a tick to record it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import string
from datetime import datetime, timedelta
from typing import Any

from .clock import aware, maybe_from_iso
from .store import Store

PREFIX = "ek_"
ID_ALPHABET = string.ascii_lowercase + string.digits  # no "_": the id ends at the first one
ID_LENGTH = 10
SECRET_BYTES = 32  # token_urlsafe(32): 43 characters
SALT_BYTES = 16
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
TOUCH_EVERY = timedelta(minutes=1)  # a key's last use is recorded at most this often
CACHE_SIZE = 1024  # keys remembered as verified, in this process
LISTED = ("id", "user", "created_at", "last_used_at", "revoked_at")  # what a listing shows: never salt or hash

_KEY = re.compile(r"ek_([A-Za-z0-9]{8,12})_([A-Za-z0-9_-]{43})")  # ASCII only, no surrounding space

# sha256 of a key that verified → (key id, user, the stored hash it verified against)
_verified: dict[str, tuple[str, str, str]] = {}


def create(store: Store, user: str, at: datetime) -> tuple[str, str]:
    """A new key for ``user``: (key id, the full key). The key is in no store and no log: the
    caller shows it once. Inside the caller's transaction when there is one (so its audit log
    line commits with it)."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(secret, salt).hex()  # before the transaction: the hashing takes its time
    for _ in range(3):  # 36**10 ids: a taken one is all but impossible, but costs nothing to survive
        key_id = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
        try:
            with store.transaction():
                store.add_api_key(key_id, user, salt.hex(), digest, at)
        except sqlite3.IntegrityError:
            continue
        return key_id, f"{PREFIX}{key_id}_{secret}"
    raise RuntimeError("could not find a free API key id")


def verify(store: Store, presented: Any, at: datetime) -> tuple[str, str] | None:
    """(key id, user) of a valid key that is not revoked, else None; never raises for what a
    client sent (any text, any object). Records the key's last use at ``at``, at most once a
    minute."""
    parsed = parse(presented)
    if parsed is None:
        return None
    key_id, secret = parsed
    row = store.api_key(key_id)
    fingerprint = hashlib.sha256(presented.encode("ascii")).hexdigest()
    if row is None or row["revoked_at"] is not None:
        _verified.pop(fingerprint, None)
        return None
    known = (key_id, row["user"], row["hash"])
    if _verified.get(fingerprint) != known:
        if not _matches(secret, row["salt"], row["hash"]):
            return None
        if len(_verified) >= CACHE_SIZE:
            _verified.clear()
        _verified[fingerprint] = known
    _note_use(store, row, aware(at))
    return key_id, row["user"]


def revoke(store: Store, key_id: str, at: datetime) -> bool:
    """Revoke a key: refused from the next request on, in every process (each one reads the
    key's row on every request). False when there is no such key or it was revoked already."""
    with store.transaction():
        return store.revoke_api_key(key_id, at)


def listing(store: Store) -> list[dict]:
    """Every key, oldest first: id, user, created_at, last_used_at, revoked_at (no hash)."""
    return [{name: key[name] for name in LISTED} for key in store.api_keys()]


def parse(presented: Any) -> tuple[str, str] | None:
    """(key id, secret) of text shaped like a key, else None."""
    if not isinstance(presented, str):
        return None
    match = _KEY.fullmatch(presented)
    return (match.group(1), match.group(2)) if match else None


def _scrypt(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode("ascii"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)


def _matches(secret: str, salt: str, digest: str) -> bool:
    """Whether the secret hashes to the stored digest; a damaged row matches nothing."""
    try:
        stored_salt, stored_digest = bytes.fromhex(salt), bytes.fromhex(digest)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(_scrypt(secret, stored_salt), stored_digest)


def _note_use(store: Store, row: dict, at: datetime) -> None:
    """The key's last use, unless one was recorded less than :data:`TOUCH_EVERY` ago (by this
    process or another: the row says)."""
    try:
        last = maybe_from_iso(row["last_used_at"])
    except (TypeError, ValueError):
        last = None
    if last is None or at - last >= TOUCH_EVERY:
        store.touch_api_key(row["id"], at)
