"""lakesync as a Dagster Component: a ``defs.yaml`` names a ``lakesync.yaml``; the component builds
the same definitions ``lakesync.definitions`` does (lakes, tables, features, sensors, checks).

.. code-block:: yaml

    # <project>/defs/lakes/defs.yaml
    type: lakesync.defs.component.LakesyncComponent
    attributes:
      config: lakesync.yaml            # relative to this defs.yaml's folder

``lakesync.yaml`` stays the one configuration: its problems are reported with their key path and
line, as ``lakesync validate`` does.
"""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from lakesync.config import load_config
from lakesync.defs.factory import build_definitions


@dataclass
class LakesyncComponent(dg.Component, dg.Resolvable):
    """Every lake, unified table and feature table of a ``lakesync.yaml``, as Dagster definitions."""

    config: str = "lakesync.yaml"
    """The ``lakesync.yaml`` to build from: relative to the folder of this ``defs.yaml`` (absolute
    paths work too, and so does ``{{ env('LAKESYNC_CONFIG', 'lakesync.yaml') }}``)."""

    def config_path(self, context: dg.ComponentLoadContext) -> Path:
        path = Path(self.config).expanduser()
        return path if path.is_absolute() else (context.path / path).resolve()

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_definitions(load_config(self.config_path(context)))
