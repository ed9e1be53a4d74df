"""What can be checked before any run: the environment a configuration needs.

``lakesync validate`` reports these after the configuration itself is valid: every secret's
environment variable is set (naming the lake or the lakehouse and the key), every local lake's
folder exists, and the ``pii: hash`` key is set and long enough. Nothing here connects anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from lakesync.config.contracts import hashes_pii
from lakesync.config.load import ConfigProblem
from lakesync.config.models import LakesyncConfig
from lakesync.config.secrets import EnvSecret
from lakesync.config.storage import LocalLake

MIN_PII_KEY_CHARS = 16
"""As :data:`lakesync.conform.pii.MIN_KEY_CHARS` (config cannot import conform)."""


def _secrets(where: str, credentials: object) -> Iterator[tuple[str, EnvSecret]]:
    if credentials is None:
        return
    for name in type(credentials).model_fields:  # type: ignore[attr-defined]
        value = getattr(credentials, name)
        if isinstance(value, EnvSecret):
            yield f"{where}.credentials.{name}", value


def preflight_problems(config: LakesyncConfig, environ: Mapping[str, str]) -> list[ConfigProblem]:
    """Every problem of the environment ``config`` needs (``environ``: the variables)."""
    problems: list[ConfigProblem] = []
    places = [("lakehouse", "the lakehouse", getattr(config.lakehouse, "credentials", None))]
    places += [
        (f"lakes.{n}", f"lake {n!r}", getattr(lake, "credentials", None)) for n, lake in config.lakes.items()
    ]
    found = [(k, secret, what) for path, what, creds in places for k, secret in _secrets(path, creds)]
    for n, lake in config.lakes.items():  # the event queue's own secrets
        source = lake.discovery.source
        if lake.discovery.mode == "events" and source is not None:
            for field in type(source).model_fields:
                value = getattr(source, field)
                if isinstance(value, EnvSecret):
                    found.append(
                        (f"lakes.{n}.discovery.source.{field}", value, f"the event queue of lake {n!r}")
                    )
    for key, secret, what in found:
        if not environ.get(secret.env):
            problems.append(
                ConfigProblem(key, f"${secret.env} is not set (a secret of {what}); set it, or fix the name")
            )
    for name, lake in config.lakes.items():
        if isinstance(lake, LocalLake) and not Path(lake.root).is_dir():
            problems.append(
                ConfigProblem(
                    f"lakes.{name}.root", f"{lake.root} does not exist or is not a folder (lake {name!r})"
                )
            )
    if hashes_pii(config):
        variable = config.lakehouse.pii_key.env
        pii_key = environ.get(variable)
        if not pii_key:
            problems.append(
                ConfigProblem(
                    "lakehouse.pii_key", f"${variable} is not set: `pii: hash` columns need it to sync"
                )
            )
        elif len(pii_key) < MIN_PII_KEY_CHARS:
            problems.append(
                ConfigProblem(
                    "lakehouse.pii_key",
                    f"${variable} is shorter than {MIN_PII_KEY_CHARS} characters: use a long random value",
                )
            )
    return problems
