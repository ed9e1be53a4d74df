"""Provider dispatch, in one place: which Dagster resources reach a lake or the lakehouse.

Local lakes and a local lakehouse need nothing from a cloud SDK. Every other provider has one
module in :mod:`lakesync.defs.cloud` offering ``lake_resource(lake)`` and
``lakehouse_resource(lakehouse)``; it is imported only when a configuration uses that provider,
so a local setup does not pay for the cloud SDKs.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import replace
from types import ModuleType
from typing import Any, Protocol

from lakesync.config.models import LakesyncConfig
from lakesync.config.storage import AnyLake, AnyLakehouse, LocalLakehouseConfig
from lakesync.defs.resources import LakehouseResource, pii_key_resource
from lakesync.discover.stores import LakeStore, default_store
from lakesync.state.lakehouse import Lakehouse

CLOUD_MODULES = {
    "s3": "lakesync.defs.cloud.s3",
    "azure": "lakesync.defs.cloud.azure",
    "gcs": "lakesync.defs.cloud.gcs",
}
"""Provider -> the module of its Dagster resources (a new provider is one entry here)."""


class LakeResource(Protocol):
    def store(self, name: str, lake: Any) -> LakeStore: ...

    def process_config_and_initialize_cm(self) -> AbstractContextManager[Any]: ...


def _module(provider: str) -> ModuleType:
    return importlib.import_module(CLOUD_MODULES[provider])


def needs_resource(lake: AnyLake) -> bool:
    """Whether a lake is reached through a Dagster resource of its own (every cloud lake)."""
    return lake.provider in CLOUD_MODULES


def resource_key(lake: str) -> str:
    """The resource key of a cloud lake: ``lake_<name>``."""
    return f"lake_{lake}"


def lake_resource(lake: AnyLake) -> LakeResource | None:
    """The resource of a cloud lake (``None`` for a local one), secrets as ``dg.EnvVar``."""
    if not needs_resource(lake):
        return None
    built: LakeResource = _module(lake.provider).lake_resource(lake)
    return built


def lake_resources(config: LakesyncConfig) -> dict[str, Any]:
    """The resource of every cloud lake, keyed ``lake_<name>``."""
    return {
        resource_key(name): lake_resource(lake) for name, lake in config.lakes.items() if needs_resource(lake)
    }


def lakehouse_resource(config: LakesyncConfig) -> LakehouseResource:
    """The lakehouse resource of a configuration, its secrets as ``dg.EnvVar``."""
    house: AnyLakehouse = config.lakehouse
    if isinstance(house, LocalLakehouseConfig):
        return LakehouseResource(uri=house.uri)
    built: LakehouseResource = _module(house.provider).lakehouse_resource(house)
    return built


def store_for(name: str, lake: AnyLake, resource: LakeResource | None) -> LakeStore:
    """The store of a lake, from its (initialized) resource."""
    if not needs_resource(lake):
        return default_store(name, lake)
    if resource is None:
        msg = f"lake {name!r} ({lake.provider}) has no resource {resource_key(name)!r}"
        raise ValueError(msg)
    return resource.store(name, lake)


@contextmanager
def open_store(name: str, lake: AnyLake) -> Iterator[LakeStore]:
    """The store of one lake outside a run: its resource initialized here (Dagster reads the
    secret variables now), torn down when the context ends."""
    resource = lake_resource(lake)
    if resource is None:
        yield store_for(name, lake, None)
        return
    with resource.process_config_and_initialize_cm() as initialized:
        yield store_for(name, lake, initialized)


@contextmanager
def open_stores(config: LakesyncConfig) -> Iterator[dict[str, LakeStore]]:
    """Stores of every lake outside a run (:func:`open_store`)."""
    with ExitStack() as stack:
        yield {name: stack.enter_context(open_store(name, lake)) for name, lake in config.lakes.items()}


def open_lakehouse(config: LakesyncConfig, *, pii_key: bool = False) -> Lakehouse:
    """The lakehouse outside a run (the CLI): Dagster reads the secret variables now (the PII
    key only when asked, and only when some column is hashed)."""
    resource = lakehouse_resource(config)
    if type(resource) is LakehouseResource:  # a local folder, no secret: no config to process
        lakehouse = resource.get()
    else:
        with resource.process_config_and_initialize_cm() as initialized:
            lakehouse = initialized.get()
    for key_resource in pii_key_resource(config).values() if pii_key else ():
        with key_resource.process_config_and_initialize_cm() as initialized:
            lakehouse = replace(lakehouse, pii_key=initialized.key)
    return lakehouse
