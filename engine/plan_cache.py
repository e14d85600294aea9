"""The compiled workspace kept between processes, so that a process that finds its files as the
last one left them skips reading, validating and compiling them again (`engine tick` from cron:
issue 17's start-up).

It is one file, ``.engine/plan.pickle`` in the workspace, rewritten after every load that
missed it, where ``.engine/`` exists: a command that keeps no state there (``engine test``, a
review) does not create it for the cache. It is used only when everything it was made from is
the same:

- the engine's own code (the size and time of every module of ``dsl``, ``campaigns`` and
  ``engine``) and Python's version;
- the workspace root as given (the spans of diagnostics name files through it);
- the bytes of every file the workspace is loaded from (engine.yaml, campaigns/, groups/,
  templates/: :func:`engine.compiled.loaded_files`), hashed, not their times, so an edit within
  the file system's clock resolution is still seen;
- and the size and time of every attachment its email steps name (loading checks them).

Anything wrong with the file (missing, unreadable, another key, truncated, from another
version) is a miss: the workspace is loaded as without it. So is a plan that cannot be pickled
(the file is then not written), and a workspace where ``.engine/`` cannot be written.

Trust: unpickling runs code, so the file is read only when this user owns it and no one else
may write it, the rule that Python's own ``__pycache__`` lives by; it is written with mode
0600. Whoever can write ``.engine/`` can already change the store it holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import io
import os
import pickle
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .compiled import fingerprint, loaded_files

if TYPE_CHECKING:
    from .compiled import CompiledWorkspace

FORMAT = 1  # bump when what is pickled changes shape in a way the code stamp cannot see
NAME = "plan.pickle"
PACKAGES = ("dsl", "campaigns", "engine")


def cached_plan(root: Path, load: Callable[[Path], "CompiledWorkspace"]) -> "CompiledWorkspace":
    """``load(root)``, or the plan that an earlier load of the same files left in the cache."""
    path = root / ".engine" / NAME
    key = _key(root)
    plan = _read(path, key)
    if plan is not None:
        return dataclasses.replace(plan, fingerprint=fingerprint(root))
    plan = load(root)
    _write(path, key, plan)
    return plan


def _key(root: Path) -> bytes:
    digest = hashlib.sha256(f"{FORMAT}\n{_code_stamp()}\n{os.fspath(root)}\n".encode())
    prefix = len(os.path.join(root, ""))
    for name in loaded_files(root):
        try:
            with open(name, "rb") as file:
                content = file.read()
        except IsADirectoryError:
            content = b"<directory>"
        except OSError:
            continue
        digest.update(f"{name[prefix:]}\0{len(content)}\0".encode("utf-8", "surrogateescape"))
        digest.update(content)
    return digest.hexdigest().encode()


@lru_cache(maxsize=1)
def _code_stamp() -> str:
    """What the pickled objects' classes and functions are made of: this engine's modules (and
    the standard library's, by Python's version). No other library's object is pickled: models
    are stored as their parts of campaigns.shapes."""
    top = Path(__file__).resolve().parent.parent
    parts = [sys.version]
    for package in PACKAGES:
        for folder, subfolders, files in os.walk(top / package):
            subfolders[:] = sorted(s for s in subfolders if s != "__pycache__")
            for name in sorted(f for f in files if f.endswith(".py")):
                stat = os.stat(os.path.join(folder, name))
                parts.append(f"{os.path.relpath(os.path.join(folder, name), top)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _attachments(plan: "CompiledWorkspace") -> list[tuple[str, Any]]:
    """Each attachment an email step names, with what loading saw of it (and of its folder:
    a missing file's error suggests a neighbour)."""
    names = sorted({name for file in plan.workspace.files.values() if file.campaign is not None
                    for step in file.campaign.action_steps if step.email is not None
                    for name in step.email.attachments if isinstance(name, str)})
    return [(name, _seen(plan.root / name)) for name in names]


def _seen(path: Path) -> tuple:
    def stat(p: Path) -> tuple | None:
        try:
            s = os.stat(p)
        except (OSError, ValueError):
            return None
        return s.st_mode, s.st_size, s.st_mtime_ns, s.st_ino

    return stat(path), stat(path.parent)


def _read(path: Path, key: bytes) -> "CompiledWorkspace | None":
    try:
        with open(path, "rb") as file:
            status = os.fstat(file.fileno())
            if status.st_mode & 0o022 or (hasattr(os, "getuid") and status.st_uid != os.getuid()):
                return None  # someone else may have written it: never unpickle that
            if file.readline().rstrip(b"\n") != key:
                return None
            entry = _unpickled(file)
        plan, attachments = entry["plan"], entry["attachments"]
        if any(_seen(plan.root / name) != seen for name, seen in attachments):
            return None
        return plan
    except Exception:  # a cache: whatever is wrong with it, the workspace is loaded instead
        return None


def _unpickled(file: Any) -> Any:
    """The cyclic garbage collector paused: unpickling makes many objects that all stay alive,
    which it would scan again and again for nothing (as loading the files does, with
    campaigns.workspace's own pause)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return pickle.load(file)
    finally:
        if was_enabled:
            gc.enable()


def _write(path: Path, key: bytes, plan: "CompiledWorkspace") -> None:
    if not path.parent.is_dir():  # a workspace without state of its own (engine test, a review) gets none
        return
    try:
        data = _dumps({"plan": plan, "attachments": _attachments(plan)})
    except Exception:  # something in this plan cannot be pickled: it is simply not kept
        return
    temporary = path.with_name(f"{NAME}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(key + b"\n")
            file.write(data)
        os.replace(temporary, path)  # a reader sees the old file or the new one, never half
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _dumps(entry: dict) -> bytes:
    """The entry pickled, with three kinds of objects stored otherwise: a model as its part of
    :mod:`campaigns.shapes` (no pydantic to read it back), a YAML document as its file's name
    (:class:`DocumentOnDemand`), and a compiled expression as its code (pickle cannot store a
    function it did not import)."""
    from campaigns.model import Located as Model
    from campaigns.shapes import restore
    from dsl.compile import reduce_compiled
    from dsl.yamlload import Document

    aliases: dict[type, dict[str, str]] = {}  # one table per model class, shared by its instances

    def part(model: Any) -> tuple:
        cls = type(model)
        if cls not in aliases:
            aliases[cls] = {name: info.alias for name, info in cls.model_fields.items() if info.alias}
        shape = next(c for c in cls.__mro__ if c.__module__ == "campaigns.shapes")
        private = model.__pydantic_private__ or {}
        values = {name: model.__dict__[name] for name in cls.model_fields}
        return restore, (shape, values, private.get("_document"), private.get("_path", ()), aliases[cls])

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, Model):
                return part(obj)
            if type(obj) is Document:  # its YAML nodes: most of the file, and yaml to read them back
                return DocumentOnDemand, (obj.path,)
            if type(obj).__name__ == "function":
                reduced = reduce_compiled(obj)
                if reduced is not None:
                    return reduced
            return NotImplemented

    buffer = io.BytesIO()
    Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(entry)
    return buffer.getvalue()


class DocumentOnDemand:
    """A file's YAML document (:class:`dsl.yamlload.Document`), in a plan read from the cache:
    loaded again from the file the first time something of it is asked (where a model was
    written, for a message that points there). The cache held the plan of this very text."""

    def __init__(self, path: str):
        self.source_path = path
        self._document: Any = None

    def __getattr__(self, name: str) -> Any:  # (only for what this object has not: the document's)
        if name.startswith("__") or name == "_document":
            raise AttributeError(name)
        if self._document is None:
            self._document = _document(self.source_path)
        return getattr(self._document, name)

    def __reduce__(self) -> tuple:
        return DocumentOnDemand, (self.source_path,)


def _document(path: str) -> Any:
    from dsl.diagnostics import SourceError
    from dsl.source import SourceText
    from dsl.yamlload import Document, load_yaml

    try:
        return load_yaml(path, Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SourceError):  # changed since: its spans are the file's start
        return Document(SourceText(path, ""), None)
