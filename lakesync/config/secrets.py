"""A secret in lakesync.yaml is the name of the environment variable holding it, never a value."""

from __future__ import annotations

from pydantic import Field

from lakesync.config.datasets import StrictModel


class EnvSecret(StrictModel):
    """A secret, read from this environment variable by the Dagster resource that uses it.

    The value is never written in lakesync.yaml, in run configuration, metadata or logs.
    """

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
