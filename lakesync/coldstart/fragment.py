"""A proposal as ``lakesync.yaml``: each choice commented with its evidence, each open question
where it must be answered. Written alone, or merged into an existing configuration (its own
comments and order kept: ruamel.yaml round-trips it)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from lakesync.coldstart.infer import ColumnProposal
from lakesync.coldstart.propose import DatasetProposal, Proposal


def _yaml() -> YAML:
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.preserve_quotes = True
    return yaml


def _flow(values: dict[str, Any]) -> CommentedMap:
    mapping = CommentedMap(values)
    mapping.fa.set_flow_style()
    for key, value in values.items():
        if isinstance(value, list):
            seq = CommentedSeq(value)
            seq.fa.set_flow_style()
            mapping[key] = seq
    return mapping


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def dataset_entry(found: DatasetProposal) -> CommentedMap:
    """A proposed dataset as its `lakesync.yaml` entry, its evidence in comments."""
    group = found.group
    node = CommentedMap()
    node["pattern"] = group.pattern
    newest = group.newest
    when = f", newest {newest.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if newest else ""
    about = [f"{len(group.files):,} file(s), {_size(group.bytes)}{when}; sampled {len(found.sample_files)}"]
    about += [f"QUESTION: {question}" for question in found.questions]
    if found.match is not None and found.match.unmatched_sources:
        extra = ", ".join(found.match.unmatched_sources)
        about.append(
            f"not in the contract of {found.match.table}: {extra} (drift policy evolve adds such columns; "
            "quarantine and fail hold the files for review)"
        )
    node.yaml_set_comment_before_after_key("pattern", before="\n".join(about), indent=8)
    node["format"] = found.sniffed.format
    options = {**found.sniffed.options, **found.time_options}
    if options:
        node["options"] = _flow(options)
        evidence = "; ".join(
            found.sniffed.evidence[1:] if found.sniffed.format == "csv" else found.sniffed.evidence
        )
        if evidence:
            node.yaml_add_eol_comment(evidence, "options")
    node["table"] = found.table
    if found.match is not None:
        match = found.match
        matched = len(match.columns)
        total = matched + len(match.unmatched_columns)
        why = f"matches {match.table}: score {match.score:.2f}, {matched} of {total} contract column(s)"
        if found.others:
            why += f"; next {found.others[0].table} {found.others[0].score:.2f}"
        node.yaml_add_eol_comment(why, "table")
        mapping = match.mapping
        if mapping:
            columns = CommentedMap(mapping)
            for m in match.columns:
                if m.source in mapping:
                    columns.yaml_add_eol_comment(m.evidence(), m.source)
            node["columns"] = columns
    else:
        node.yaml_add_eol_comment("a new table (no existing table matches: see tables below)", "table")
    return node


def _column(column: ColumnProposal) -> CommentedMap:
    spec: dict[str, Any] = {"type": column.type, "nullable": column.nullable}
    if column.unique:
        spec["unique"] = True
    if column.checks:
        spec["checks"] = _flow(column.checks)
    return _flow(spec)


def _table(found: DatasetProposal) -> CommentedMap:
    columns = CommentedMap()
    for column in found.contract:
        columns[column.name] = _column(column)
        if column.personal:
            columns.yaml_add_eol_comment(
                f"probably personal data ({column.personal}): mark pii: hash, mask or drop", column.name
            )
    table = CommentedMap()
    table["description"] = f"Proposed by lakesync scan from {found.group.pattern}"
    table["contract"] = CommentedMap({"columns": columns})
    return table


def fragment(proposal: Proposal, *, lakehouse: str | None = None) -> CommentedMap:
    """The proposal as a ``lakesync.yaml`` document (``lakehouse``: add one, for a new project)."""
    datasets = CommentedMap()
    for found in proposal.datasets:
        if found.error is not None or found.table is None:
            continue
        datasets[found.group.name] = dataset_entry(found)
    lake = CommentedMap(proposal.lake_settings)
    lake["datasets"] = datasets
    document = CommentedMap()
    if lakehouse is not None:
        document["lakehouse"] = _flow({"uri": lakehouse})
    document["lakes"] = CommentedMap({proposal.lake: lake})
    tables = CommentedMap()
    for found in proposal.datasets:
        if found.match is None and found.new_table is not None:
            tables[found.new_table] = _table(found)
    if tables:
        document["tables"] = tables
    stamp = datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    unreadable = [f"{d.group.pattern}: {d.error}" for d in proposal.datasets if d.error]
    asked = any(d.questions for d in proposal.datasets)
    review = "review it, answer each QUESTION" if asked else "review it"
    head = [f"Proposed by `lakesync scan` on {stamp}: {review}, then sync."]
    head += [f"Not proposed (no file could be read): {u}" for u in unreadable]
    document.yaml_set_start_comment("\n".join(head))
    return document


def dump(document: CommentedMap) -> str:
    out = io.StringIO()
    _yaml().dump(document, out)
    return out.getvalue()


def merge_into(path: Path, document: CommentedMap) -> str:
    """``path``'s configuration with the proposal's lake, datasets and tables added (its own
    comments and order kept); a dataset or table it has already is left as it is."""
    yaml = _yaml()
    existing = yaml.load(path.read_text(encoding="utf-8")) if path.exists() else None
    if not isinstance(existing, CommentedMap):
        return dump(document)
    for section in ("lakes", "tables"):
        for name, value in (document.get(section) or {}).items():
            target = existing.setdefault(section, CommentedMap())
            if name not in target:
                target[name] = value
            elif section == "lakes":
                datasets = target[name].setdefault("datasets", CommentedMap())
                for dataset, spec in value["datasets"].items():
                    if dataset not in datasets:
                        datasets[dataset] = spec
    return dump(existing)


def with_dataset(path: Path, lake: str, name: str, entry: CommentedMap, note: str) -> str:
    """``path``'s configuration with dataset ``name`` added to ``lake`` (``note`` above it), its
    own comments and order kept."""
    yaml = _yaml()
    document = yaml.load(path.read_text(encoding="utf-8"))
    datasets = document["lakes"][lake].setdefault("datasets", CommentedMap())
    datasets[name] = entry
    datasets.yaml_set_comment_before_after_key(name, before=note, indent=6)
    return dump(document)
