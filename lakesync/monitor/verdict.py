"""What every check returns: a :class:`Verdict` in one vocabulary (no Dagster here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["WARN", "ERROR"]
Outcome = Literal["passed", "passed with warnings", "failed"]
"""The one vocabulary of every check, in the CLI, the UI and the logs:

- ``passed``: nothing to look at;
- ``passed with warnings``: within tolerance (rows quarantined, values rescued, drift handled):
  downstream assets are updated, someone should look;
- ``failed``: beyond tolerance. A failed contract or conservation check blocks downstream assets
  (severity ERROR); the advisory checks (volume, freshness, expectations) block nothing.
"""


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    detail: str
    """What was found, without the outcome (``description`` has both)."""
    facts: dict[str, Any] = field(default_factory=dict)
    """Plain values (numbers, text, datetimes) shown as the check's metadata."""
    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = field(default_factory=dict)
    """Named tables (header, rows) shown as markdown."""
    severity: Severity = "WARN"
    """How bad a failure is: ERROR for a lakesync problem or a blocking check, WARN otherwise."""

    @property
    def passed(self) -> bool:
        """Passed, with or without warnings: what Dagster's automation treats as passed."""
        return self.outcome != "failed"

    @property
    def description(self) -> str:
        return f"{self.outcome}: {self.detail}"


def human_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def add_duration(facts: dict[str, Any], name: str, seconds: float) -> None:
    """A duration as people read it (``25.3 d``), with the raw seconds beside it."""
    facts[name] = human_duration(seconds)
    facts[f"{name}_seconds"] = round(seconds, 1)
