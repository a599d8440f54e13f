"""Streaming multipart parsing: exact bytes, bounded chunks, clear errors, and no disk writes."""
from __future__ import annotations

import hashlib
import io
import os
import random
import sys
import tempfile
import threading
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.formparser import parse_form_data
from werkzeug.test import EnvironBuilder

from gateway.files import FormError, FormField, FormFile, FormStream, formstream

BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


# -- helpers -------------------------------------------------------------------------------


def field_part(name: str, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + data


def file_part(name: str, filename: str, data: bytes, content_type: str | None = None) -> bytes:
    headers = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
    if content_type:
        headers += f"Content-Type: {content_type}\r\n"
    return (headers + "\r\n").encode() + data


def body(
    *parts: bytes, boundary: str = BOUNDARY, preamble: bytes = b"", epilogue: bytes = b""
) -> bytes:
    delimiter = b"--" + boundary.encode()
    out = preamble
    for part in parts:
        out += delimiter + b"\r\n" + part + b"\r\n"
    return out + delimiter + b"--\r\n" + epilogue


class TrickleStream(io.RawIOBase):
    """A body that hands out at most ``limit`` bytes per read, like a slow network, and
    remembers how far it was read."""

    def __init__(self, data: bytes, limit: int | None = None, sizes: list[int] | None = None):
        self._data = data
        self._limit = limit
        self._sizes = sizes
        self.position = 0
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        if size < 0:
            size = len(self._data)
        if self._limit is not None:
            size = min(size, self._limit)
        if self._sizes:
            size = min(size, self._sizes[self.reads % len(self._sizes)])
        chunk = self._data[self.position : self.position + size]
        self.position += len(chunk)
        self.reads += 1
        return chunk


def collect(form: FormStream) -> list[tuple[Any, ...]]:
    """Every part, with each file's content joined."""
    out: list[tuple[Any, ...]] = []
    for part in form.parts():
        if isinstance(part, FormField):
            out.append(("field", part.name, part.value))
        else:
            out.append(("file", part.name, part.filename, part.content_type, b"".join(part.chunks)))
    return out


def tricky_bytes(size: int, seed: int = 7) -> bytes:
    """Binary content dense in CR, LF, dashes and near-boundaries."""
    rng = random.Random(seed)
    pieces = [
        b"\r\n",
        b"\r",
        b"\n",
        b"--",
        b"\r\n--",
        b"\r\n--" + BOUNDARY.encode()[:-1],
        b"\r\n-" + BOUNDARY.encode(),
        b"\n--" + BOUNDARY.encode()[:10],
        b"\r\r\n\n",
        bytes([0]) * 3,
    ]
    out = bytearray()
    while len(out) < size:
        if rng.random() < 0.3:
            out += rng.choice(pieces)
        else:
            out += rng.randbytes(rng.randint(1, 64))
    # Content never contains the delimiter itself (RFC 2046); near misses are the point.
    delimiter = b"--" + BOUNDARY.encode()
    result = bytes(out[:size])
    while delimiter in result:
        result = result.replace(delimiter, b"-+" + BOUNDARY.encode())
    return result


# -- parsing -------------------------------------------------------------------------------


def test_fields_before_and_after_a_large_file() -> None:
    content = tricky_bytes(3 * 1024 * 1024)
    data = body(
        field_part("path", "uploads/forms/201/field_7/scan.pdf"),
        field_part("note", "für Dr. Müller"),
        file_part("file", "scan.pdf", content, "application/pdf"),
        field_part("after", "still here"),
    )
    form = FormStream(io.BytesIO(data), CONTENT_TYPE)
    assert collect(form) == [
        ("field", "path", "uploads/forms/201/field_7/scan.pdf"),
        ("field", "note", "für Dr. Müller"),
        ("file", "file", "scan.pdf", "application/pdf", content),
        ("field", "after", "still here"),
    ]


@pytest.mark.parametrize("read_size", [1, 7, 100, 4096, 65536, 10**7])
def test_any_read_size_gives_the_same_bytes(read_size: int) -> None:
    content = tricky_bytes(200_000 if read_size > 1 else 5000, seed=read_size)
    data = body(field_part("path", "uploads/x.bin"), file_part("file", "x.bin", content))
    form = FormStream(io.BytesIO(data), CONTENT_TYPE, read_size=read_size)
    assert collect(form) == [
        ("field", "path", "uploads/x.bin"),
        ("file", "file", "x.bin", None, content),
    ]


def test_short_reads_from_a_slow_client() -> None:
    content = tricky_bytes(300_000, seed=3)
    data = body(field_part("path", "uploads/x.bin"), file_part("file", "x.bin", content))
    stream = TrickleStream(data, sizes=[1, 2, 3, 1000, 5, 70_000, 13])
    assert collect(FormStream(stream, CONTENT_TYPE))[1][4] == content


def test_chunks_are_bounded_by_the_read_size() -> None:
    content = tricky_bytes(3 * 1024 * 1024, seed=11)
    read_size = 64 * 1024
    data = body(field_part("path", "uploads/x.bin"), file_part("file", "x.bin", content))
    form = FormStream(io.BytesIO(data), CONTENT_TYPE, read_size=read_size)
    sizes: list[int] = []
    digest = hashlib.sha256()
    for part in form.parts():
        if isinstance(part, FormFile):
            for chunk in part.chunks:
                sizes.append(len(chunk))
                digest.update(chunk)
    assert digest.digest() == hashlib.sha256(content).digest()
    assert len(sizes) >= len(content) // read_size
    # One read plus the few bytes held back in case they begin a boundary.
    assert max(sizes) <= read_size + len(BOUNDARY) + 8


def test_memory_stays_bounded_whatever_the_file_size() -> None:
    read_size = 64 * 1024
    content = tricky_bytes(8 * 1024 * 1024, seed=5)
    data = body(field_part("path", "uploads/x.bin"), file_part("file", "x.bin", content))
    stream = io.BytesIO(data)
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        form = FormStream(stream, CONTENT_TYPE, read_size=read_size)
        for part in form.parts():
            if isinstance(part, FormFile):
                for chunk in part.chunks:
                    digest.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.digest() == hashlib.sha256(content).digest()
    assert peak < 8 * read_size, f"peak {peak} bytes while parsing {len(data)} bytes"


def test_crlf_heavy_binary_content() -> None:
    content = b"\r\n" * 50_000 + b"--" + b"\r\n--\r\n" * 1000 + b"\r\n--" + BOUNDARY.encode() + b"x"
    data = body(file_part("file", "x.bin", content), field_part("path", "uploads/x.bin"))
    result = collect(FormStream(TrickleStream(data, limit=999), CONTENT_TYPE, read_size=1000))
    assert result == [
        ("file", "file", "x.bin", None, content),
        ("field", "path", "uploads/x.bin"),
    ]


@pytest.mark.parametrize("content", [b"", b"\r\n", b"\r", b"\n", b"-", b"--", b"\r\n\r\n"])
def test_tiny_and_edge_contents(content: bytes) -> None:
    data = body(file_part("file", "x.bin", content), field_part("v", content))
    result = collect(FormStream(io.BytesIO(data), CONTENT_TYPE, read_size=3))
    assert result == [("file", "file", "x.bin", None, content), ("field", "v", content.decode())]


def test_empty_file_input_and_empty_field() -> None:
    data = body(file_part("file", "", b"", "application/octet-stream"), field_part("path", ""))
    assert collect(FormStream(io.BytesIO(data), CONTENT_TYPE)) == [
        ("file", "file", "", "application/octet-stream", b""),
        ("field", "path", ""),
    ]


def test_filenames_are_passed_through_unvalidated() -> None:
    data = body(file_part("file", "../../etc/scan é.pdf", b"x"))
    [part] = collect(FormStream(io.BytesIO(data), CONTENT_TYPE))
    assert part[2] == "../../etc/scan é.pdf"


def test_empty_form() -> None:
    assert collect(FormStream(io.BytesIO(body()), CONTENT_TYPE)) == []


def test_preamble_is_ignored_and_epilogue_is_not_read() -> None:
    epilogue = b"x" * 1_000_000
    data = body(field_part("a", "1"), preamble=b"This is a preamble.\r\n", epilogue=epilogue)
    stream = TrickleStream(data, limit=1000)
    assert collect(FormStream(stream, CONTENT_TYPE, read_size=1000)) == [("field", "a", "1")]
    assert stream.position <= len(data) - len(epilogue) + 1000


def test_lf_only_line_breaks_are_accepted() -> None:
    data = body(field_part("a", "1"), file_part("f", "x", b"abc")).replace(b"\r\n", b"\n")
    assert collect(FormStream(io.BytesIO(data), CONTENT_TYPE)) == [
        ("field", "a", "1"),
        ("file", "f", "x", None, b"abc"),
    ]


def test_quoted_boundary_and_charset_parameter() -> None:
    boundary = "simple boundary"
    data = body(field_part("a", "1"), boundary=boundary)
    header = f'multipart/form-data; charset=utf-8; boundary="{boundary}"'
    assert collect(FormStream(io.BytesIO(data), header)) == [("field", "a", "1")]


def test_bodies_from_other_encoders() -> None:
    from urllib3 import encode_multipart_formdata
    from werkzeug.datastructures import FileStorage, MultiDict
    from werkzeug.test import encode_multipart

    content = tricky_bytes(100_000, seed=9)
    encoded, content_type = encode_multipart_formdata(
        [("path", "uploads/a.bin"), ("file", ("a.bin", content, "application/pdf"))]
    )
    assert collect(FormStream(io.BytesIO(encoded), content_type)) == [
        ("field", "path", "uploads/a.bin"),
        ("file", "file", "a.bin", "application/pdf", content),
    ]
    upload = FileStorage(io.BytesIO(content), filename="a.bin", content_type="image/png")
    boundary, encoded = encode_multipart(MultiDict([("path", "uploads/a.bin"), ("file", upload)]))
    header = f"multipart/form-data; boundary={boundary}"
    assert collect(FormStream(io.BytesIO(encoded), header)) == [
        ("field", "path", "uploads/a.bin"),
        ("file", "file", "a.bin", "image/png", content),
    ]


def test_agrees_with_werkzeugs_own_parser() -> None:
    content = tricky_bytes(50_000, seed=13)
    data = body(
        field_part("path", "uploads/a"), file_part("file", "a.bin", content), field_part("z", "9")
    )
    env = EnvironBuilder(method="POST", data=data, content_type=CONTENT_TYPE).get_environ()
    _, form, files = parse_form_data(env)
    assert form.to_dict() == {"path": "uploads/a", "z": "9"}
    assert files["file"].read() == content
    assert collect(FormStream(io.BytesIO(data), CONTENT_TYPE))[1][4] == content


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.booleans(), st.binary(max_size=300)),
        max_size=5,
    ),
    st.lists(st.integers(1, 50), min_size=1, max_size=5),
    st.integers(1, 200),
)
def test_random_forms_and_splits_round_trip(
    parts: list[tuple[bool, bytes]], sizes: list[int], read_size: int
) -> None:
    encoded = []
    expected: list[tuple[Any, ...]] = []
    for index, (is_file, data) in enumerate(parts):
        if is_file:
            encoded.append(file_part(f"f{index}", f"n{index}.bin", data))
            expected.append(("file", f"f{index}", f"n{index}.bin", None, data))
        else:
            text = data.decode("latin-1")
            encoded.append(field_part(f"t{index}", text))
            expected.append(("field", f"t{index}", text))
    stream = TrickleStream(body(*encoded), sizes=sizes)
    assert collect(FormStream(stream, CONTENT_TYPE, read_size=read_size)) == expected


class TwoPieceStream(io.RawIOBase):
    """A body delivered as two reads, split at ``cut``."""

    def __init__(self, data: bytes, cut: int) -> None:
        self._pieces = [data[:cut], data[cut:]]

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        while self._pieces and not self._pieces[0]:
            self._pieces.pop(0)
        return self._pieces.pop(0) if self._pieces else b""


@pytest.mark.parametrize(
    "content", [b"abc", b"abc\r", b"abc\n", b"abc\r\n", b"abc-", b"abc--", b"\r\n--x", b""]
)
def test_every_split_point_decodes_the_same(content: bytes) -> None:
    # Network reads end anywhere; wherever they end, the parts must be the same bytes.
    parts = (field_part("path", "p\r"), file_part("file", "a.bin", content), field_part("z", "\n"))
    expected = [
        ("field", "path", "p\r"),
        ("file", "file", "a.bin", None, content),
        ("field", "z", "\n"),
    ]
    for padding in (b"", b"  \t"):
        line = BOUNDARY.encode() + b"\r\n"
        data = body(*parts).replace(line, BOUNDARY.encode() + padding + b"\r\n")
        for cut in range(len(data) + 1):
            result = collect(FormStream(TwoPieceStream(data, cut), CONTENT_TYPE, read_size=10**6))
            assert result == expected, f"split at {cut}"


def test_excessive_boundary_padding_is_refused() -> None:
    delimiter = b"\r\n--" + BOUNDARY.encode()
    data = body(field_part("a", "1")).replace(delimiter + b"--", delimiter + b" " * 100)
    with pytest.raises(FormError) as info:
        _parse_all_stream(TrickleStream(data + b"\r\n", limit=1))
    assert info.value.message == formstream.MSG_MALFORMED


def _parse_all_stream(stream: io.RawIOBase) -> None:
    for part in FormStream(stream, CONTENT_TYPE).parts():  # type: ignore[arg-type]
        if isinstance(part, FormFile):
            for _ in part.chunks:
                pass


# -- file chunks not consumed ------------------------------------------------------------


def test_unconsumed_file_is_skipped_and_later_fields_still_arrive() -> None:
    data = body(file_part("file", "a.bin", b"x" * 100_000), field_part("path", "uploads/a.bin"))
    form = FormStream(io.BytesIO(data), CONTENT_TYPE, read_size=1000)
    parts = form.parts()
    first = next(parts)
    assert isinstance(first, FormFile)
    assert next(first.chunks)  # partly consumed
    second = next(parts)
    assert second == FormField("path", "uploads/a.bin")
    with pytest.raises(RuntimeError):
        next(first.chunks)
    assert list(parts) == []


def test_fully_consumed_file_iterates_empty_afterwards() -> None:
    data = body(file_part("file", "a.bin", b"abc"), field_part("path", "p"))
    parts = FormStream(io.BytesIO(data), CONTENT_TYPE).parts()
    first = next(parts)
    assert isinstance(first, FormFile)
    assert b"".join(first.chunks) == b"abc"
    assert next(parts) == FormField("path", "p")
    assert list(first.chunks) == []


def test_parts_can_only_be_iterated_once() -> None:
    form = FormStream(io.BytesIO(body(field_part("a", "1"))), CONTENT_TYPE)
    assert len(list(form.parts())) == 1
    with pytest.raises(RuntimeError):
        list(form.parts())


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", formstream.MSG_NOT_MULTIPART),
        ("application/x-www-form-urlencoded", formstream.MSG_NOT_MULTIPART),
        ("multipart/mixed; boundary=abc", formstream.MSG_NOT_MULTIPART),
        ("text/html; boundary=abc", formstream.MSG_NOT_MULTIPART),
        ("multipart/form-data", formstream.MSG_NO_BOUNDARY),
        ("multipart/form-data; boundary=", formstream.MSG_NO_BOUNDARY),
        ('multipart/form-data; boundary=""', formstream.MSG_NO_BOUNDARY),
        ('multipart/form-data; boundary="abc "', formstream.MSG_BAD_BOUNDARY),
        ("multipart/form-data; boundary=" + "a" * 201, formstream.MSG_BAD_BOUNDARY),
        ('multipart/form-data; boundary="ab\u00e9"', formstream.MSG_BAD_BOUNDARY),
    ],
)
def test_bad_content_type(header: str, message: str) -> None:
    with pytest.raises(FormError) as info:
        FormStream(io.BytesIO(b""), header)
    assert info.value.message == message == str(info.value)
    assert info.value.status == 400


def test_form_error_is_a_value_error() -> None:
    assert issubclass(FormError, ValueError)


def _parse_all(data: bytes, **kwargs: Any) -> None:
    for part in FormStream(io.BytesIO(data), CONTENT_TYPE, **kwargs).parts():
        if isinstance(part, FormFile):
            for _ in part.chunks:
                pass


def _error(data: bytes, **kwargs: Any) -> FormError:
    with pytest.raises(FormError) as info:
        _parse_all(data, **kwargs)
    return info.value


def test_truncated_inside_a_file_part() -> None:
    data = body(field_part("path", "p"), file_part("file", "a.bin", tricky_bytes(200_000)))
    error = _error(data[: len(data) // 2])
    assert (error.message, error.status) == (formstream.MSG_TRUNCATED, 400)


def test_truncated_file_raises_from_its_chunks() -> None:
    data = body(file_part("file", "a.bin", b"y" * 100_000))
    parts = FormStream(io.BytesIO(data[:50_000]), CONTENT_TYPE, read_size=4096).parts()
    first = next(parts)
    assert isinstance(first, FormFile)
    received = 0
    with pytest.raises(FormError) as info:
        for chunk in first.chunks:
            received += len(chunk)
    assert info.value.message == formstream.MSG_TRUNCATED
    assert received < 50_000


@pytest.mark.parametrize(
    "cut",
    [0, 1, 10, len("--" + BOUNDARY), len("--" + BOUNDARY) + 2, 60, 80, -3, -4, -6, -9],
)
def test_truncated_anywhere(cut: int) -> None:
    data = body(field_part("path", "p"), file_part("file", "a.bin", b"abc\r\n"))
    error = _error(data[:cut])
    assert error.message in (formstream.MSG_TRUNCATED, formstream.MSG_MALFORMED)


@settings(max_examples=200)
@given(st.data())
def test_every_truncation_is_an_error(data: st.DataObject) -> None:
    full = body(field_part("path", "p"), file_part("file", "a.bin", tricky_bytes(2000, seed=1)))
    # Cutting inside or before the closing delimiter "\r\n--BOUNDARY--" loses the end.
    cut = data.draw(st.integers(0, len(full) - len(f"--{BOUNDARY}--\r\n")))
    read_size = data.draw(st.integers(1, 3000))
    with pytest.raises(FormError):
        _parse_all(full[:cut], read_size=read_size)


@given(st.binary(max_size=500), st.integers(1, 100))
def test_garbage_only_raises_form_error(garbage: bytes, read_size: int) -> None:
    prefix = f"--{BOUNDARY}\r\n".encode()
    for data in (garbage, prefix + garbage):
        try:
            _parse_all(data, read_size=read_size)
        except FormError:
            pass


def test_too_many_parts() -> None:
    data = body(*(field_part(f"f{i}", "x") for i in range(21)))
    error = _error(data)
    assert (error.message, error.status) == ("the form has more than 20 parts", 413)
    _parse_all(body(*(field_part(f"f{i}", "x") for i in range(20))))  # the limit itself is fine
    error = _error(body(field_part("a", "1"), file_part("f", "x", b"1")), max_fields=1)
    assert error.message == "the form has more than 1 parts"


def test_oversized_field() -> None:
    error = _error(body(field_part("path", "a" * (64 * 1024 + 1))))
    assert error.message == "form field 'path' is larger than 65536 bytes"
    assert error.status == 413
    _parse_all(body(field_part("path", "a" * 64 * 1024)))
    assert _error(body(field_part("p", "abcd")), max_field_bytes=3).status == 413


def test_oversized_field_is_refused_without_reading_it_all() -> None:
    data = body(field_part("path", "a" * 10_000_000))
    stream = TrickleStream(data)
    with pytest.raises(FormError):
        _ = list(FormStream(stream, CONTENT_TYPE, max_field_bytes=1000, read_size=4096).parts())
    assert stream.position < 20_000


def test_field_that_is_not_utf8() -> None:
    error = _error(body(field_part("path", b"caf\xe9")))
    assert (error.message, error.status) == ("form field 'path' is not valid UTF-8", 400)


def test_part_without_a_name() -> None:
    data = body(b'Content-Disposition: form-data; filename="a"\r\n\r\nabc')
    assert _error(data).message == formstream.MSG_NO_NAME


def test_part_without_content_disposition() -> None:
    data = body(b"Content-Type: text/plain\r\n\r\nabc")
    assert _error(data).message == formstream.MSG_MALFORMED


def test_endless_preamble_is_refused_early() -> None:
    data = b"x" * 10_000_000
    stream = TrickleStream(data)
    with pytest.raises(FormError) as info:
        _ = list(FormStream(stream, CONTENT_TYPE, read_size=4096).parts())
    assert info.value.message == formstream.MSG_HEADERS_TOO_LARGE
    assert info.value.status == 413
    assert stream.position <= formstream.MAX_HEADER_BYTES + 2 * 4096


def test_endless_part_headers_are_refused_early() -> None:
    data = f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=a\r\nX: ".encode() + b"y" * 10**7
    stream = TrickleStream(data)
    with pytest.raises(FormError) as info:
        _ = list(FormStream(stream, CONTENT_TYPE, read_size=4096).parts())
    assert info.value.message == formstream.MSG_HEADERS_TOO_LARGE
    assert stream.position <= formstream.MAX_HEADER_BYTES + 2 * 4096


# -- nothing touches the disk -------------------------------------------------------------

_recording: dict[int, list[tuple[str, tuple[Any, ...]]]] = {}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC | getattr(
    os, "O_TMPFILE", 0
)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    records = _recording.get(threading.get_ident())
    if records is None:
        return
    if event.startswith("tempfile."):
        records.append((event, args))
    elif event == "open":
        _, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        ):
            records.append((event, args))


sys.addaudithook(_audit)


class _DiskWrites:
    """Records files opened for writing and temporary files made, in this thread."""

    def __enter__(self) -> list[tuple[str, tuple[Any, ...]]]:
        self.records: list[tuple[str, tuple[Any, ...]]] = []
        _recording[threading.get_ident()] = self.records
        return self.records

    def __exit__(self, *exc: object) -> None:
        del _recording[threading.get_ident()]


def _upload_body() -> tuple[bytes, bytes]:
    content = os.urandom(2 * 1024 * 1024)
    path = field_part("path", "uploads/forms/1/scan.pdf")
    return content, body(path, file_part("file", "scan.pdf", content))


def test_the_disk_watch_sees_werkzeugs_spooling() -> None:
    # Control: the watch must catch what Werkzeug's own parser does with a 2 MB upload.
    _, data = _upload_body()
    env = EnvironBuilder(method="POST", data=data, content_type=CONTENT_TYPE).get_environ()
    with _DiskWrites() as writes:
        _, _, files = parse_form_data(env)
        files["file"].close()
    assert writes, "the audit hook saw no temporary file: the no-disk test would prove nothing"


def test_parsing_a_large_upload_writes_nothing_to_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> Any:
        raise AssertionError("a temporary file was requested")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile"):
        monkeypatch.setattr(tempfile, name, forbidden)
    monkeypatch.setattr(tempfile, "mkstemp", forbidden)
    monkeypatch.setattr(tempfile, "mkdtemp", forbidden)

    content, data = _upload_body()
    digest = hashlib.sha256()
    with _DiskWrites() as writes:
        form = FormStream(io.BytesIO(data), CONTENT_TYPE)
        for part in form.parts():
            if isinstance(part, FormFile):
                for chunk in part.chunks:
                    digest.update(chunk)
    assert writes == []
    assert digest.digest() == hashlib.sha256(content).digest()


def test_a_flask_upload_through_request_stream_writes_nothing_to_disk() -> None:
    from flask import Flask, jsonify, request

    app = Flask(__name__)

    @app.post("/upload")
    def upload() -> Any:
        fields: dict[str, str] = {}
        digest = hashlib.sha256()
        form = FormStream(request.stream, request.headers.get("Content-Type", ""))
        for part in form.parts():
            if isinstance(part, FormField):
                fields[part.name] = part.value
            else:
                for chunk in part.chunks:
                    digest.update(chunk)
        return jsonify(fields=fields, sha256=digest.hexdigest())

    content, data = _upload_body()
    with _DiskWrites() as writes:
        response = app.test_client().post("/upload", data=data, content_type=CONTENT_TYPE)
    assert response.status_code == 200
    assert response.json == {
        "fields": {"path": "uploads/forms/1/scan.pdf"},
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    assert writes == []
