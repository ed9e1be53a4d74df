"""Dagster resources: how ops and sensors reach the lakehouse."""

from __future__ import annotations

import dagster as dg

from lakesync.lakehouse import Lakehouse


class LakehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The unified Delta lakehouse every table, quarantine and the ledger live in."""

    uri: str
    """A local folder (absolute; relative paths were resolved against lakesync.yaml)."""

    def get(self) -> Lakehouse:
        return Lakehouse(uri=self.uri)
