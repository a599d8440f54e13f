"""A SHA-256 whose state can be saved between requests and carried on in another process.

``hashlib`` cannot export its state, and a resumable upload's receipt (the plaintext SHA-256 in
the catalog) must survive a gateway restart without the plaintext being read again. OpenSSL's
``SHA256_Init``/``SHA256_Update``/``SHA256_Final`` keep the whole state in a plain struct
(``SHA256_CTX``, 112 bytes), which is saved as it is, sealed (:mod:`gateway.crypto.interim`)
before it is stored. The library is the one Python's ``hashlib`` already uses.

Where that API is missing, :data:`AVAILABLE` is false and :meth:`ResumableSha256.state`
returns ``None``: the upload then computes the digest when it finishes, from the stored
object.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import hashlib

_CTX_SIZE = 112  # sizeof(SHA256_CTX): h[8], Nl, Nh, data[16], num, md_len (32-bit each)


def _load() -> ctypes.CDLL | None:
    for name in (ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.so"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            for fn in (lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final):
                fn.restype = ctypes.c_int
            lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
            lib.SHA256_Final.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            lib.SHA256_Init.argtypes = [ctypes.c_void_p]
        except (OSError, AttributeError):
            continue
        if _self_test(lib):
            return lib
    return None


def _self_test(lib: ctypes.CDLL) -> bool:
    ctx = ctypes.create_string_buffer(_CTX_SIZE)
    out = ctypes.create_string_buffer(32)
    data = b"abc" * 50
    lib.SHA256_Init(ctx)
    lib.SHA256_Update(ctx, data, len(data))
    again = ctypes.create_string_buffer(ctx.raw, _CTX_SIZE)
    lib.SHA256_Final(out, again)
    return out.raw == hashlib.sha256(data).digest()


_LIB = _load()
#: whether states can be saved (OpenSSL's SHA-256 functions were found and answer correctly)
AVAILABLE = _LIB is not None


class ResumableSha256:
    """SHA-256 of a stream, from a saved :meth:`state` (or from the start)."""

    def __init__(self, state: bytes | None = None) -> None:
        if _LIB is None:
            if state is not None:
                raise ValueError("saved SHA-256 states are not supported here")
            self._ctx = None
            self._fallback = hashlib.sha256()
            return
        self._fallback = None
        if state is None:
            self._ctx = ctypes.create_string_buffer(_CTX_SIZE)
            _LIB.SHA256_Init(self._ctx)
        else:
            if len(state) != _CTX_SIZE:
                raise ValueError("not a SHA-256 state")
            self._ctx = ctypes.create_string_buffer(bytes(state), _CTX_SIZE)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._fallback is not None:
            self._fallback.update(data)
            return
        if not len(data):
            return
        if isinstance(data, bytes):
            _LIB.SHA256_Update(self._ctx, data, len(data))  # type: ignore[union-attr]
            return
        view = memoryview(data).cast("B")
        if view.readonly:
            buf = bytes(view)
            _LIB.SHA256_Update(self._ctx, buf, len(buf))  # type: ignore[union-attr]
            return
        c_buf = (ctypes.c_char * len(view)).from_buffer(view)
        _LIB.SHA256_Update(self._ctx, c_buf, len(view))  # type: ignore[union-attr]

    def state(self) -> bytes | None:
        """The saved state (112 bytes), or ``None`` where states cannot be saved."""
        return None if self._ctx is None else bytes(self._ctx.raw)

    def hexdigest(self) -> str:
        if self._fallback is not None:
            return self._fallback.hexdigest()
        out = ctypes.create_string_buffer(32)
        ctx = ctypes.create_string_buffer(self._ctx.raw, _CTX_SIZE)  # type: ignore[union-attr]
        _LIB.SHA256_Final(out, ctx)  # type: ignore[union-attr]
        return out.raw.hex()
