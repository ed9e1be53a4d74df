"""Lakes on Azure Blob Storage and ADLS Gen2 (through the blob endpoint), via a ContainerClient."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from lakesync.discover.stores.objectstore import Access, Fault, ObjectStore, StoredObject
from lakesync.state.values import FileEntry


class AzureStore(ObjectStore):
    """Azure lists in key order but cannot start after a key: ``ordered_keys`` filters here."""

    def __init__(self, name: str, *, container: Any, prefix: str, access: Access) -> None:
        super().__init__(
            name, prefix=prefix, location=f"container {container.container_name}/{prefix}", access=access
        )
        self.container = container

    def _pages(self, prefix: str, start_after: str | None) -> Iterator[list[StoredObject]]:
        for page in self.container.list_blobs(name_starts_with=prefix or None).by_page():
            yield [
                StoredObject(b.name, int(b.size), b.last_modified, str(b.etag).strip('"'))
                for b in page
                if start_after is None or b.name > start_after
            ]

    def _download(self, obj: FileEntry, key: str, sink: BinaryIO) -> None:
        options: dict[str, Any] = {}
        if obj.etag:
            options = {"etag": obj.etag, "match_condition": MatchConditions.IfNotModified}
        self.container.get_blob_client(key).download_blob(**options).readinto(sink)

    def _head(self, key: str) -> StoredObject | None:
        try:
            found = self.container.get_blob_client(key).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return StoredObject(key, int(found.size), found.last_modified, str(found.etag).strip('"'))

    def _fault(self, exc: BaseException) -> Fault:
        if isinstance(exc, ResourceModifiedError):
            return "changed"
        if isinstance(exc, ResourceNotFoundError):
            return "missing"
        if isinstance(exc, ClientAuthenticationError):
            return "auth"
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return "transient"
        if isinstance(exc, HttpResponseError):
            status = exc.status_code or 0
            if status == 412:
                return "changed"
            if status in (401, 403):
                return "auth"
            if status == 429 or status >= 500:
                return "transient"
        return "other"
