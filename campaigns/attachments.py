"""Email attachments (issue 12): files of the workspace sent with an email step's messages.

An email step lists them by their path inside the workspace::

    - id: prices
      email:
        subject: "Our prices"
        body: "..."
        attachments: [files/price-list.pdf]

The list is the step's: every language's message carries the same files (a translation has no
``attachments`` of its own).

Rules, checked by ``engine check`` at each path's own line and column (:func:`check_attachments`,
called by the workspace loader), and again when a message is made and when it is handed over:

- a path is relative to the workspace root, and stays inside it: no absolute path, no ``..``,
  and no symbolic link that leads out of the workspace;
- it names an existing, readable, regular file;
- it is not where the engine keeps state, secrets or partner data: nothing hidden (no part of
  the path, links followed, starting with ``.``: ``.engine/``, ``.git/``, ``.env``), not the
  partner source, not ``groups/``;
- at most :data:`MAX_FILES` files per email, none listed twice, and at most :data:`MAX_BYTES`
  (10 MB, 10,485,760 bytes) per message, all its files together (so each one too): what mail
  servers commonly take once base64 has grown it by a third.

When a step runs, each file is recorded with the message (:func:`describe`): its path, size,
sha256 and content type (from its name, by Python's built-in table, so every machine says the
same). The file outbox lists that, the webhook transport posts it (metadata, never the
content), and the SMTP transport reads each file when it hands the message over
(:func:`read_attachment`): a file that is gone, or whose size or sha256 is no longer the
recorded one, fails that message with the reason, rather than send something other than what
was recorded.
"""

from __future__ import annotations

import functools
import hashlib
import mimetypes
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from dsl.diagnostics import Diagnostic, did_you_mean, error
from dsl.ids import shown

if TYPE_CHECKING:
    from .shapes import Campaign, Settings

MAX_FILES = 10
MAX_BYTES = 10 * 1024 * 1024  # per message, all attachments together
LIMIT = "10 MB (10,485,760 bytes) per message, all attachments together"
_CHUNK = 1 << 20
_TYPES = mimetypes.MimeTypes(filenames=())  # Python's own table only: the same on every machine


class AttachmentError(Exception):
    """An attachment that cannot be sent: the message says which and why."""


# --- engine check -------------------------------------------------------------------------------


def check_attachments(campaign: Campaign, root: Path, settings: Settings) -> list[Diagnostic]:
    """Every problem of every email step's ``attachments``, each at its own position."""
    found: list[Diagnostic] = []
    protected = _protected(root, settings)
    for step in campaign.action_steps:
        email = step.email
        if email is None or not email.attachments or email.document is None:
            continue
        names = email.attachments
        if len(names) > MAX_FILES:
            found.append(error(email.key_span("attachments"),
                               f"at most {MAX_FILES} attachments per email, this one has {len(names)}"))
        total, sized = 0, True
        seen: set[str] = set()
        for i, name in enumerate(names):
            where = email.document.span(email.path + ("attachments", i))
            if name in seen:
                found.append(error(where, f"attachment {shown(name)} is listed twice"))
                continue
            seen.add(name)
            try:
                path = resolve(root, name, protected, suggest=True)
                size = _size(path, name)
            except AttachmentError as exc:
                found.append(error(where, str(exc)))
                sized = False
                continue
            if size > MAX_BYTES:
                found.append(error(where, _too_big(f"attachment {shown(name)} is", size)))
                sized = False
            total += size
        if sized and total > MAX_BYTES:
            found.append(error(email.key_span("attachments"), _too_big("the attachments of this email are", total)))
    return found


def _protected(root: Path, settings: Settings) -> dict[str, str]:
    """Real paths that are never attached, and why (a directory covers what is inside it)."""
    protected = {os.path.realpath(root / "groups"): "is in groups/ (target groups: partner ids)"}
    source = getattr(getattr(settings, "partners", None), "source", None)
    if isinstance(source, str) and source:
        protected[os.path.realpath(root / source)] = "is the workspace's partner source (every partner's record)"
    return protected


# --- the rules, shared by the check, the step and the transport ---------------------------------


def resolve(root: Path, name: str, protected: Mapping[str, str] | None = None, suggest: bool = False) -> Path:
    """The real path of the attachment ``name`` of the workspace at ``root``; AttachmentError
    when it breaks a rule (outside, hidden, protected, missing, not a regular file). ``suggest``:
    a missing file's message names the closest file of its directory."""
    if not isinstance(name, str) or not name.strip() or any(not c.isprintable() for c in name):
        raise AttachmentError(f"attachment {shown(str(name))} is not a file name")
    pure = PurePosixPath(name)
    if pure.is_absolute() or name.startswith("~"):
        raise AttachmentError(f"attachment {shown(name)} must be a path relative to the workspace, "
                              "such as files/price-list.pdf")
    if ".." in pure.parts:
        raise AttachmentError(f"attachment {shown(name)} is outside the workspace: name a file inside it")
    if _hidden(pure.parts):
        raise AttachmentError(f"attachment {shown(name)} is hidden (.engine/, .git/ and dotfiles hold state and "
                              "secrets): attachments never come from there")
    base = os.path.realpath(root)
    path = root / name
    try:
        os.stat(path)
    except FileNotFoundError:
        hint = _nearby(root, pure) if suggest else ""
        raise AttachmentError(f"unknown attachment {shown(name)} (no such file in the workspace){hint}") from None
    except (OSError, ValueError) as exc:  # a name too long, a directory we may not enter …
        raise AttachmentError(f"attachment {shown(name)} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    real = os.path.realpath(path)
    if not real.startswith(base.rstrip(os.sep) + os.sep):
        raise AttachmentError(f"attachment {shown(name)} resolves outside the workspace (a link?): it would not be "
                              "sent; put the file itself in the workspace")
    inner = PurePosixPath(Path(real).relative_to(base).as_posix())
    if _hidden(inner.parts):
        raise AttachmentError(f"attachment {shown(name)} leads to a hidden file ({inner}): .engine/, .git/ and "
                              "dotfiles hold state and secrets, attachments never come from there")
    for place, why in (protected or {}).items():
        if real == place or real.startswith(place.rstrip(os.sep) + os.sep):
            raise AttachmentError(f"attachment {shown(name)} {why}: it is never attached")
    if not os.path.isfile(real):
        raise AttachmentError(f"attachment {shown(name)} is not a regular file")
    return Path(real)


def _hidden(parts: Sequence[str]) -> bool:
    return any(part.startswith(".") and part not in (".", "..") for part in parts)


def _nearby(root: Path, pure: PurePosixPath) -> str:
    """`` (did you mean ...)`` among the files of the directory the name points into."""
    directory = root / pure.parent
    try:
        names = [(pure.parent / entry.name).as_posix() for entry in os.scandir(directory)
                 if entry.is_file() and not entry.name.startswith(".")][:1000]
    except (OSError, ValueError):
        return ""
    return did_you_mean(pure.as_posix(), names)


def _size(path: Path, name: str) -> int:
    """The size of a file that can be opened for reading."""
    try:
        with open(path, "rb") as f:
            return os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise AttachmentError(f"attachment {shown(name)} cannot be read: {exc.strerror or exc}") from None


def _too_big(what: str, size: int) -> str:
    return f"{what} {size / 1_000_000:.1f} MB ({size:,} bytes), more than an email may carry: at most {LIMIT}"


def content_type(name: str) -> str:
    """The MIME type of a file by its name (Python's built-in table), else
    application/octet-stream; ``message/*`` and ``multipart/*`` are sent as octet-stream too."""
    guessed, encoding = _TYPES.guess_type(PurePosixPath(name).name, strict=False)
    if guessed is None or encoding is not None or guessed.split("/")[0] in ("message", "multipart"):
        return "application/octet-stream"
    return guessed


# --- when a step runs: what is attached, recorded with the message -------------------------------


def describe(root: Path, names: Sequence[str], settings: Settings | None = None) -> list[dict[str, Any]]:
    """``[{"path", "size", "sha256", "content_type"}]`` of each attachment, for the message's
    record; AttachmentError when one breaks a rule now (the workspace was checked, but files
    change). A file is hashed once for each version of it (its inode, size and times)."""
    if len(names) > MAX_FILES:
        raise AttachmentError(f"at most {MAX_FILES} attachments per email, this step has {len(names)}")
    protected = _protected(root, settings) if settings is not None else None
    entries, total = [], 0
    for name in names:
        path = resolve(root, name, protected)
        try:
            st = os.stat(path)
            total += st.st_size
            if total > MAX_BYTES:
                raise AttachmentError(_too_big("the attachments of this email are", total))
            digest = _digest(str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError as exc:
            raise AttachmentError(f"attachment {shown(name)} cannot be read: {exc.strerror or exc}") from None
        except ValueError:
            raise AttachmentError(f"attachment {shown(name)} changed while it was read: try again") from None
        entries.append({"path": name, "size": st.st_size, "sha256": digest, "content_type": content_type(name)})
    return entries


@functools.lru_cache(maxsize=256)
def _digest(path: str, dev: int, ino: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    """The sha256 of a file as of that stat (the arguments after the path are the cache key);
    ValueError when what is read now is not that size."""
    data, _ = _read(Path(path), MAX_BYTES)
    if data is None or len(data) != size:
        raise ValueError("changed while read")
    return hashlib.sha256(data).hexdigest()


# --- when a message is handed over: the recorded bytes, or an error ------------------------------


def read_attachment(root: Path, entry: Mapping[str, Any]) -> bytes:
    """The content of a recorded attachment, exactly as it was when the message was made;
    AttachmentError when the file is gone, breaks a rule, or its size or sha256 differ."""
    name = entry.get("path")
    if not isinstance(name, str):
        raise AttachmentError(f"attachment record {entry!r} has no path")
    path = resolve(root, name)
    try:
        data, st = _read(path, MAX_BYTES)
    except OSError as exc:
        raise AttachmentError(f"attachment {shown(name)} cannot be read: {exc.strerror or exc}") from None
    if data is None or len(data) != entry.get("size") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        size = st.st_size if data is None else len(data)
        raise AttachmentError(
            f"attachment {shown(name)} changed after the message was made (recorded {entry.get('size')} bytes, "
            f"sha256 {str(entry.get('sha256'))[:12]}…; now {size} bytes"
            + ("" if data is None else f", sha256 {hashlib.sha256(data).hexdigest()[:12]}…")
            + "): not sent, so that nothing else goes out in its place")
    return data


def _read(path: Path, limit: int) -> tuple[bytes | None, os.stat_result]:
    """The file's bytes (None when it is larger than ``limit``: nothing past it is read) and
    the stat of what was opened."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(21, "not a regular file")
        chunks, size = [], 0
        while True:
            chunk = f.read(min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return None, st
        return b"".join(chunks), st
