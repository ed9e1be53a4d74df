"""Erased data subjects: whose rows must never come back, known before any of them is deleted.

``lakesync erase`` records the subject (by a hash, never by its key) as an ``erasure_request``
in the audit trail *before* it deletes a row, and its receipt (``erasure``) after. The erasure
list of a table is built from both, so a run killed anywhere in between leaves the subject
remembered: a late file bringing its rows is ingested without them (they are counted as
erased), and running the erasure again finishes the deletion.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from lakesync.config.contracts import ResolvedContract
from lakesync.state.audit import AuditLog
from lakesync.state.lakehouse import Lakehouse

REQUEST = "erasure_request"
RECEIPT = "erasure"


def subject_hash(subject: str, value: str) -> str:
    """How the audit trail names a subject (``customer`` + its key): SHA-256, hex."""
    return hashlib.sha256(f"{subject}={value}".encode()).hexdigest()


@dataclass(frozen=True)
class ErasureList:
    """The subjects erased from a table, by hash: rows of theirs arriving later are dropped."""

    subjects: Mapping[str, tuple[str, frozenset[str]]]
    """Subject column -> its subject and the hashes of the erased keys."""

    def keep(self, frame: pl.DataFrame) -> pl.Series:
        """True for the rows of ``frame`` none of whose subjects was erased."""
        keep = pl.Series("keep", [True] * frame.height, dtype=pl.Boolean)
        for column, (subject, hashes) in self.subjects.items():
            values = frame[column].drop_nulls().unique().to_list()
            erased = [v for v in values if subject_hash(subject, str(v)) in hashes]
            if erased:
                keep = keep & (~frame[column].is_in(erased)).fill_null(True)
        return keep.alias("keep")


class Erasures:
    """The erasure requests and receipts of one lakehouse (kept in its audit trail)."""

    def __init__(self, lakehouse: Lakehouse) -> None:
        self.audit = AuditLog(lakehouse)

    def request(self, subject: str, value: str, *, actor: str | None) -> str:
        """Remember that ``subject=value`` is being erased; returns its hash. Raises
        :class:`~lakesync.state.append.AppendContentionError` when it cannot be recorded (then
        nothing may be deleted)."""
        digest = subject_hash(subject, value)
        self.audit.append(
            [
                {
                    "kind": REQUEST,
                    "status": "requested",
                    "actor": actor,
                    "detail": json.dumps({"subject": subject, "subject_hash": digest}),
                }
            ],
            what=f"the erasure request of a {subject} (before deleting anything)",
        )
        return digest

    def hashes(self) -> dict[str, set[str]]:
        """Subject -> the hashes of every key requested or erased (dry runs are not erasures)."""
        found: dict[str, set[str]] = {}
        for detail in self.audit.details(REQUEST, RECEIPT):
            record = json.loads(detail)
            if not record.get("dry_run") and record.get("subject") and record.get("subject_hash"):
                found.setdefault(str(record["subject"]), set()).add(str(record["subject_hash"]))
        return found

    def of(self, contract: ResolvedContract) -> ErasureList | None:
        """The erasure list of a table's subject columns (``None`` when none was erased)."""
        if not contract.subjects:
            return None
        hashes = self.hashes()
        lists = {c: (s, frozenset(hashes[s])) for c, s in contract.subjects.items() if hashes.get(s)}
        return ErasureList(lists) if lists else None
