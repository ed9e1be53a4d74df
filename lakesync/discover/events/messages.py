"""One queue message -> the file events it carries (a plain function of the message's text).

Understood: S3 event notifications (``Records``, directly or wrapped by SNS; S3's ``TestEvent``
is ignored; keys are URL-decoded), Event Grid blob events (``Microsoft.Storage.BlobCreated`` /
``BlobDeleted``, one or a list), GCS Pub/Sub notifications (the object resource, with the
``eventType`` attribute), and lakesync's own ``{"path", "lake", "size", "etag", "event_time",
"type"}``. Bodies may be base64 (Azure queues often are). Anything else is a
:class:`BadMessage` naming what it is not.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote, unquote_plus

EventKind = Literal["created", "deleted"]


class BadMessage(ValueError):  # noqa: N818 - a message is bad, not an error of lakesync
    """A message that is not a file event lakesync understands (recorded, then acknowledged)."""


@dataclass(frozen=True)
class FileEvent:
    key: str
    """The object's key in its bucket or container (or, for lakesync's own messages, the path
    relative to the lake, with ``relative`` set)."""
    kind: EventKind
    size: int | None = None
    etag: str | None = None
    event_time: datetime | None = None
    lake: str | None = None
    """The lake a lakesync message names (others: the queue's lake)."""
    relative: bool = False


def file_events(body: str | bytes, attributes: Mapping[str, str] | None = None) -> list[FileEvent]:
    """The file events of one message; ``[]`` for a test event; raises :class:`BadMessage`."""
    document = _json(body)
    if isinstance(document, dict) and document.get("Type") == "Notification" and "Message" in document:
        return file_events(str(document["Message"]), attributes)  # SNS around S3
    if isinstance(document, dict) and document.get("Event") == "s3:TestEvent":
        return []
    if isinstance(document, dict) and isinstance(document.get("Records"), list):
        return [_s3(record) for record in document["Records"] if _s3_relevant(record)]
    if isinstance(document, list) or (isinstance(document, dict) and "eventType" in document):
        items = document if isinstance(document, list) else [document]
        return [e for e in (_event_grid(item) for item in items) if e is not None]
    if isinstance(document, dict) and document.get("kind") == "storage#object":
        return _gcs(document, attributes or {})
    if isinstance(document, dict) and isinstance(document.get("path"), str):
        return [_lakesync(document)]
    msg = f"not a file event lakesync understands: {_excerpt(document)}"
    raise BadMessage(msg)


def _json(body: str | bytes) -> Any:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
        return json.loads(decoded)
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError, ValueError):
        msg = f"not JSON (nor base64 JSON): {text[:120]!r}"
        raise BadMessage(msg) from None


def _excerpt(document: Any) -> str:
    return json.dumps(document)[:200]


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _s3_relevant(record: Any) -> bool:
    name = str(record.get("eventName", "")) if isinstance(record, dict) else ""
    return name.startswith(("ObjectCreated:", "ObjectRemoved:"))


def _s3(record: dict[str, Any]) -> FileEvent:
    try:
        obj = record["s3"]["object"]
        key = unquote_plus(str(obj["key"]))
    except (KeyError, TypeError):
        msg = f"an S3 record without s3.object.key: {_excerpt(record)}"
        raise BadMessage(msg) from None
    kind: EventKind = "deleted" if str(record["eventName"]).startswith("ObjectRemoved:") else "created"
    etag = obj.get("eTag") or obj.get("etag")
    return FileEvent(
        key,
        kind,
        _int(obj.get("size")),
        str(etag).strip('"') if etag else None,
        _time(record.get("eventTime")),
    )


def _event_grid(item: Any) -> FileEvent | None:
    if not isinstance(item, dict):
        msg = f"not an Event Grid event: {_excerpt(item)}"
        raise BadMessage(msg)
    kind: EventKind
    if item.get("eventType") == "Microsoft.Storage.BlobCreated":
        kind = "created"
    elif item.get("eventType") == "Microsoft.Storage.BlobDeleted":
        kind = "deleted"
    else:
        return None  # other Event Grid events (a subscription validation, directory events)
    subject = str(item.get("subject", ""))
    _, found, key = subject.partition("/blobs/")
    if not found:
        msg = f"an Event Grid blob event without /blobs/ in its subject: {subject!r}"
        raise BadMessage(msg)
    data = item.get("data") if isinstance(item.get("data"), dict) else {}
    assert isinstance(data, dict)
    etag = data.get("eTag")
    return FileEvent(
        unquote(key),
        kind,
        _int(data.get("contentLength")),
        str(etag).strip('"') if etag else None,
        _time(item.get("eventTime")),
    )


def _gcs(document: dict[str, Any], attributes: Mapping[str, str]) -> list[FileEvent]:
    event = attributes.get("eventType", "OBJECT_FINALIZE")
    if event not in ("OBJECT_FINALIZE", "OBJECT_DELETE"):
        return []  # metadata updates, archive events
    kind: EventKind = "deleted" if event == "OBJECT_DELETE" else "created"
    etag = document.get("md5Hash") or document.get("etag")
    return [
        FileEvent(
            str(document["name"]),
            kind,
            _int(document.get("size")),
            str(etag) if etag else None,
            _time(document.get("updated") or document.get("timeCreated")),
        )
    ]


def _lakesync(document: dict[str, Any]) -> FileEvent:
    kind = document.get("type", "created")
    if kind not in ("created", "deleted"):
        msg = f"type must be created or deleted, not {kind!r}"
        raise BadMessage(msg)
    lake = document.get("lake")
    return FileEvent(
        str(document["path"]).lstrip("/"),
        kind,
        _int(document.get("size")),
        str(document["etag"]) if document.get("etag") else None,
        _time(document.get("event_time")),
        lake=str(lake) if lake else None,
        relative=True,
    )
