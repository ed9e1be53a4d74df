"""Lakes in Dagster: one resource per cloud lake (see :mod:`lakesync.defs.cloud`) and its store.

Secrets are ``dg.EnvVar`` fields of those resources: Dagster reads the variables when a run or
a sensor tick starts, so a value never appears in run configuration, metadata or the UI, and
each lake's credentials serve that lake only. Local lakes need no resource.
"""

import importlib
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any, Protocol

import dagster as dg

from lakesync.config.models import AzureLake, EnvSecret, GcsLake, LakesyncConfig, LocalLake, S3Lake
from lakesync.discover.stores import LakeStore, LocalStore

log = logging.getLogger("lakesync")
AnyLake = LocalLake | S3Lake | AzureLake | GcsLake


class LakeResource(Protocol):
    def store(self, name: str, lake: Any) -> LakeStore: ...

    def process_config_and_initialize_cm(self) -> AbstractContextManager[Any]: ...


def env(secret: EnvSecret | None) -> Any:
    """The resource field value of a secret reference: read by Dagster, never stored."""
    return dg.EnvVar(secret.env) if secret is not None else None


def names(*secrets: EnvSecret | None) -> list[str]:
    """The variable names of some secret references (for error messages)."""
    return [s.env for s in secrets if s is not None]


_WARNED_HTTP: set[tuple[str, str, str]] = set()


def warn_http(kind: str, name: str, endpoint: str | None) -> None:
    """Warn, once per process and endpoint, that a lake or lakehouse is reached over plain http."""
    if endpoint and endpoint.startswith("http://") and (kind, name, endpoint) not in _WARNED_HTTP:
        _WARNED_HTTP.add((kind, name, endpoint))
        log.warning("%s %r uses plain http (%s): allowed by allow_http: true", kind, name, endpoint)


def location(lake: AnyLake) -> str:
    """Where a lake's files are, for people (never a secret)."""
    if isinstance(lake, LocalLake):
        return lake.root
    if isinstance(lake, S3Lake):
        return f"s3://{lake.bucket}/{lake.prefix}"
    if isinstance(lake, AzureLake):
        return f"az://{lake.account}/{lake.container}/{lake.prefix}"
    return f"gs://{lake.bucket}/{lake.prefix}"


def resource_key(lake: str) -> str:
    return f"lake_{lake}"


def lake_resource(lake: AnyLake) -> LakeResource | None:
    """The resource of a cloud lake (``None`` for a local one), secrets as ``dg.EnvVar``."""
    if isinstance(lake, LocalLake):
        return None
    module = importlib.import_module(f"lakesync.defs.cloud.{lake.provider}")
    built: LakeResource = module.resource(lake)
    return built


def lake_resources(config: LakesyncConfig) -> dict[str, Any]:
    """The resource of every cloud lake, keyed ``lake_<name>``."""
    found = {resource_key(name): lake_resource(lake) for name, lake in config.lakes.items()}
    return {key: value for key, value in found.items() if value is not None}


def store_for(name: str, lake: AnyLake, resource: LakeResource | None) -> LakeStore:
    """The store of a lake, from its (initialized) resource."""
    if isinstance(lake, LocalLake):
        return LocalStore(name, lake)
    if resource is None:
        msg = f"lake {name!r} ({lake.provider}) has no resource {resource_key(name)!r}"
        raise ValueError(msg)
    return resource.store(name, lake)


@contextmanager
def open_stores(config: LakesyncConfig) -> Iterator[dict[str, LakeStore]]:
    """Stores of every lake outside a run: their resources are initialized here (Dagster reads
    the secret variables now) and torn down when the context ends."""
    with ExitStack() as stack:
        stores = {}
        for name, lake in config.lakes.items():
            resource = lake_resource(lake)
            initialized = (
                stack.enter_context(resource.process_config_and_initialize_cm())
                if resource is not None
                else None
            )
            stores[name] = store_for(name, lake, initialized)
        yield stores
