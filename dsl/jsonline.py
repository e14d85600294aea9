"""Where things are on one line of JSON: the offsets json.loads does not report, so that errors
in JSONL files (partner sources, events) can point at the offending key or value."""

from __future__ import annotations

import json
from json.decoder import scanstring

JSON_SPACE = " \t\n\r"
_DECODER = json.JSONDecoder()


def members(line: str, start: int = 0) -> dict[str, tuple[int, int, int]]:
    """For the JSON object at offset ``start`` of ``line``: each key's (key start, value start,
    value end) offsets, the last one winning for a repeated key as in ``json.loads``. Walks the
    object with json's own scanners, so escapes, nesting and spacing are handled exactly; stops
    quietly where the text stops being JSON."""
    out: dict[str, tuple[int, int, int]] = {}
    try:
        i = skip_space(line, start)
        if not line.startswith("{", i):
            return out
        i = skip_space(line, i + 1)
        while line.startswith('"', i):
            key_start = i
            key, i = scanstring(line, i + 1)
            i = skip_space(line, i)
            if not line.startswith(":", i):
                break
            begin = skip_space(line, i + 1)
            _, i = _DECODER.raw_decode(line, begin)
            out[key] = (key_start, begin, i)
            i = skip_space(line, i)
            if not line.startswith(",", i):
                break
            i = skip_space(line, i + 1)
    except (ValueError, RecursionError):
        pass
    return out


def skip_space(line: str, i: int) -> int:
    while i < len(line) and line[i] in JSON_SPACE:
        i += 1
    return i
