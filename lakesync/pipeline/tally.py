"""What one file gave, counted as it is read: rows read, committed, quarantined, erased, rescued."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from lakesync.conform.conform import as_text
from lakesync.conform.target import RESCUED

EXAMPLES = 3
"""Rescued values shown per column (already treated when personal)."""


@dataclass
class Tally:
    rows_read: int = 0
    rows_committed: int = 0
    rows_quarantined: int = 0
    rows_erased: int = 0
    rows_rescued: int = 0
    rescued: dict[str, int] = field(default_factory=dict)
    """Rescued values per column (its name in the file)."""
    examples: dict[str, list[str]] = field(default_factory=dict)
    streamed: int = 0
    records: list[pl.DataFrame] = field(default_factory=list)

    def count_rescued(self, rows: pl.DataFrame) -> None:
        """Count the committed rows with values in ``_rescued_data``, per column, with examples."""
        texts = rows[RESCUED].drop_nulls() if RESCUED in rows.columns else None
        if texts is None or texts.is_empty():
            return
        self.rows_rescued += texts.len()
        decoded = texts.str.json_decode(infer_schema_length=None)
        for name in decoded.struct.fields:
            values = as_text(decoded.struct.field(name)).drop_nulls()
            self.rescued[name] = self.rescued.get(name, 0) + values.len()
            seen = self.examples.setdefault(name, [])
            seen.extend(values.head(EXAMPLES - len(seen)).to_list())
