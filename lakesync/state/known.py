"""What a listing is looked up in: the hashes of every file a dataset's ledger has seen.

A path is known by two independently seeded 64-bit polars hashes (``h1``, ``h2``: 128 bits) and
its content by a third (``tag``, of its version tag); the hashes are held sorted by ``h1`` and a
listing's are found by binary search, a chunk at a time (:func:`lakesync.discover.discover`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

KEY = ["h1", "h2"]
"""A path's identity: two independently seeded 64-bit hashes (128 bits)."""


def lookup(stored: pl.DataFrame, frame: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """Which of ``frame``'s files ``stored`` (sorted by ``h1``) holds, and its tag for each."""
    seen, found = find(stored, frame)
    return seen, found["tag"]


def find(stored: pl.DataFrame, frame: pl.DataFrame) -> tuple[pl.Series, pl.DataFrame]:
    """Which of ``frame``'s files ``stored`` (sorted by ``h1``) holds, and its row for each
    (a row of ``stored``, meaningless where not held).

    A binary search finds each path's first ``h1``; where two stored paths share an ``h1`` (a
    64-bit collision) and the first is not this path, the few such rows are joined instead. The
    frame's hashes are searched in their sorted order (neighbouring searches then walk the same
    memory: 4x faster at 5M stored) and the positions put back in the frame's order."""
    if stored.height == 0:
        nulls = pl.DataFrame({c: pl.Series([None] * frame.height, dtype=t) for c, t in stored.schema.items()})
        return pl.Series([False] * frame.height), nulls
    order = frame["h1"].arg_sort()
    ordered = stored["h1"].search_sorted(frame["h1"].gather(order), side="left")
    at = ordered.clone().scatter(order, ordered).clip(0, stored.height - 1)
    found = stored[at]
    same_h1 = found["h1"] == frame["h1"]
    seen = same_h1 & (found["h2"] == frame["h2"])
    collided = same_h1 & ~seen
    if collided.any():
        rows = frame.select(KEY).with_row_index("i").filter(collided)
        joined = rows.join(stored, on=KEY, how="inner")
        found = found.with_columns(found[c].scatter(joined["i"], joined[c]) for c in stored.columns)
        seen = seen | pl.Series([False] * frame.height).scatter(joined["i"], True)
    return seen, found


def sorted_by_h1(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by ``h1``: as it is when it was read in that order (the compacted state
    is written so: no copy, ~5 ms at 5M rows to check), else sorted."""
    if frame.height and frame["h1"].is_sorted():
        return frame.with_columns(pl.col("h1").set_sorted())
    return frame.sort("h1")


EMPTY_TAIL = pl.DataFrame(schema={"h1": pl.Int64, "h2": pl.Int64, "tag": pl.Int64, "seen": pl.Boolean})


@dataclass(frozen=True)
class KnownFiles:
    """The hashes of every file a dataset's ledger has seen, to look a listing up in: the
    compacted state's rows (``base``: ``h1``, ``h2``, ``tag``, sorted by ``h1``) and, above them,
    each path the events since the compaction touched (``tail``: its latest row, with ``seen``
    false where the latest is an announcement). Two frames, so that the millions of the
    compacted state are used as read, never copied to fold a few thousand events in."""

    base: pl.DataFrame = field(repr=False)
    tail: pl.DataFrame = field(default_factory=lambda: EMPTY_TAIL, repr=False)

    @classmethod
    def of(cls, frame: pl.DataFrame) -> KnownFiles:
        """Hashes (``h1``, ``h2``, ``tag``) of files seen, in any order."""
        return cls(sorted_by_h1(frame.select(*KEY, "tag")))

    @property
    def height(self) -> int:
        """Files known (a path in both frames counts once; announcements do not count)."""
        if self.tail.is_empty():
            return self.base.height
        shadowed, _ = find(self.base, self.tail)
        return self.base.height - int(shadowed.sum()) + int(self.tail["seen"].sum())

    def frame(self) -> pl.DataFrame:
        """Every file seen, ``h1``, ``h2``, ``tag``, once each (a copy: for small uses)."""
        if self.tail.is_empty():
            return self.base
        above = self.tail.filter("seen").drop("seen")
        return pl.concat([self.base.join(self.tail.select(KEY), on=KEY, how="anti"), above])

    def lookup(self, frame: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
        """Which of ``frame``'s files (``h1``, ``h2``) the ledger has seen, and the tag it saw."""
        seen, tags = lookup(self.base, frame)
        if self.tail.is_empty():
            return seen, tags
        touched, latest = find(self.tail, frame)
        return latest["seen"].zip_with(touched, seen), latest["tag"].zip_with(touched, tags)


__all__ = ["EMPTY_TAIL", "KEY", "KnownFiles", "find", "lookup", "sorted_by_h1"]
