"""What the storage room raises; botocore's errors are translated into these in :mod:`.s3`."""
from __future__ import annotations

from ..errors import GatewayError


class StorageError(GatewayError):
    """The storage service failed (HTTP 502)."""

    status, code = 502, "storage_failure"
    public_message = "the storage service failed"


class StorageNotFound(StorageError):
    """No such object in the bucket (HTTP 404)."""

    status, code = 404, "not_found"
    public_message = "no such object"


class SseCRefused(StorageError):
    """The bucket or endpoint refuses SSE-C; the message says how to allow it or migrate."""

    status, code = 502, "ssec_refused"
    public_message = None  # the message is the help an operator needs
