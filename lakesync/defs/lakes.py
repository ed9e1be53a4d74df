"""What every provider's resources share: secrets as ``dg.EnvVar``, their names for messages, and
a warning for plain http.

Secrets are ``dg.EnvVar`` fields of the resources: Dagster reads the variables when a run or a
sensor tick starts, so a value never appears in run configuration, metadata or the UI, and each
lake's credentials serve that lake only. Which resource a provider uses is decided in
:mod:`lakesync.defs.providers`.
"""

import logging
from typing import Any

import dagster as dg

from lakesync.config.secrets import EnvSecret

log = logging.getLogger("lakesync")


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
