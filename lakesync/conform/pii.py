"""Personal data, treated before anything is written.

A contract column marked ``pii: hash | mask | drop`` is validated on its real values (so a
regex or a range still means something), then treated before any byte leaves the process:

- ``hash``: HMAC-SHA256 of the value's text under the lakehouse's secret key, as 64 hex
  characters. The key is the same for every lake, so a hashed key still joins across lakes
  and tables; without the key the hash cannot be recomputed from a guessed value.
- ``mask``: keeps ``keep_prefix`` and ``keep_suffix`` characters around ``***`` (a value too
  short to keep anything is ``***``). Null stays null.
- ``drop``: the column never reaches the table (the contract still checks it).

The same treatment applies to the rows committed, to quarantine records (raw values under
their source names, and failure messages quoting a value), and to values rescued into
``_rescued_data``. What remains is what the audit trail, Dagster metadata and logs can see.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

from lakesync.config.contracts import PiiRule, ResolvedContract
from lakesync.conform.conform import as_text

MASK = "***"
_BLOCK = 64
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
"""SHA-256's block size, for HMAC."""
MIN_KEY_CHARS = 16
MARK = "lakesync.pii"
"""Delta column metadata saying how a stored column's values were treated."""


class PiiError(ValueError):
    """Personal data cannot be written as configured (no key, or a treatment that changed)."""


def mark(rule: PiiRule | None) -> str | None:
    """The column metadata recording a treatment (mask settings included)."""
    if rule is None:
        return None
    if rule.treatment == "mask":
        return f"mask:{rule.keep_prefix}:{rule.keep_suffix}"
    return rule.treatment


def hash_text(key: bytes, text: str) -> str:
    """The keyed SHA-256 (HMAC) of one value's text, as hex."""
    return hmac.digest(key, text.encode(), "sha256").hex()


def hasher(key: bytes) -> Callable[[str], str]:
    """:func:`hash_text` for many values: HMAC from SHA-256 states keyed once (RFC 2104),
    ~2.5x faster per value than ``hmac.digest``."""
    block = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def digest(text: str) -> str:
        first = inner.copy()
        first.update(text.encode())
        second = outer.copy()
        second.update(first.digest())
        return second.hexdigest()

    return digest


def redact(message: str, swaps: Iterable[tuple[str, str]]) -> str:
    """``message`` with each quoted original value replaced by its treated text; longest first,
    so a value inside another is not replaced before the one holding it."""
    for original, treated in sorted(swaps, key=lambda pair: -len(pair[0])):
        message = message.replace(original, treated)
    return message


def mask_expr(values: pl.Expr, rule: PiiRule) -> pl.Expr:
    keep = rule.keep_prefix + rule.keep_suffix
    kept = values.str.head(rule.keep_prefix) + pl.lit(MASK) + values.str.tail(rule.keep_suffix)
    masked = pl.when(values.str.len_chars() > keep).then(kept).otherwise(pl.lit(MASK))
    return pl.when(values.is_null()).then(pl.lit(None, dtype=pl.String)).otherwise(masked)


@dataclass(frozen=True)
class PiiPolicy:
    """A table's personal-data columns and the key their hashes use."""

    rules: Mapping[str, PiiRule]
    """Canonical column -> its treatment."""
    key: bytes | None = field(default=None, repr=False)

    @classmethod
    def of(
        cls, contract: ResolvedContract, key: str | None, *, variable: str = "LAKESYNC_PII_KEY"
    ) -> PiiPolicy:
        """The policy of a contract; refuses (naming the columns and the key's ``variable``) when
        hashing has no usable key."""
        rules = contract.pii
        hashed = sorted(contract.hashed)
        if hashed and (key is None or len(key) < MIN_KEY_CHARS):
            problem = "is not set" if key is None else f"is shorter than {MIN_KEY_CHARS} characters"
            msg = (
                f"table {contract.table!r}: column(s) {', '.join(hashed)} are `pii: hash`, which needs "
                f"the lakehouse's secret key (lakehouse.pii_key: ${variable}), and it "
                f"{problem}: set it to a long random value, the same wherever this lakehouse is "
                "written, and keep it secret"
            )
            raise PiiError(msg)
        return cls(rules, key.encode() if key is not None and hashed else None)

    def __bool__(self) -> bool:
        return bool(self.rules)

    @property
    def dropped(self) -> frozenset[str]:
        return frozenset(n for n, r in self.rules.items() if r.treatment == "drop")

    def stored_schema(self, schema: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
        """The schema rows are stored with: dropped columns gone, hashed and masked ones text."""
        return {
            name: (pl.String() if name in self.rules else dtype)
            for name, dtype in schema.items()
            if name not in self.dropped
        }

    def marked(self, schema: pa.Schema) -> pa.Schema:
        """``schema`` with each personal-data field marked by its treatment (kept by Delta)."""
        fields = [
            column.with_metadata({MARK: mark(self.rules[column.name])})
            if column.name in self.rules
            else column
            for column in schema
        ]
        return pa.schema(fields, metadata=schema.metadata)

    def differences(
        self, table: str, fields: Sequence[tuple[str, Mapping[str, str]]]
    ) -> tuple[dict[str, PiiRule], list[str]]:
        """Stored columns whose treatment is not the contract's.

        ``fields`` are a Delta table's (name, metadata). Returns the columns stored untreated
        that the contract now treats (``lakesync pii apply`` can treat them in place), and the
        problems nothing can fix (a treated column cannot get its original values back).
        """
        fixable: dict[str, PiiRule] = {}
        problems: list[str] = []
        for name, metadata in fields:
            stored = (metadata or {}).get(MARK)
            rule = self.rules.get(name)
            wanted = mark(rule)
            if stored == wanted:
                continue
            if rule is not None and (stored is None or rule.treatment == "drop"):
                fixable[name] = rule
                continue
            problems.append(
                f"table {table!r}: column {name!r} holds values stored as `{stored}` (pii), but the "
                f"contract now says {'nothing' if wanted is None else repr(wanted)}; the original values "
                "are not kept, so they cannot be stored another way: put the column's `pii` setting back"
            )
        return fixable, problems

    def check_table(self, table: str, fields: Sequence[tuple[str, Mapping[str, str]]]) -> None:
        """Refuse to write when a stored column's treatment is not the contract's: new rows
        treated differently from the rows there would leave values in the clear, or mix
        hashes with values."""
        fixable, problems = self.differences(table, fields)
        if problems:
            raise PiiError(problems[0])
        if fixable:
            name, rule = next(iter(fixable.items()))
            msg = (
                f"table {table!r}: the contract makes column {name!r} `pii: {rule.treatment}`, but the "
                "table already holds its values untreated: run `lakesync pii apply --table "
                f"{table}` to treat the stored rows (add --purge to remove the old versions), or take "
                "`pii` off the column again"
            )
            raise PiiError(msg)

    def treat_text(self, name: str, values: pl.Series, *, keep_treated: bool = False) -> pl.Series | None:
        """Text values of canonical column ``name`` as they may be stored (``None``: dropped).

        ``keep_treated``: leave values that already look treated as they are (see
        :meth:`treat_value`), for stored rows whose treatment is not recorded.
        """
        rule = self.rules.get(name)
        if rule is None:
            return values
        if rule.treatment == "drop":
            return None
        text = as_text(values)
        if keep_treated:
            looks = (
                text.str.contains(MASK, literal=True)
                if rule.treatment == "mask"
                else text.str.contains(_HEX64.pattern)
            )
            treated = self.treat_text(name, text.filter(~looks.fill_null(False)))
            assert treated is not None
            return text.scatter((~looks.fill_null(False)).arg_true(), treated).alias(values.name)
        if rule.treatment == "mask":
            return pl.select(mask_expr(pl.lit(text), rule)).to_series().alias(values.name)
        assert self.key is not None
        digest = hasher(self.key)
        if text.n_unique() * 2 > text.len():  # mostly distinct values: hash them in place
            return pl.Series(
                values.name, [None if v is None else digest(v) for v in text.to_list()], dtype=pl.String
            )
        unique = text.drop_nulls().unique()
        hashed = pl.Series([digest(v) for v in unique.to_list()], dtype=pl.String)
        return text.replace_strict(unique, hashed, default=None, return_dtype=pl.String).alias(values.name)

    def treat_value(self, name: str, text: str) -> str | None:
        """One text value of column ``name`` as it may be stored; values that already look
        treated (64 hex characters for ``hash``, ``***`` inside for ``mask``) are kept, so
        treating twice changes nothing (``None``: dropped)."""
        rule = self.rules[name]
        if rule.treatment == "drop":
            return None
        if rule.treatment == "hash":
            assert self.key is not None
            return text if _HEX64.fullmatch(text) else hasher(self.key)(text)
        if MASK in text:
            return text
        keep = rule.keep_prefix + rule.keep_suffix
        if len(text) <= keep:
            return MASK
        return (
            text[: rule.keep_prefix]
            + MASK
            + (text[len(text) - rule.keep_suffix :] if rule.keep_suffix else "")
        )

    def rows(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Conformed rows (canonical names) with hashed and masked values; dropped columns stay
        (the commit's column list leaves them out)."""
        treated = []
        for name, rule in self.rules.items():
            if rule.treatment != "drop" and name in frame.columns:
                values = self.treat_text(name, frame[name])
                assert values is not None
                treated.append(values)
        return frame.with_columns(treated) if treated else frame

    def raw(self, raw: pl.DataFrame, source_names: Mapping[str, str]) -> pl.DataFrame:
        """A raw chunk (source column names) with its personal values treated (for quarantine)."""
        treated: list[pl.Series] = []
        gone: list[str] = []
        for name in self.rules:
            source = source_names.get(name, name)
            if source not in raw.columns:
                continue
            values = self.treat_text(name, raw[source])
            if values is None:
                gone.append(source)
            else:
                treated.append(values.alias(source))
        return raw.with_columns(treated).drop(gone)

    def failures(self, failures: pl.DataFrame, originals: Sequence[tuple[str, pl.DataFrame]]) -> pl.DataFrame:
        """Failure messages with any quoted personal value replaced by its treated text.

        ``originals`` are (canonical column, frame of row and text) pairs: the values messages
        may quote (the raw text, the conformed value's text), one text per row in each frame.
        A message about the whole table (a model's frame-level check) may quote anything: its
        values are withheld.
        """
        if failures.is_empty():
            return failures
        withheld = pl.lit("(table): a frame-level check failed (values withheld: the table has pii columns)")
        failures = failures.with_columns(
            message=pl.when(pl.col("column") == "(table)").then(withheld).otherwise(pl.col("message"))
        )
        failing = failures["row"].unique().implode()
        swaps: dict[int, list[tuple[str, str]]] = {}
        for name, frame in originals:
            if name not in self.rules:
                continue
            quoted = frame.filter(
                pl.col("row").is_in(failing) & pl.col("text").is_not_null() & (pl.col("text") != "")
            )
            treated = self.treat_text(name, quoted["text"])
            replacements = (
                treated.fill_null(MASK) if treated is not None else pl.repeat(MASK, quoted.height, eager=True)
            )
            for row, text, new in zip(quoted["row"], quoted["text"], replacements, strict=True):
                swaps.setdefault(row, []).append((text, new))
        if not swaps:
            return failures
        messages = [
            redact(message, swaps.get(row, ()))
            for row, message in zip(failures["row"], failures["message"], strict=True)
        ]
        return failures.with_columns(message=pl.Series(messages, dtype=pl.String))
