"""Stage 2: read lake files (parquet, CSV, JSON lines, JSON; gzip) as streams of chunks."""

from lakesync.read.readers import DEFAULT_CHUNK_ROWS, ROW, FileReadError, ReadSpec, read_file

__all__ = ["DEFAULT_CHUNK_ROWS", "ROW", "FileReadError", "ReadSpec", "read_file"]
