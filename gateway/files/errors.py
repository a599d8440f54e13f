"""The object service's refusals: each with its HTTP status and code; messages are safe to show."""
from __future__ import annotations

from ..errors import GatewayError


class ObjectError(GatewayError):
    """A refusal of the object service (HTTP 400 unless a subclass says otherwise)."""

    status, code = 400, "bad_request"


class NotFound(ObjectError):
    status, code = 404, "not_found"


class Forbidden(ObjectError):
    status, code = 403, "forbidden"


class Conflict(ObjectError):
    status, code = 409, "conflict"


class TooLarge(ObjectError):
    status, code = 413, "too_large"


class UnsupportedType(ObjectError):
    status, code = 415, "unsupported_type"


class BadRange(ObjectError):
    status, code = 416, "range_not_satisfiable"


__all__ = ["BadRange", "Conflict", "Forbidden", "NotFound", "ObjectError", "TooLarge",
           "UnsupportedType"]
