"""Which version of a key a merge keeps, and a record of every version it does not.

Rows arrive in landing order (oldest file first). For each key:

- with ``latest_by: <column>`` on the table, the row with the greatest value wins, in the
  batch and against the row already in the table (a late file holding an older version does
  not overwrite a newer one); a null value is the oldest; ties go to the later file;
- otherwise the most recently landed file wins.

Every losing version is kept, with the winner it lost to, in ``_superseded/<table>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

SUPERSEDED_BY = "_lakesync_superseded_by"
REASON = "_lakesync_superseded_reason"
_SEQ = "__seq"


@dataclass(frozen=True)
class Winners:
    rows: pl.DataFrame
    """One row per key: what the merge writes."""
    losers: pl.DataFrame
    """Every other version, with ``_lakesync_superseded_by`` and the reason."""


def _source(file: str, row: str) -> pl.Expr:
    return pl.col(file) + pl.lit("#") + pl.col(row).cast(pl.String)


def pick_winners(
    frame: pl.DataFrame,
    *,
    keys: Sequence[str],
    latest_by: str | None,
    existing: pl.DataFrame | None = None,
    source: tuple[str, str] = ("_lakesync_file", "_lakesync_row"),
) -> Winners:
    """Split rows (in landing order) into one winner per key and the versions it supersedes.

    Args:
        frame: rows of the batch, oldest file first, with provenance columns.
        keys: the merge keys.
        latest_by: the column deciding which version is the latest, if the table names one.
        existing: the table's current rows for these keys (keys, ``latest_by``, provenance).
        source: the provenance columns naming a row's file and record number.
    """
    keyed = frame.with_row_index(_SEQ)
    order = [pl.col(latest_by).is_not_null(), latest_by, _SEQ] if latest_by else [_SEQ]
    ranked = keyed.sort(order)
    winners = ranked.unique(subset=list(keys), keep="last", maintain_order=True).sort(_SEQ)
    rule = f"a later version by {latest_by}" if latest_by else "a version in a later file"
    beaten = keyed.join(winners.select(_SEQ), on=_SEQ, how="anti")
    losers = beaten.join(
        winners.select(*keys, _source(*source).alias(SUPERSEDED_BY)), on=list(keys), how="left"
    ).with_columns(pl.lit(f"superseded in the same batch by {rule}").alias(REASON))
    if latest_by and existing is not None and existing.height:
        current = existing.select(
            *keys, pl.col(latest_by).alias("__current"), _source(*source).alias("__current_source")
        )
        compared = winners.join(current, on=list(keys), how="left")
        older = compared.filter(
            pl.col("__current").is_not_null()
            & (pl.col(latest_by).is_null() | (pl.col(latest_by) < pl.col("__current")))
        )
        if older.height:
            losers = pl.concat(
                [
                    losers,
                    older.with_columns(
                        pl.col("__current_source").alias(SUPERSEDED_BY),
                        pl.lit(f"the table already holds a later version by {latest_by}").alias(REASON),
                    ).select(losers.columns),
                ],
                how="vertical_relaxed",
            )
            winners = winners.join(older.select(_SEQ), on=_SEQ, how="anti")
    return Winners(rows=winners.drop(_SEQ), losers=losers.sort(_SEQ).drop(_SEQ))
