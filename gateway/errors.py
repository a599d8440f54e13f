"""The one error hierarchy: every refusal and failure the gateway raises on purpose.

Each domain subclasses :class:`GatewayError` where it raises (``files.NotFound``,
``storage.StorageError``, ``keys.KeyringError``, ``audit.AuditUnavailable``, ...), and fixes
its HTTP ``status`` and contract ``code`` there. The edges translate once: the web app with one
``isinstance`` (:mod:`gateway.web.errors`), the command line with one handler
(:mod:`gateway.cli`). Library errors (botocore, SQLAlchemy) never travel: the room that calls
the library turns them into one of these.

This module imports nothing of the gateway, so every room may import it.
"""
from __future__ import annotations

from collections.abc import Mapping


class GatewayError(Exception):
    """A failure with an HTTP ``status``, a contract ``code`` and a message.

    :param message: what went wrong, one line, never key material. An HTTP client is shown
        :attr:`public_message` instead when the class sets one (the details then stay in
        the logs and on the command line).
    :param headers: extra HTTP headers of the answer (``Content-Range`` of a 416, say).
    """

    status: int = 500
    code: str = "internal_error"
    #: What an HTTP client is told, when it must not see the message itself.
    public_message: str | None = None

    def __init__(self, message: str = "", *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def answer(self) -> str:
        """The message an HTTP client gets."""
        return self.public_message or self.message or self.code


__all__ = ["GatewayError"]
