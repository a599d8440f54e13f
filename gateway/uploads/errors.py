"""What a resumable upload answers when it cannot go on (translated once, at the web edge)."""
from __future__ import annotations

from ..errors import GatewayError


class UploadError(GatewayError):
    """Base of the resumable-upload refusals."""


class UploadNotFound(UploadError):
    """No such upload for this user (also another user's or organisation's upload)."""

    status, code = 404, "not_found"


class OffsetMismatch(UploadError):
    """The client's ``Upload-Offset`` is not where the upload stands (ask with ``HEAD``)."""

    status, code = 409, "offset_mismatch"


class UploadLocked(UploadError):
    """Another request is adding to this upload right now."""

    status, code = 423, "locked"


class UploadExpired(UploadError):
    """The upload was not finished in time and everything stored for it is gone."""

    status, code = 410, "expired"


class ChecksumMismatch(UploadError):
    """The bytes of a ``PATCH`` do not match its ``Upload-Checksum``; none were kept."""

    status, code = 460, "checksum_mismatch"


class BadUploadRequest(UploadError):
    """A malformed tus header or body."""

    status, code = 400, "bad_request"


class UnsupportedChecksum(UploadError):
    """An ``Upload-Checksum`` algorithm the server does not offer."""

    status, code = 400, "bad_request"
