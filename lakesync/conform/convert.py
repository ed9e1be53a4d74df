"""Convert a column to its contract type without ever changing a value silently.

polars casts truncate (``1.5`` -> ``1``), round (``"1.234"`` -> ``1.23`` as decimal(p,2)) and
drop precision (nanoseconds -> microseconds) without a word. Every conversion here is checked:
a value that does not survive intact is reported as *bad* (with the reason) and left null, and
the caller decides what to do with its row (quarantine or rescue). Nothing is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from lakesync.config.datatypes import logical_name

_TRUE = ("true", "1", "t", "yes", "y")
_FALSE = ("false", "0", "f", "no", "n")
_PLAIN_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)\s*$"
_SUB_MICROSECOND = r"\.\d{6}\d*[1-9]"
# ISO 8601 variants tried in order; the zone says how to read a format without %z.
_ISO_FORMATS: tuple[tuple[str, str | None], ...] = (
    ("%Y-%m-%dT%H:%M:%S%.f%z", None),
    ("%Y-%m-%d %H:%M:%S%.f%z", None),
    ("%Y-%m-%dT%H:%M:%S%.fZ", "UTC"),
    ("%Y-%m-%d %H:%M:%S%.fZ", "UTC"),
    ("%Y-%m-%dT%H:%M:%S%.f", None),
    ("%Y-%m-%d %H:%M:%S%.f", None),
    ("%Y-%m-%dT%H:%M", None),
    ("%Y-%m-%d %H:%M", None),
)


@dataclass(frozen=True)
class TextFormats:
    """How text is turned into dates and timestamps for one dataset."""

    timezone: str = "UTC"
    """Zone of timestamps written without an offset."""
    timestamp_format: str | None = None
    date_format: str | None = None


@dataclass(frozen=True)
class Converted:
    values: pl.Series
    bad: pl.Series
    """True where the source value could not be converted without loss."""
    reason: str
    """Why a bad value is bad (the same for every bad value of this conversion)."""


def _none_bad(series: pl.Series) -> pl.Series:
    return pl.repeat(False, series.len(), dtype=pl.Boolean, eager=True).alias(series.name)


def nulls(name: str, length: int, dtype: pl.DataType) -> pl.Series:
    """A column of ``length`` nulls (without building a Python list)."""
    return pl.repeat(None, length, dtype=dtype, eager=True).alias(name)


def _lost(source: pl.Series, converted: pl.Series) -> pl.Series:
    """Values that were present in the source and are null after conversion."""
    return (converted.is_null() & source.is_not_null()).fill_null(False)


def convert(series: pl.Series, target: pl.DataType, formats: TextFormats) -> Converted:
    """Convert ``series`` to ``target``; values that would change are null and flagged bad."""
    source = series.dtype
    name = logical_name(target)
    if source == target:
        return Converted(series, _none_bad(series), "")
    if source == pl.Null:
        return Converted(series.cast(target), _none_bad(series), "")
    if source == pl.String:
        return _from_text(series, target, formats, name)
    if target == pl.String:
        return _to_text(series, name)
    if isinstance(target, pl.Datetime):
        return _to_timestamp(series, target, formats)
    if target == pl.Date:
        return _to_date(series, formats)
    if source.is_nested() or target.is_nested():
        values = nulls(series.name, series.len(), target)
        return Converted(values, series.is_not_null(), f"a {source} value cannot become {name}")
    return _numeric(series, target, name)


def _numeric(series: pl.Series, target: pl.DataType, name: str) -> Converted:
    try:
        values = series.cast(target, strict=False)
        back = values.cast(series.dtype, strict=False)
    except pl.exceptions.InvalidOperationError:
        values = nulls(series.name, series.len(), target)
        return Converted(values, series.is_not_null(), f"a {series.dtype} value cannot become {name}")
    changed = (back != series).fill_null(True) & series.is_not_null()
    bad = _lost(series, values) | changed
    return Converted(values.set(bad, None) if bad.any() else values, bad, f"does not fit {name} without loss")


def _to_text(series: pl.Series, name: str) -> Converted:
    if series.dtype.is_nested():
        if isinstance(series.dtype, pl.Struct):
            values = series.struct.json_encode()
        else:
            values = pl.DataFrame({"v": series}).select(pl.struct("v").struct.json_encode()).to_series()
            values = values.str.slice(5, values.str.len_chars() - 6)
        return Converted(values.alias(series.name), _none_bad(series), "")
    values = series.cast(pl.String)
    if series.dtype.is_float():
        back = values.cast(series.dtype, strict=False)
        bad = ((back != series).fill_null(True) & series.is_not_null()) | _lost(series, values)
        return Converted(values, bad, f"does not fit {name} without loss")
    return Converted(values, _none_bad(series), "")


def _from_text(series: pl.Series, target: pl.DataType, formats: TextFormats, name: str) -> Converted:
    if target == pl.Boolean:
        lowered = series.str.to_lowercase()
        values = (
            pl.select(
                pl.when(lowered.is_in(_TRUE))
                .then(True)
                .when(lowered.is_in(_FALSE))
                .then(False)
                .otherwise(None)
            )
            .to_series()
            .alias(series.name)
        )
        return Converted(values, _lost(series, values), f"is not a valid {name} (true/false/1/0)")
    if isinstance(target, pl.Datetime):
        return _text_to_timestamp(series, target, formats)
    if target == pl.Date:
        # Without a format only ISO 8601 dates: polars would guess 11/02/2026 day-first.
        values = series.str.to_date(format=formats.date_format or "%Y-%m-%d", strict=False)
        hint = (
            f" (format {formats.date_format})"
            if formats.date_format
            else " (ISO 8601; set the dataset's options.date_format for other formats)"
        )
        return Converted(values, _lost(series, values), f"is not a valid date{hint}")
    values = series.cast(target, strict=False)
    bad = _lost(series, values)
    if isinstance(target, pl.Decimal):
        bad = bad | _decimal_digits_lost(series, values, target.scale or 0)
        values = values.set(bad, None) if bad.any() else values
    return Converted(values, bad, f"is not a valid {name}")


def _decimal_digits_lost(text: pl.Series, values: pl.Series, scale: int) -> pl.Series:
    """True where a decimal string has more significant fraction digits than ``scale``."""
    plain = text.str.contains(_PLAIN_NUMBER).fill_null(False)
    fraction = text.str.strip_chars().str.extract(r"\.(\d*)$").fill_null("").str.strip_chars_end("0")
    too_precise = plain & (fraction.str.len_chars() > scale)
    # Exponent forms (1.5e3): compare as floats.
    as_float = text.cast(pl.Float64, strict=False)
    exponent_changed = ~plain & text.is_not_null() & (values.cast(pl.Float64) != as_float).fill_null(False)
    return (too_precise | exponent_changed).fill_null(False)


def _text_to_timestamp(series: pl.Series, target: pl.Datetime, formats: TextFormats) -> Converted:
    hint = (
        f" (format {formats.timestamp_format})"
        if formats.timestamp_format
        else " (ISO 8601; set the dataset's options.timestamp_format for other formats)"
    )
    converted = _parse_timestamps(series, formats)
    bad = _lost(series, converted) | series.str.contains(_SUB_MICROSECOND).fill_null(False)
    values = converted.set(bad, None) if bad.any() else converted
    return Converted(values.cast(target), bad, f"is not a valid timestamp{hint} with microsecond precision")


def _parse_timestamps(series: pl.Series, formats: TextFormats) -> pl.Series:
    """Parse text timestamps to UTC instants.

    Without an explicit format only ISO 8601 is accepted: the variant of the first unparsed
    value (offset, ``Z`` or none; ``T`` or space; with or without fractions) is recognised and
    the whole column parsed with it (~30x faster than inferring per value); rows in another
    ISO variant get the next round. Anything else (``11/02/2026``) is never guessed: polars
    would read it day-first. Naive values are read in the dataset's time zone.
    """
    utc = pl.Datetime("us", "UTC")
    if formats.timestamp_format is not None:
        parsed = series.str.to_datetime(format=formats.timestamp_format, time_unit="us", strict=False)
        return _as_utc(parsed, formats.timezone)
    result = nulls(series.name, series.len(), utc)
    pending = series.is_not_null()
    untried = list(_ISO_FORMATS)
    while untried and pending.any():
        indices = pending.arg_true()
        subset = series.gather(indices)
        fmt = _iso_format_of(subset.head(1))
        if fmt is not None and fmt not in untried:
            # Its variant was parsed already and it is still pending: it does not exist in the
            # dataset's time zone (a DST gap). It stays null and is reported as bad.
            pending = pending.scatter(indices.head(1), False)
            continue
        # The first value's variant is parsed first (usually all of them); when that value is
        # not ISO at all, every remaining variant is tried once on what is left.
        for candidate in [fmt] if fmt is not None else list(untried):
            untried.remove(candidate)
            parsed = subset.str.to_datetime(format=candidate[0], time_unit="us", strict=False)
            if candidate[1] is not None:
                parsed = parsed.dt.replace_time_zone(candidate[1])
            found = _as_utc(parsed, formats.timezone)
            ok = found.is_not_null()
            if ok.any():
                result = result.scatter(indices.filter(ok), found.filter(ok))
                pending = pending.scatter(indices.filter(ok), False)
            if fmt is None:
                indices, subset = indices.filter(~ok), subset.filter(~ok)
    return result


def _iso_format_of(first: pl.Series) -> tuple[str, str | None] | None:
    """The ISO 8601 variant (format, zone of a literal Z) of a one-value series, if it is one."""
    for candidate in _ISO_FORMATS:
        if first.str.to_datetime(format=candidate[0], time_unit="us", strict=False).is_not_null().all():
            return candidate
    return None


def _as_utc(values: pl.Series, timezone: str) -> pl.Series:
    """Timestamps as UTC instants; naive ones are read in ``timezone`` (DST gaps become null)."""
    dtype = values.dtype
    assert isinstance(dtype, pl.Datetime)
    if dtype.time_zone is None:
        values = values.dt.replace_time_zone(timezone, ambiguous="null", non_existent="null")
    return values.dt.convert_time_zone("UTC")


def _to_timestamp(series: pl.Series, target: pl.Datetime, formats: TextFormats) -> Converted:
    source = series.dtype
    if source == pl.Date:
        values = _as_utc(series.cast(pl.Datetime("us")), formats.timezone)
        return Converted(values.cast(target), _lost(series, values), "is not a valid timestamp")
    if not isinstance(source, pl.Datetime):
        return _numeric(series, target, "datetime")
    bad = _none_bad(series)
    if source.time_unit == "ns":
        bad = ((series.dt.epoch("ns") % 1000) != 0).fill_null(False)
    utc = _as_utc(series, formats.timezone)
    values = utc.cast(pl.Datetime("us", "UTC"), strict=False)
    bad = bad | _lost(series, values)
    values = values.set(bad, None) if bad.any() else values
    return Converted(values, bad, "does not fit a microsecond UTC timestamp without loss")


def _to_date(series: pl.Series, formats: TextFormats) -> Converted:
    source = series.dtype
    if not isinstance(source, pl.Datetime):
        return _numeric(series, pl.Date(), "date")
    local = series if source.time_zone is None else series.dt.convert_time_zone(formats.timezone)
    values = local.dt.date()
    bad = (local.dt.truncate("1d") != local).fill_null(False)
    values = values.set(bad, None) if bad.any() else values
    return Converted(values, bad, "has a time of day, so it is not a date")
