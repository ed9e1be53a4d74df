"""A table's Great Expectations suite file, checked with the config (without importing GX)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_suite(path: str) -> dict[str, Any]:
    """The suite's JSON (GX 1.x: ``{"name": ..., "expectations": [{"type": ..., "kwargs": ...}]}``)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        msg = "is not a JSON object"
        raise ValueError(msg)  # noqa: TRY004 - reported as a config problem
    return data


def suite_problems(path: str) -> list[str]:
    """What is wrong with a suite file, in words (empty when it looks like a GX 1.x suite)."""
    if not Path(path).is_file():
        return [f"{path} does not exist (a Great Expectations 1.x suite as JSON)"]
    try:
        data = read_suite(path)
    except (OSError, ValueError) as exc:
        return [f"{path}: not a JSON suite ({exc})"]
    expectations = data.get("expectations")
    if not isinstance(expectations, list) or not expectations:
        return [f"{path}: has no 'expectations' list"]
    problems = []
    for index, item in enumerate(expectations):
        kind = item.get("type") if isinstance(item, dict) else None
        if not isinstance(kind, str) or not kind.startswith("expect_"):
            problems.append(
                f"{path}: expectation {index} has no 'type' such as expect_column_values_to_be_between "
                "(GX 1.x format; 0.x suites used 'expectation_type')"
            )
    return problems
