"""The global catalog: every asset and column of every lake, table and feature, searchable."""

from lakesync.catalog.build import SCHEMA, catalog_frame, write_catalog
from lakesync.catalog.search import Hit, Source, folded, search

__all__ = ["SCHEMA", "Hit", "Source", "catalog_frame", "folded", "search", "write_catalog"]
