"""Stage 6: what a sync did, for people (summary tables) and for Dagster (metadata)."""

from lakesync.record.results import DatasetSync, TableSync

__all__ = ["DatasetSync", "TableSync"]
