"""Read ``lakesync.yaml``: YAML -> typed model -> cross-field rules, every problem with its key path."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lakesync.config import datasets, models, storage
from lakesync.config.models import LakesyncConfig
from lakesync.config.rules import check_rules
from lakesync.config.storage import LAKEHOUSE_SCHEMES, PROVIDERS

CONFIG_ENV = "LAKESYNC_CONFIG"
DEFAULT_CONFIG = "lakesync.yaml"


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration, located by its dotted key path."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        prefix = f"{self.path}: " if self.path else ""
        return f"{prefix}{self.message}{where}"


class ConfigError(Exception):
    """The configuration has problems; ``problems`` lists every one of them."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the configuration:\n{lines}")


def default_config_path(environ: Mapping[str, str]) -> Path:
    """``$LAKESYNC_CONFIG`` if set, else ``./lakesync.yaml``."""
    return Path(environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _key_lines(node: yaml.Node | None, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Map every key path of a composed YAML document to its 1-based line."""
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            path = (*prefix, str(index))
            lines[path] = item.start_mark.line + 1
            lines.update(_key_lines(item, path))
    return lines


def _known_keys() -> set[str]:
    keys: set[str] = set()
    for module in (datasets, storage, models):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel):
                keys.update(value.model_fields)
    return keys


def _expected(text: str) -> str:
    return ", ".join(re.findall(r"'([^']*)'", text)) or text


def _problem_from_pydantic(error: Any) -> tuple[tuple[str, ...], str]:
    loc = tuple(str(part) for part in error["loc"])
    # A lake's (and the lakehouse's) errors carry the union's tag in the location: drop it.
    if len(loc) >= 3 and loc[0] == "lakes" and loc[2] in PROVIDERS:
        loc = loc[:2] + loc[3:]
    if len(loc) >= 2 and loc[0] == "lakehouse" and loc[1] in LAKEHOUSE_SCHEMES.values():
        loc = loc[:1] + loc[2:]
    if len(loc) >= 3 and loc[:2] == ("lakehouse", "online_store") and loc[2] in ("path", "redis"):
        loc = loc[:2] + loc[3:]  # the union's tag
    kind = error["type"]
    ctx = error.get("ctx") or {}
    given = error.get("input")
    if kind == "lakehouse_scheme":
        uri = str(given.get("uri")) if isinstance(given, dict) else ""
        return (*loc, "uri"), f"{uri.split('://', 1)[0]}:// {error['msg']}"
    if kind == "literal_error":
        return loc, f"{given!r} is not one of {_expected(str(ctx.get('expected', '')))}"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(loc[-1], sorted(_known_keys()), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return loc, f"unknown key{hint}; remove it or fix the spelling"
    if kind == "missing":
        return loc, "required key is missing"
    if kind == "union_tag_invalid":
        tag = ctx.get("tag")
        return (*loc, "provider"), f"{tag!r} is not one of {_expected(str(ctx.get('expected_tags')))}"
    if kind == "union_tag_not_found":
        return (*loc, "provider"), f"required key is missing (one of {', '.join(PROVIDERS)})"
    if kind == "string_pattern_mismatch":
        return loc, f"{given!r} is not a valid name (letters, digits and _; start with a letter)"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    return loc, message


def parse_config(text: str, *, source: str, base_dir: Path | None) -> LakesyncConfig:
    """Parse and check a configuration; raise :class:`ConfigError` listing every problem."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigProblem("", f"not valid YAML: {reason}", line)]) from None
    lines = _key_lines(tree)
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigProblem("", "expected a mapping with lakehouse, lakes and tables")])
    context = {"base_dir": base_dir}
    try:
        config = LakesyncConfig.model_validate(data, context=context)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc, message = _problem_from_pydantic(error)
            problems.append(ConfigProblem(".".join(loc), message, _line_of(lines, loc)))
        raise ConfigError(source, problems) from None
    problems = [
        ConfigProblem(".".join(loc), message, _line_of(lines, loc)) for loc, message in check_rules(config)
    ]
    if problems:
        raise ConfigError(source, problems)
    return config


def _line_of(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def load_config(path: Path | str) -> LakesyncConfig:
    """Load ``lakesync.yaml`` from ``path``; relative paths in it are relative to its folder."""
    file = Path(path)
    if not file.is_file():
        msg = f"no configuration at {file} (set --config or ${CONFIG_ENV}; `lakesync demo` writes one)"
        raise ConfigError(str(file), [ConfigProblem("", msg)])
    return parse_config(file.read_text(encoding="utf-8"), source=str(file), base_dir=file.resolve().parent)
