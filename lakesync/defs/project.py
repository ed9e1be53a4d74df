"""This repository as a ``dg`` project: its defs folder (``lakesync/defs``) is one
:class:`~lakesync.defs.component.LakesyncComponent`, declared in ``defs.yaml`` next to this file.
``dg check defs``, ``dg list defs`` and ``dg dev`` load it from here."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
