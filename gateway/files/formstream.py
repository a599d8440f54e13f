"""Streaming ``multipart/form-data`` parsing that never writes to disk.

Werkzeug's form parser (behind ``request.files``) spools every file part over 500 KB to a
temporary file: plaintext patient data on disk.  :class:`FormStream` instead drives Werkzeug's
incremental :class:`~werkzeug.sansio.multipart.MultipartDecoder` over the request body, read in
pieces of ``read_size`` bytes, and hands each file part to the caller as an iterator of chunks.
Memory stays bounded by a small multiple of ``read_size`` whatever the upload's size; nothing
is buffered beyond one read and a boundary's worth of held-back bytes, and small text fields.

Usage::

    form = FormStream(request.stream, request.headers["Content-Type"])
    for part in form.parts():
        if isinstance(part, FormField):
            fields[part.name] = part.value
        else:
            upload(fields["path"], part.chunks)  # consume the chunks here

Parts arrive in the order the client sent them, and the caller sees each one when the body
reaches it: there is no looking ahead.  Browsers send form controls in document order, so the
upload form places its ``path`` field *before* its ``file`` input, and the caller has the path
before the file's first byte.  A field sent after the file is still delivered, but only once the
file's chunks have been consumed (or skipped); a caller that needs such a field first must
refuse the request, since holding the file to wait for it would mean buffering it.

A :class:`FormFile`'s chunks must be consumed before the next part is asked for.  If they are
not, asking for the next part reads and discards the rest of the file; its chunks can then no
longer be iterated (:class:`RuntimeError`).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Event,
    Field,
    File,
    MultipartDecoder,
    NeedData,
    Preamble,
    State,
)

from ..errors import GatewayError

__all__ = ["FormError", "FormField", "FormFile", "FormStream"]

#: Bytes read from the stream at a time.
DEFAULT_READ_SIZE = 64 * 1024
#: Longest accepted preamble, and longest accepted header block of one part.
MAX_HEADER_BYTES = 16 * 1024
#: Most whitespace accepted between a boundary and its line break (RFC 2046 transport padding).
MAX_BOUNDARY_PADDING = 64

# RFC 2046 allows 1 to 70 characters; like Werkzeug, accept any printable ASCII up to 200 that
# does not end in a space, as real clients are not all strict.
_BOUNDARY_RE = re.compile(r"[ -~]{0,199}[!-~]")

MSG_NOT_MULTIPART = "expected a multipart/form-data request body"
MSG_NO_BOUNDARY = "the multipart/form-data boundary is missing"
MSG_BAD_BOUNDARY = "the multipart/form-data boundary is invalid"
MSG_TRUNCATED = "the form data ended before its closing boundary"
MSG_MALFORMED = "the form data is malformed"
MSG_HEADERS_TOO_LARGE = "a form part's headers are too large"
MSG_NO_NAME = "a form part has no name"


class FormError(GatewayError, ValueError):
    """The request body is not an acceptable form; :attr:`message` says why.

    :ivar message: the error text for the user
    :ivar status: the HTTP status it deserves: ``413`` (code ``too_large``) for the size and
        count limits, else ``400`` (``bad_request``)
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.code = "too_large" if status == 413 else "bad_request"


@dataclass(frozen=True)
class FormField:
    """A text field, decoded as UTF-8.

    :ivar name: the field's name
    :ivar value: its value
    """

    name: str
    value: str


@dataclass(frozen=True)
class FormFile:
    """A file part, whose content arrives through :attr:`chunks`.

    :ivar name: the form field's name (``file`` in the upload form)
    :ivar filename: the file name the client sent, unvalidated (``""`` when a browser form was
        submitted without choosing a file; older browsers may send a full client-side path)
    :ivar content_type: the declared ``Content-Type``, or ``None``; informative only, the
        gateway decides the type from the bytes
    :ivar chunks: the content in pieces of at most about ``read_size`` bytes; iterate it before
        asking for the next part.  It raises :class:`FormError` if the body turns out to be
        truncated: the caller must then discard what it received.
    """

    name: str
    filename: str
    content_type: str | None
    chunks: Iterator[bytes] = field(repr=False, compare=False)


class FormStream:
    """Parse a ``multipart/form-data`` body incrementally, part by part.

    :param stream: the request body (``request.stream`` or ``wsgi.input``), read with
        ``read(n)`` until it returns ``b""`` or the closing boundary is seen; nothing after the
        closing boundary is read
    :param content_type_header: the request's ``Content-Type`` header, with the boundary
    :param max_field_bytes: the largest text field accepted (:class:`FormError`, 413)
    :param max_fields: the most parts of any kind (fields and files) accepted (:class:`FormError`,
        413)
    :param read_size: bytes read from ``stream`` at a time
    :raises FormError: if the content type is not ``multipart/form-data`` or the boundary is
        missing or invalid
    """

    def __init__(
        self,
        stream: BinaryIO,
        content_type_header: str,
        *,
        max_field_bytes: int = 64 * 1024,
        max_fields: int = 20,
        read_size: int = DEFAULT_READ_SIZE,
    ) -> None:
        if read_size < 1:
            raise ValueError("read_size must be positive")
        mimetype, options = parse_options_header(content_type_header or "")
        if mimetype != "multipart/form-data":
            raise FormError(MSG_NOT_MULTIPART)
        boundary = options.get("boundary")
        if not boundary:
            raise FormError(MSG_NO_BOUNDARY)
        if not _BOUNDARY_RE.fullmatch(boundary):
            raise FormError(MSG_BAD_BOUNDARY)
        self._stream = stream
        self._decoder = MultipartDecoder(boundary.encode("ascii"))
        self._delimiter = b"--" + boundary.encode("ascii")
        self._fed_tail = b""  # the last bytes given to the decoder
        self._held = b""  # bytes read but not yet given to the decoder
        self._max_field_bytes = max_field_bytes
        self._max_fields = max_fields
        self._read_size = read_size
        self._eof = False
        self._started = False

    def parts(self) -> Iterator[FormField | FormFile]:
        """Yield the form's parts in the order they were sent.

        :raises FormError: if the body is truncated or malformed, a part has no name, a text
            field is too large or not UTF-8, or there are too many parts
        :raises RuntimeError: if called a second time
        """
        if self._started:
            raise RuntimeError("FormStream.parts() can only be iterated once")
        self._started = True
        count = 0
        while True:
            event = self._next_event()
            if isinstance(event, Preamble):
                if self._decoder.state == State.EPILOGUE:  # an empty form: "--boundary--"
                    return
                continue
            if isinstance(event, Epilogue):
                return
            if not isinstance(event, (Field, File)):
                raise FormError(MSG_MALFORMED)
            if not event.name:
                raise FormError(MSG_NO_NAME)
            count += 1
            if count > self._max_fields:
                raise FormError(f"the form has more than {self._max_fields} parts", status=413)
            if isinstance(event, File):
                chunks = _FileChunks(self)
                yield FormFile(
                    name=event.name,
                    filename=event.filename,
                    content_type=event.headers.get("Content-Type"),
                    chunks=chunks,
                )
                chunks.skip()
            else:
                yield FormField(name=event.name, value=self._field_value(event.name))
            if self._decoder.state == State.EPILOGUE:
                # The closing boundary: stop here rather than read (and hold) any epilogue.
                return

    def _field_value(self, name: str) -> str:
        value = bytearray()
        while True:
            event = self._next_event()
            if not isinstance(event, Data):
                raise FormError(MSG_MALFORMED)
            value += event.data
            if len(value) > self._max_field_bytes:
                raise FormError(
                    f"form field {name!r} is larger than {self._max_field_bytes} bytes",
                    status=413,
                )
            if not event.more_data:
                break
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise FormError(f"form field {name!r} is not valid UTF-8") from None

    def _next_data(self) -> Data:
        event = self._next_event()
        if not isinstance(event, Data):
            raise FormError(MSG_MALFORMED)
        return event

    def _next_event(self) -> Event:
        """The decoder's next event, reading from the stream as it needs more bytes."""
        decoder = self._decoder
        while True:
            try:
                event = decoder.next_event()
            except ValueError:  # includes UnicodeDecodeError in part headers
                raise FormError(MSG_TRUNCATED if self._eof else MSG_MALFORMED) from None
            if not isinstance(event, NeedData):
                return event
            if self._eof:
                raise FormError(MSG_TRUNCATED)
            # Before the first boundary and inside a part's headers, the decoder holds
            # everything until it finds what it looks for: bound that.
            if decoder.state in (State.PREAMBLE, State.PART) and (
                len(decoder.buffer) > MAX_HEADER_BYTES
            ):
                raise FormError(MSG_HEADERS_TOO_LARGE, status=413)
            data = self._stream.read(self._read_size)
            if not data:
                self._eof = True
                if self._held:
                    decoder.receive_data(self._held)
                decoder.receive_data(None)
            else:
                self._feed(bytes(data))

    def _feed(self, data: bytes) -> None:
        """Give ``data`` to the decoder, holding back a boundary's dangling suffix.

        Werkzeug's decoder (3.1.x) mistakes the line break before a delimiter for content when
        its buffer ends right after ``CRLF--boundary`` followed by ``-`` (half of the closing
        ``--``) or by padding whitespace: a read ending there would add a stray ``CR`` to the
        part.  Such a suffix is therefore held back until the bytes after it arrive, so the
        decoder only ever sees the delimiter complete or cut before its end.
        """
        pending = self._held + data
        # Only the end matters: a line break, the delimiter and the longest padding accepted.
        window = len(self._delimiter) + MAX_BOUNDARY_PADDING + 3
        tail = pending[-window:] if len(pending) >= window else self._fed_tail + pending
        hold = _dangling_suffix(tail, self._delimiter)
        if hold > MAX_BOUNDARY_PADDING:
            raise FormError(MSG_MALFORMED)
        feed, self._held = pending[: len(pending) - hold], pending[len(pending) - hold :]
        if feed:
            self._decoder.receive_data(feed)
            self._fed_tail = (self._fed_tail + feed)[-(len(self._delimiter) + 2) :]


def _dangling_suffix(data: bytes, delimiter: bytes) -> int:
    """How many bytes at the end of ``data`` follow a line break and ``delimiter`` without yet
    completing a boundary line: a single ``-`` or only spaces and tabs."""
    pos = data.rfind(delimiter)
    if pos < 1 or data[pos - 1] not in b"\r\n":
        return 0
    suffix = data[pos + len(delimiter) :]
    if suffix == b"-" or (suffix and not suffix.strip(b" \t")):
        return len(suffix)
    return 0


class _FileChunks(Iterator[bytes]):
    """The content of one file part, pulled from the form as it is iterated."""

    def __init__(self, form: FormStream) -> None:
        self._form = form
        self._done = False
        self._skipped = False

    def __iter__(self) -> _FileChunks:
        return self

    def __next__(self) -> bytes:
        if self._skipped:
            raise RuntimeError("this file part was skipped: consume it before the next part")
        while not self._done:
            event = self._form._next_data()
            if not event.more_data:
                self._done = True
            if event.data:
                return event.data
        raise StopIteration

    def skip(self) -> None:
        """Read and discard whatever the caller did not consume."""
        if not self._done:
            for _ in self:
                pass
            self._skipped = True
