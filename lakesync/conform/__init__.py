"""Stage 3: map source columns to canonical ones, convert types losslessly, classify drift."""

from lakesync.conform.conform import (
    ConformedChunk,
    ConformRules,
    as_text,
    conform_chunk,
    empty_failures,
    rename,
)
from lakesync.conform.convert import TextFormats, convert
from lakesync.conform.drift import ColumnDrift, DriftReport, classify, is_safe_widening
from lakesync.conform.target import RESCUED, TargetColumn, TargetSchema, storable, target_schema

__all__ = [
    "RESCUED",
    "ColumnDrift",
    "ConformRules",
    "ConformedChunk",
    "DriftReport",
    "TargetColumn",
    "TargetSchema",
    "TextFormats",
    "as_text",
    "classify",
    "conform_chunk",
    "convert",
    "empty_failures",
    "is_safe_widening",
    "rename",
    "storable",
    "target_schema",
]
