"""The Dagster code location: ``dagster dev`` / ``dagster asset materialize -m lakesync.definitions``.

The configuration is read when Dagster loads the definitions (not at import): from
``$LAKESYNC_CONFIG`` if set, else ``./lakesync.yaml``.
"""

from __future__ import annotations

import os

import dagster as dg

from lakesync.config import default_config_path, load_config
from lakesync.defs import LOCATION, build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_config(default_config_path(os.environ)), location=LOCATION)
