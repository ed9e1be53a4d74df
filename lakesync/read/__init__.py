"""Stage 2: read lake files (parquet, CSV, JSON lines, JSON; gzip) as streams of chunks."""

from lakesync.read.base import DEFAULT_CHUNK_ROWS, ROW, FileReadError, ReadSpec
from lakesync.read.files import READERS, read_file

__all__ = ["DEFAULT_CHUNK_ROWS", "READERS", "ROW", "FileReadError", "ReadSpec", "read_file"]
