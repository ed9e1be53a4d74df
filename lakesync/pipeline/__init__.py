"""The pipeline: the stages wired together for one table (no Dagster here)."""

from lakesync.pipeline.runtime import DatasetRuntime, dataset_key, dataset_runtimes
from lakesync.pipeline.sync import BatchOrderError, sync_table

__all__ = ["BatchOrderError", "DatasetRuntime", "dataset_key", "dataset_runtimes", "sync_table"]
