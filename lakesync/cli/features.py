"""`lakesync features training-set` (values as of each label's time) and `lakesync features get`
(the latest values of entities, from the online store)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import polars as pl

from lakesync.config import LakesyncConfig
from lakesync.defs.providers import open_lakehouse
from lakesync.features.build import FeatureError
from lakesync.features.online import lookup
from lakesync.features.timeline import Labels, training_set
from lakesync.monitor.verdict import human_duration
from lakesync.report.summary import text_table

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def read_labels(path: Path) -> pl.DataFrame:
    """Label rows from a parquet, CSV or JSON-lines file."""
    if not path.exists():
        msg = f"--labels {path}: no such file"
        raise FeatureError(msg)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pl.read_parquet(path)
    if suffix in (".ndjson", ".jsonl", ".json"):
        return pl.read_ndjson(path)
    return pl.read_csv(path, try_parse_dates=False)


def _entity(pairs: list[str] | None) -> dict[str, str]:
    """``--entity customer_id`` (same name) or ``--entity customer_id=cust`` (feature key=label column)."""
    found = {}
    for pair in pairs or []:
        key, _, column = pair.partition("=")
        found[key] = column or key
    return found


def cmd_training_set(config: LakesyncConfig, args: argparse.Namespace) -> int:
    try:
        labels = Labels(read_labels(Path(args.labels)), args.at, _entity(args.entity), args.timezone)
        built = training_set(config, open_lakehouse(config), labels, args.features)
    except FeatureError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    for feature, versions in built.inputs.items():
        pinned = ", ".join(f"{t} version {v}" for t, v in versions.items())
        ttl = config.features[feature].ttl
        stale = f"; null where the entity's last event is over {human_duration(ttl)} old (ttl)" if ttl else ""
        print(f"{feature}: as of each row's {args.at}, from {pinned}{stale}", file=sys.stderr)
    frame = built.frame
    if args.out:
        out = Path(args.out)
        if out.suffix.lower() == ".csv":
            frame.write_csv(out)
        else:
            frame.write_parquet(out)
        print(f"{frame.height:,} row(s) written to {out}", file=sys.stderr)
    else:
        shown = frame.head(100)
        print(text_table(shown.columns, shown.rows()))
    return EXIT_OK


def _values(text: str) -> dict[str, list[Any]]:
    """``customer_id=42`` or ``customer_id=42,43`` -> ``{"customer_id": ["42", "43"]}``."""
    key, _, values = text.partition("=")
    if not values:
        msg = f"--entity {text!r}: give KEY=VALUE (e.g. customer_id=42)"
        raise FeatureError(msg)
    return {key: values.split(",")}


def cmd_get(config: LakesyncConfig, args: argparse.Namespace) -> int:
    try:
        entities: dict[str, list[Any]] = {}
        for text in args.entity:
            entities.update(_values(text))
        found = lookup(config, args.feature, entities)
    except FeatureError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        for row in found.iter_rows(named=True):
            print(json.dumps(row, default=str))
    else:
        print(text_table(found.columns, found.rows()))
    return EXIT_OK
