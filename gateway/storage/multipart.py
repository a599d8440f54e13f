"""A multipart upload that outlives one request: parts are sent as they come, and the caller
keeps the list of parts (in the database) so that another request, in any process, can add
the next ones, complete the object or abort it.

Unlike :class:`~gateway.storage.s3.UploadWriter`, nothing is buffered here: each call sends one
part the caller has cut. Parts carry their CRC32 so that S3 checks each one.
"""
from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from .errors import StorageError, StorageNotFound
from .s3 import ObjectStore, crc32_b64, ssec_params
from .streams import offload

#: S3's smallest part, but for the last one
MIN_PART_SIZE = 5 * 1024 * 1024


class ResumableMultipart:
    """The multipart upload ``upload_id`` of ``key`` (``None``: not started yet)."""

    def __init__(self, store: ObjectStore, key: str, *, sse_c: bytes | None,
                 upload_id: str | None = None) -> None:
        self.store = store
        self.key = key
        self.sse_c = sse_c
        self.upload_id = upload_id

    def _params(self) -> dict[str, Any]:
        return dict(key=self.key, sse_c=self.sse_c is not None, Key=self.key,
                    **ssec_params(self.sse_c))

    def start(self) -> str:
        """Open the multipart upload (once) and return its id."""
        if self.upload_id is None:
            resp = self.store._call("create_multipart_upload", ChecksumAlgorithm="CRC32",
                                    **self._params())
            self.upload_id = str(resp["UploadId"])
        return self.upload_id

    def send(self, number: int, data: bytes | bytearray) -> Future[dict[str, Any]]:
        """Send part ``number`` in the background; the future gives its entry for
        :meth:`complete` (``PartNumber``, ``ETag``, ``ChecksumCRC32``)."""
        upload_id = self.start()
        return self.store._executor.submit(self._send, upload_id, number, data)

    def _send(self, upload_id: str, number: int, data: bytes | bytearray) -> dict[str, Any]:
        checksum = offload(crc32_b64, data).result()  # zlib releases the GIL
        resp = self.store._call("upload_part", UploadId=upload_id, PartNumber=number, Body=data,
                                ChecksumCRC32=checksum, **self._params())
        return {"PartNumber": number, "ETag": resp["ETag"], "ChecksumCRC32": checksum}

    def complete(self, parts: list[dict[str, Any]]) -> None:
        """Join ``parts`` (in order) into the object; parts not listed are discarded."""
        self.store._call("complete_multipart_upload", UploadId=self.start(),
                         MultipartUpload={"Parts": parts}, **self._params())

    def abort(self) -> bool:
        """Abandon the upload and its parts; ``False`` if S3 no longer knew it."""
        if self.upload_id is None:
            return False
        try:
            self.store._call("abort_multipart_upload", key=self.key, Key=self.key,
                             UploadId=self.upload_id)
        except StorageNotFound:
            return False
        finally:
            self.upload_id = None
        return True


__all__ = ["MIN_PART_SIZE", "ResumableMultipart", "StorageError"]
