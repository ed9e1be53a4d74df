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
    """One row per key: what the merge writes (the input's columns, in no particular order)."""
    losers: pl.DataFrame
    """Every other version (the input's columns), with ``WINNER``, the row index of the batch's row
    it lost to, or ``_lakesync_superseded_by`` naming the table's row that beat it; and the
    reason."""


WINNER = "__lakesync_winner"


def source(file: str, row: str) -> pl.Expr:
    """How a superseded row names its winner: ``<lake>/<path>#<record>``."""
    return pl.col(file) + pl.lit("#") + pl.col(row).cast(pl.String)


def pick_winners(
    frame: pl.DataFrame,
    *,
    keys: Sequence[str],
    latest_by: str | None,
    existing: pl.DataFrame | None = None,
    existing_source: tuple[str, str] = ("_lakesync_file", "_lakesync_row"),
) -> Winners:
    """Split rows (in landing order) into one winner per key and the versions it supersedes.

    Only the keys (and ``latest_by``) are needed: a round's rows can stay on disk.

    Args:
        frame: the batch's rows, oldest file first (at least its keys and ``latest_by``).
        keys: the merge keys.
        latest_by: the column deciding which version is the latest, if the table names one.
        existing: the table's current rows for these keys (keys, ``latest_by``, provenance).
        existing_source: the provenance columns of ``existing`` naming a row's file and record.
    """
    keyed = frame.with_row_index(_SEQ)
    # Only keys that occur more than once need ranking (usually few: the rest win outright).
    singles, repeated = _split_repeated(keyed, keys)
    order = [pl.col(latest_by).is_not_null(), latest_by, _SEQ] if latest_by else [_SEQ]
    ranked = repeated.sort(order).unique(subset=list(keys), keep="last", maintain_order=True)
    winners = pl.concat([singles, ranked]) if repeated.height else keyed
    rule = f"a later version by {latest_by}" if latest_by else "a version in a later file"
    beaten = repeated.join(ranked.select(_SEQ), on=_SEQ, how="anti")
    losers = beaten.join(ranked.select(*keys, pl.col(_SEQ).alias(WINNER)), on=list(keys), how="left")
    losers = losers.with_columns(
        pl.lit(None, dtype=pl.String).alias(SUPERSEDED_BY),
        pl.lit(f"superseded in the same batch by {rule}").alias(REASON),
    )
    if latest_by and existing is not None and existing.height:
        current = existing.select(
            *keys, pl.col(latest_by).alias("__current"), source(*existing_source).alias("__current_source")
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
                        pl.lit(None, dtype=losers.schema[WINNER]).alias(WINNER),
                        pl.col("__current_source").alias(SUPERSEDED_BY),
                        pl.lit(f"the table already holds a later version by {latest_by}").alias(REASON),
                    ).select(losers.columns),
                ],
                how="vertical_relaxed",
            )
            winners = winners.join(older.select(_SEQ), on=_SEQ, how="anti")
    return Winners(rows=winners.drop(_SEQ), losers=losers.sort(_SEQ).drop(_SEQ))


def _split_repeated(keyed: pl.DataFrame, keys: Sequence[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows whose key occurs once, and the others (the only ones that need ranking).

    By a sort and a look at each row's neighbours: measured several times faster than polars'
    hash-based ``is_duplicated``/``group_by`` on 10M shuffled keys; ``n_unique`` first, as most
    batches hold each key once."""
    if keyed.select(keys).n_unique() == keyed.height:
        return keyed, keyed.clear()
    ordered = keyed.sort(list(keys), maintain_order=True)
    same_as = [
        pl.all_horizontal([pl.col(k).eq_missing(pl.col(k).shift(step)) for k in keys]).fill_null(False)
        for step in (1, -1)
    ]
    twice = same_as[0] | same_as[1]
    return ordered.filter(~twice), ordered.filter(twice)


def name_winners(losers: pl.DataFrame, rows: pl.DataFrame, sources: tuple[str, str]) -> pl.DataFrame:
    """``losers`` with ``_lakesync_superseded_by`` naming the batch's row each lost to (``rows``
    holds those winners by row index in ``WINNER``, with their provenance ``sources``)."""
    named = rows.select(WINNER, source(*sources).alias("__winner_source"))
    return (
        losers.join(named, on=WINNER, how="left", maintain_order="left")
        .with_columns(pl.coalesce(SUPERSEDED_BY, "__winner_source").alias(SUPERSEDED_BY))
        .drop(WINNER, "__winner_source")
    )


def key_bounds(rows: pl.DataFrame, keys: Sequence[str]) -> list[str]:
    """SQL conditions on the target (alias ``t``) true for every row a merge of ``rows`` can match:
    each integer or text key between the rows' least and greatest value. Added to the merge
    predicate, they let Delta skip the files outside that range by their statistics."""
    bounds = []
    for key in keys:
        column = rows[key]
        if column.null_count() == column.len():
            continue
        low, high = column.min(), column.max()
        if column.dtype.is_integer():
            bounds.append(f"t.`{key}` >= {int(str(low))} AND t.`{key}` <= {int(str(high))}")
        elif column.dtype == pl.String:
            bounds.append(f"t.`{key}` >= {_quoted(str(low))} AND t.`{key}` <= {_quoted(str(high))}")
    return bounds


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
