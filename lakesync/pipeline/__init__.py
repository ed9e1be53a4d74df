"""The pipeline: the stages wired together for one table (no Dagster here).

plan (:mod:`.plan`) -> rounds (:mod:`.round`: each file through :mod:`.files`, streamed by
:mod:`.stream`) -> the result values (:mod:`.results`) every report is built from.
"""

from lakesync.pipeline.round import BatchOrderError
from lakesync.pipeline.runtime import DatasetRuntime, dataset_runtimes
from lakesync.pipeline.sync import SyncOptions, sync_table

__all__ = ["BatchOrderError", "DatasetRuntime", "SyncOptions", "dataset_runtimes", "sync_table"]
