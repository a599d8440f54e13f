"""The object format: pure cryptography, no I/O.

Rooms: :mod:`.envelope` (the segmented, key-committing AES-256-GCM envelope of every object,
its ranged reads, and the wrapping of data keys). ``docs/format.md`` specifies every byte.

May import: the standard library, ``cryptography`` and :mod:`gateway.errors`; nothing that
does I/O (no Flask, boto3, SQLAlchemy, files or sockets).
"""
from . import envelope
from .envelope import DecryptionError

__all__ = ["DecryptionError", "envelope"]
