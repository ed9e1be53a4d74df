"""Glob patterns of lake datasets: matching and the literal prefix a listing can start from."""

from __future__ import annotations

import re
from functools import lru_cache

_WILDCARDS = set("*?[")


def literal_prefix(pattern: str) -> str:
    """The leading folders of ``pattern`` that contain no wildcard, with a trailing ``/``.

    ``orders/2026/**/*.parquet`` -> ``orders/2026/``; listing starts there, so a lake with
    many other folders is not walked.
    """
    parts = pattern.split("/")
    literal: list[str] = []
    for part in parts[:-1]:
        if _WILDCARDS & set(part):
            break
        literal.append(part)
    return "".join(f"{p}/" for p in literal)


def _segment(segment: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = segment.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = segment[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A regex matching relative posix paths against a glob where ``**`` spans folders."""
    parts = pattern.split("/")
    regex = ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
        else:
            regex += _segment(part) + ("" if last else "/")
    return re.compile(f"^{regex}$")


def matches(pattern: str, path: str) -> bool:
    return compile_pattern(pattern).match(path) is not None
