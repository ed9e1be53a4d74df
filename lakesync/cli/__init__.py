"""The `lakesync` command line."""

from lakesync.cli.main import main

__all__ = ["main"]
