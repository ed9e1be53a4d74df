"""SQL in place: one query over the lakehouse's tables and the lakes' files, nothing moved."""

from lakesync.sql.engine import CATALOG, QueryError, QueryOptions, QueryResult, reads_in_place, run_query
from lakesync.sql.inplace import FAILED, PASSES

__all__ = [
    "CATALOG",
    "FAILED",
    "PASSES",
    "QueryError",
    "QueryOptions",
    "QueryResult",
    "reads_in_place",
    "run_query",
]
