"""Lakes on Google Cloud Storage, through a google-cloud-storage client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import requests
from google.api_core import exceptions as google_errors
from google.auth.exceptions import GoogleAuthError

from lakesync.discover.stores.objectstore import Access, Fault, ObjectStore, StoredObject
from lakesync.state.values import FileEntry


class GcsStore(ObjectStore):
    """The object's generation is its version tag: a download asks for exactly that one."""

    def __init__(self, name: str, *, client: Any, bucket: str, prefix: str, access: Access) -> None:
        super().__init__(name, prefix=prefix, location=f"gs://{bucket}/{prefix}", access=access)
        self.client = client
        self.bucket = client.bucket(bucket)

    def _pages(self, prefix: str, start_after: str | None) -> Iterator[list[StoredObject]]:
        arguments: dict[str, Any] = {"prefix": prefix or None}
        if start_after is not None:
            arguments["start_offset"] = start_after
        for page in self.client.list_blobs(self.bucket, **arguments).pages:
            yield [
                StoredObject(b.name, int(b.size or 0), b.updated, str(b.generation))
                for b in page
                if start_after is None or b.name > start_after
            ]

    def _download(self, obj: FileEntry, key: str, sink: BinaryIO) -> None:
        expected = int(obj.etag) if obj.etag else None
        self.bucket.blob(key).download_to_file(sink, if_generation_match=expected)
        # GCS answers a replaced object with 412; servers that ignore the precondition (the
        # emulator) are caught by looking at the generation again.
        now = self.bucket.get_blob(key)
        if now is None:
            raise google_errors.NotFound(key)  # type: ignore[no-untyped-call]
        if expected is not None and now.generation != expected:
            msg = f"{key}: generation {now.generation}, listed {expected}"
            raise google_errors.PreconditionFailed(msg)  # type: ignore[no-untyped-call]

    def _head(self, key: str) -> StoredObject | None:
        blob = self.bucket.get_blob(key)
        if blob is None:
            return None
        return StoredObject(key, int(blob.size or 0), blob.updated, str(blob.generation))

    def _fault(self, exc: BaseException) -> Fault:
        if isinstance(exc, google_errors.PreconditionFailed):
            return "changed"
        if isinstance(exc, google_errors.NotFound):
            return "missing"
        if isinstance(exc, google_errors.Unauthorized | google_errors.Forbidden | GoogleAuthError):
            return "auth"
        if isinstance(
            exc,
            google_errors.TooManyRequests
            | google_errors.ServiceUnavailable
            | google_errors.InternalServerError
            | google_errors.BadGateway
            | google_errors.GatewayTimeout
            | requests.ConnectionError
            | requests.Timeout,
        ):
            return "transient"
        return "other"
