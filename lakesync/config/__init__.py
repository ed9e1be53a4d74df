"""Stage 0: the typed configuration (lakes, tables, contracts) read from ``lakesync.yaml``."""

from lakesync.config.contracts import (
    ContractColumn,
    ContractError,
    ResolvedContract,
    never_automatic,
    resolve_contract,
)
from lakesync.config.datasets import Dataset
from lakesync.config.load import (
    ConfigError,
    ConfigProblem,
    default_config_path,
    load_config,
    parse_config,
)
from lakesync.config.models import LakesyncConfig, Table
from lakesync.config.storage import LocalLake

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "ContractColumn",
    "ContractError",
    "Dataset",
    "LakesyncConfig",
    "LocalLake",
    "ResolvedContract",
    "Table",
    "default_config_path",
    "load_config",
    "never_automatic",
    "parse_config",
    "resolve_contract",
]
