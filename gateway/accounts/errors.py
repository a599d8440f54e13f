"""What the accounts room raises."""
from __future__ import annotations

from ..errors import GatewayError


class AccountError(GatewayError):
    """An account, token or organisation request was refused; the message says why."""

    status, code = 400, "bad_request"


class AccountNotFound(AccountError):
    status, code = 404, "not_found"


class AccountExists(AccountError):
    status, code = 409, "conflict"


__all__ = ["AccountError", "AccountExists", "AccountNotFound"]
