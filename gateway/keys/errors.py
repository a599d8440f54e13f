"""What the keys room raises. Messages never contain key material."""
from __future__ import annotations

from ..errors import GatewayError


class KeyringError(GatewayError):
    """The keyring cannot do its work: master key unusable, key version missing, KMS failing.

    Over HTTP: 503 "keyring unavailable". Messages never contain key material.
    """

    status, code = 503, "keyring_unavailable"
    public_message = "the keyring is unavailable; nothing was served"


class UnknownKeyVersion(KeyringError):
    """An organisation has no such key version (or no current one)."""


class KeyInUse(KeyringError):
    """A key version cannot be retired: objects still use it, or it is the current one.

    :ivar count: how many objects (deleted ones included) still use the version.
    """

    def __init__(self, message: str, count: int) -> None:
        super().__init__(message)
        self.count = count


# --------------------------------------------------------------------------------------------
