"""Can each lake be listed with the credentials it names? (``lakesync validate --online``)

One listing per dataset (from its pattern's literal prefix, as a sync lists), stopped after
``FIRST_PAGE`` matching files: enough to prove the endpoint answers and accepts the credentials,
without listing a bucket of millions of objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice

from lakesync.discover.stores import LakeStore, LakeUnavailableError

FIRST_PAGE = 1000
"""Files looked at per dataset (one page of an object store)."""


@dataclass(frozen=True)
class LakeProbe:
    lake: str
    where: str
    """Where the lake is (never a secret)."""
    files: dict[str, int]
    """Files matching each dataset's pattern in the first page (``FIRST_PAGE`` means "or more")."""
    error: str | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"lake {self.lake}: FAILED: {self.error}"
        found = ", ".join(
            f"{dataset} {n if n < FIRST_PAGE else f'{FIRST_PAGE}+'} file(s)"
            for dataset, n in self.files.items()
        )
        return f"lake {self.lake} ({self.where}): reachable, listed; {found}"


def probe_lake(name: str, store: LakeStore, patterns: Mapping[str, str]) -> LakeProbe:
    """List each dataset's ``pattern`` (dataset -> pattern) once, up to its first page."""
    files: dict[str, int] = {}
    try:
        for dataset, pattern in patterns.items():
            files[dataset] = sum(1 for _ in islice(store.list(pattern), FIRST_PAGE))
    except LakeUnavailableError as exc:
        return LakeProbe(name, store.description, files, error=str(exc))
    return LakeProbe(name, store.description, files)
