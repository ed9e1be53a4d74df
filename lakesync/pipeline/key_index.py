"""The values of a unique column a round already holds, and searching sorted values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class Seen:
    """One column's values this round (each once: duplicates never join), and their range.

    Batches are kept as they came; the first lookup sorts them into a frame searched by binary
    search, and later batches wait in a tail until they are a quarter of its size: keys that only
    grow are never sorted, and a lookup never has to hash every value seen so far."""

    sorted: pl.DataFrame | None = None
    """value, held_row, file, sorted by value."""
    tail: list[tuple[pa.Array, pa.Array, str]] = field(default_factory=list)
    tail_rows: int = 0
    low: Any = None
    high: Any = None

    def overlaps(self, low: Any, high: Any) -> bool:
        return self.low is not None and low <= self.high and high >= self.low

    def add(self, values: pa.Array, rows: pa.Array, file: str, bounds: tuple[Any, Any]) -> None:
        self.tail.append((values, rows, file))
        self.tail_rows += len(values)
        self.low = bounds[0] if self.low is None or bounds[0] < self.low else self.low
        self.high = bounds[1] if self.high is None or bounds[1] > self.high else self.high

    def _frames(self) -> list[pl.DataFrame]:
        return [
            pl.DataFrame({"value": pl.Series(v), "held_row": pl.Series(r)}).with_columns(file=pl.lit(f))
            for v, r, f in self.tail
        ]

    def holders(self, candidates: pl.DataFrame) -> pl.DataFrame:
        """row, value, held_row, file of the candidates (row, value) this round already holds."""
        if self.tail_rows > max(50_000, (self.sorted.height if self.sorted is not None else 0) // 4):
            merged = [*([self.sorted] if self.sorted is not None else []), *self._frames()]
            self.sorted = pl.concat(merged, how="vertical_relaxed").drop_nulls("value").sort("value")
            self.tail, self.tail_rows = [], 0
        found = []
        if self.sorted is not None and self.sorted.height:
            keys = self.sorted["value"]
            at = keys.search_sorted(candidates["value"].cast(keys.dtype)).clip(0, keys.len() - 1)
            near = self.sorted[at]
            same = (near["value"] == candidates["value"]).fill_null(False)
            found.append(pl.concat([candidates.select("row"), near], how="horizontal").filter(same))
        if self.tail:
            recent = pl.concat(self._frames(), how="vertical_relaxed")
            found.append(candidates.join(recent, on="value", how="inner"))
        if not found:
            return pl.DataFrame(
                schema={
                    "row": pl.Int64,
                    "value": candidates["value"].dtype,
                    "held_row": pl.Int64,
                    "file": pl.String,
                }
            )
        hits = pl.concat(
            [f.select("row", "value", "held_row", "file") for f in found], how="vertical_relaxed"
        )
        return hits.unique("row", keep="first", maintain_order=True)


def bounds_of(values: pa.Array) -> tuple[Any, Any] | None:
    found = pc.min_max(values)
    low, high = found["min"].as_py(), found["max"].as_py()
    return None if low is None else (low, high)


def in_sorted(keys: pl.Series, values: pl.Series) -> pl.Series:
    """Which ``values`` are among the sorted ``keys`` (binary search: no hash table to build)."""
    if keys.is_empty():
        return pl.Series([False] * values.len())
    found = keys.search_sorted(values.cast(keys.dtype)).clip(0, keys.len() - 1)
    return (keys.gather(found) == values).fill_null(False)
