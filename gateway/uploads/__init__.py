"""Resumable uploads (tus 1.0.0): an object that arrives over several requests, encrypted as
it comes, with nothing in plaintext anywhere between them.

Rooms: :mod:`.service` (:class:`ResumableUploads`: create, append, inspect, terminate,
expire), :mod:`.protocol` (the tus headers, parsed; pure), :mod:`.digest` (a SHA-256 whose
state can be saved), :mod:`.errors`.

May import: :mod:`gateway.errors`, :mod:`gateway.principal`, :mod:`gateway.crypto`,
:mod:`gateway.db`, :mod:`gateway.storage`, :mod:`gateway.audit` and :mod:`gateway.files` (the
object service's path rules, roles, type check and catalog). Never Flask, click or
:mod:`gateway.services`.
"""
from . import protocol
from .errors import (
    BadUploadRequest,
    ChecksumMismatch,
    OffsetMismatch,
    UploadError,
    UploadExpired,
    UploadLocked,
    UploadNotFound,
)
from .service import ResumableUploads, UploadState

__all__ = [
    "BadUploadRequest", "ChecksumMismatch", "OffsetMismatch", "ResumableUploads",
    "UploadError", "UploadExpired", "UploadLocked", "UploadNotFound", "UploadState",
    "protocol",
]
