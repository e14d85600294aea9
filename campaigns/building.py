"""From a YAML document to a model: pydantic validation whose every problem becomes a diagnostic
at its line and column (``build``), and the valid part of a document that failed (``salvage``),
so that one mistake does not hide the rest of a file."""

from __future__ import annotations

import functools
import re
from datetime import date, timedelta
from typing import Any, TypeVar, get_args, get_origin

from pydantic import ValidationError

from dsl.diagnostics import Diagnostic, did_you_mean, error
from dsl.yamlload import Document

from .model import Branch, Located, Split, Step, Until, Wait, WaitFor, _step_tag, _wait_tag

M = TypeVar("M", bound=Located)


def build(model: type[M], document: Document) -> tuple[M | None, list[Diagnostic]]:
    """Validate a document against a model; every problem becomes a located diagnostic."""
    data = document.data if document.data is not None else {}
    if not isinstance(data, dict):
        return None, [error(document.span(()), f"expected a mapping of keys, found {_kind(data)}")]
    try:
        instance = model.model_validate(data)
    except ValidationError as exc:
        return None, _diagnostics(model, document, exc.errors(include_url=False))
    _attach(instance, document, ())
    return instance, []


def salvage(model: type[M], document: Document, rounds: int = 5) -> M | None:
    """The valid part of a document that failed validation, as a model.

    Each value that failed (a whole step, for a step) is left out and the rest validated
    again, so that the checks needing the whole workspace still run on what is left and one
    run of ``engine check`` reports everything. The file itself keeps its errors: a salvaged
    campaign is for checking only, never run.
    """
    if not isinstance(document.data, dict):
        return None
    removed: set[tuple] = set()
    for _ in range(rounds):
        data, kept = _without(document.data, removed)
        try:
            instance = model.model_validate(data)
        except ValidationError as exc:
            before = len(removed)
            for e in exc.errors(include_url=False):
                path = _original_path(_document_path(data, tuple(e["loc"])), kept)
                if path[:1] == ("steps",) and len(path) >= 2:
                    removed.add(path[:2])
                else:
                    while path and isinstance(path[-1], int):
                        path = path[:-1]
                    if not path:
                        return None
                    removed.add(path)
            if len(removed) == before:
                return None
            continue
        _attach(instance, document, (), kept)
        return instance
    return None


def _without(value: Any, removed: set[tuple], path: tuple = ()) -> tuple[Any, dict[tuple, list[int]]]:
    """``value`` less the parts at ``removed``, and for each list the original index of each
    item kept (so spans still point at the right lines)."""
    kept: dict[tuple, list[int]] = {}

    def strip(v: Any, at: tuple) -> Any:
        if isinstance(v, dict):
            return {k: strip(item, at + (k,)) for k, item in v.items() if at + (k,) not in removed}
        if isinstance(v, list):
            indices = [i for i in range(len(v)) if at + (i,) not in removed]
            kept[at] = indices
            return [strip(v[i], at + (i,)) for i in indices]
        return v

    return strip(value, path), kept


def _original_path(path: tuple, kept: dict[tuple, list[int]]) -> tuple:
    original: tuple = ()
    for part in path:
        if isinstance(part, int) and original in kept:
            part = kept[original][part]
        original += (part,)
    return original


_SHAPE_ERRORS = ("model_type", "dict_type", "model_attributes_type", "union_tag_invalid", "time_delta_type")


def _diagnostics(model: type[Located], document: Document, errors: list[dict]) -> list[Diagnostic]:
    """One diagnostic per problem: where a union member complains only that the value has the
    wrong shape while another member says what is wrong with it, keep the latter."""
    paths = [_document_path(document.data, tuple(e["loc"])) for e in errors]
    specific = [p for p, e in zip(paths, errors) if e["type"] not in _SHAPE_ERRORS]

    def explained(path: tuple) -> bool:
        return any(s[: len(path)] == path for s in specific)

    kept = [e for p, e in zip(paths, errors) if e["type"] not in _SHAPE_ERRORS or not explained(p)]
    return sorted({_diagnostic(model, document, e) for e in kept})


def _attach(value: Any, document: Document, path: tuple, kept: dict[tuple, list[int]] | None = None) -> None:
    """Tell every nested model its document and path (``kept``: see :func:`_without`)."""
    if isinstance(value, Located):
        private = value.__pydantic_private__
        private["_document"], private["_path"] = document, path
        fields = value.__dict__
        for name, key in _keys(type(value)):
            child = fields[name]
            if child is not None and not isinstance(child, _SCALARS):
                _attach(child, document, path + (key,), kept)
    elif isinstance(value, (list, tuple)):
        indices = (kept or {}).get(path, range(len(value)))
        for i, item in zip(indices, value):
            _attach(item, document, path + (i,), kept)
    elif isinstance(value, dict):
        for key, item in value.items():
            _attach(item, document, path + (key,), kept)


_SCALARS = (str, int, float, bool, date, timedelta)


@functools.cache
def _keys(model: type[Located]) -> tuple[tuple[str, str], ...]:
    """Each field's name and the key it is written under."""
    return tuple((name, info.alias or name) for name, info in model.model_fields.items())


def _document_path(data: Any, loc: tuple) -> tuple:
    """Pydantic's error location without the union tags it inserts."""
    path: list = []
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
            path.append(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
            path.append(part)
    return tuple(path)


def _diagnostic(model: type[Located], document: Document, e: dict) -> Diagnostic:
    loc = tuple(e["loc"])
    kind = e["type"]
    path = _document_path(document.data, loc)
    if kind == "extra_forbidden":
        key = loc[-1]
        known = _known_keys(model, document.data, path[:-1])
        return error(document.key_span(path), f"unknown key '{key}'{did_you_mean(str(key), known)}")
    if kind == "missing":
        return error(document.key_span(path), f"missing required key '{loc[-1]}'")
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", e["ctx"].get("expected", ""))
        value = e.get("input")
        hint = did_you_mean(str(value), expected) if isinstance(value, str) else ""
        return error(document.span(path), f"'{value}' is not one of {', '.join(expected)}{hint}")
    message = e["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    message = message[0].lower() + message[1:] if message else "invalid value"
    where = ".".join(str(p) for p in path)
    if kind not in ("value_error",) and where and path == loc:
        message = f"{where}: {message}"
    return error(document.span(path), message)


def _known_keys(model: type[Located], data: Any, path: tuple) -> list[str]:
    """The keys allowed at ``path``, for "did you mean"."""
    current: type[Located] | None = model
    skip_key = False
    for part in path:
        data = data[part] if isinstance(data, (dict, list)) else None
        if isinstance(part, int) or skip_key:
            skip_key = False
            if current is Step:
                current = {"wait": Wait, "branch": Branch, "split": Split}.get(_step_tag(data), Step)
            continue
        info = current.model_fields.get(part) if current else None
        if info is None:
            return []
        skip_key = get_origin(info.annotation) is dict
        current = _model_of(info.annotation)
        if current is Until and _wait_tag(data) == "for":
            current = WaitFor
    if current is None:
        return []
    return [info.alias or name for name, info in current.model_fields.items()]


def _model_of(annotation: Any) -> type[Located] | None:
    if isinstance(annotation, type) and issubclass(annotation, Located):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "text"
    return type(value).__name__
