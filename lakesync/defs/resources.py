"""Dagster resources every configuration has: the lakehouse (a local folder here; each cloud's in
:mod:`lakesync.defs.cloud`) and the secret ``pii: hash`` columns are hashed with."""

import re

import dagster as dg

from lakesync.config.contracts import hashes_pii
from lakesync.config.models import LakesyncConfig
from lakesync.defs.lakes import env
from lakesync.state.lakehouse import Lakehouse


class LakehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The unified Delta lakehouse every table, quarantine, ledger and drift log live in.

    This class is a lakehouse in a local folder; those on object stores subclass it with their
    own settings and secrets (``dg.EnvVar`` fields: read when a run starts, never stored or shown).
    """

    uri: str
    """A local folder (absolute), ``s3://bucket/path``, ``az://container/path`` or ``gs://bucket/path``."""

    def get(self) -> Lakehouse:
        return Lakehouse(uri=self.uri, storage_options=self.storage_options())

    def storage_options(self) -> dict[str, str]:
        """deltalake's options for this lakehouse (with the resolved secrets)."""
        return {}


class PiiKeyResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The secret ``pii: hash`` columns are hashed with (only syncs of such tables need it)."""

    key: str


PII_KEY = "pii_key"
"""The resource key of :class:`PiiKeyResource` (present when some column is hashed)."""


def pii_key_resource(config: LakesyncConfig) -> dict[str, PiiKeyResource]:
    """``{PII_KEY: resource}`` when some contract hashes a column, else nothing."""
    return {PII_KEY: PiiKeyResource(key=env(config.lakehouse.pii_key))} if hashes_pii(config) else {}


_UNSET = re.compile(r'environment variable "([^"]+)" which is not set')


def config_problem(exc: dg.DagsterInvalidConfigError) -> str:
    """What is wrong with a run's resources, in a sentence (a secret's variable name, never its value)."""
    unset = sorted(set(_UNSET.findall(str(exc))))
    if unset:
        return (
            f"the environment variable(s) {', '.join(unset)} named in lakesync.yaml as secrets "
            "(lake or lakehouse credentials; lakehouse.pii_key for `pii: hash` columns) are not set"
        )
    return str(exc).splitlines()[0]
