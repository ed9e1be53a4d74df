"""Lakes on S3 and S3-compatible stores (MinIO, Ceph, R2), through a boto3 client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    EndpointConnectionError,
    HTTPClientError,
)

from lakesync.discover.stores.objectstore import Access, Fault, ObjectStore, StoredObject
from lakesync.state.values import FileEntry

_AUTH = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
}
_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
}


class S3Store(ObjectStore):
    def __init__(self, name: str, *, client: Any, bucket: str, prefix: str, access: Access) -> None:
        super().__init__(name, prefix=prefix, location=f"s3://{bucket}/{prefix}", access=access)
        self.client = client
        self.bucket = bucket

    def _pages(self, prefix: str, start_after: str | None) -> Iterator[list[StoredObject]]:
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after is not None:
            arguments["StartAfter"] = start_after
        for page in self.client.get_paginator("list_objects_v2").paginate(**arguments):
            yield [
                StoredObject(o["Key"], int(o["Size"]), o["LastModified"], str(o["ETag"]).strip('"'))
                for o in page.get("Contents", [])
            ]

    def _download(self, obj: FileEntry, key: str, sink: BinaryIO) -> None:
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if obj.etag:
            arguments["IfMatch"] = f'"{obj.etag}"'
        body = self.client.get_object(**arguments)["Body"]
        for chunk in body.iter_chunks(chunk_size=1 << 20):
            sink.write(chunk)

    def _head(self, key: str) -> StoredObject | None:
        try:
            found = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return StoredObject(
            key, int(found["ContentLength"]), found["LastModified"], str(found["ETag"]).strip('"')
        )

    def _fault(self, exc: BaseException) -> Fault:
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "412") or status == 412:
                return "changed"
            if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
                return "missing"
            if code in _AUTH or status == 403:
                return "auth"
            if code in _TRANSIENT or (isinstance(status, int) and status >= 500):
                return "transient"
            return "other"
        if isinstance(exc, EndpointConnectionError | ConnectionError | HTTPClientError | BotoCoreError):
            return "transient"
        return "other"
