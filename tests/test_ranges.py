"""Range parsing (RFC 9110), If-Range, and Content-Disposition (RFC 6266 / RFC 5987)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.files.ranges import (
    MAX_PARTS,
    MAX_RANGE_SPECS,
    ByteRange,
    RangeNotSatisfiable,
    RangeSetRefused,
    content_disposition,
    if_range_allows,
    parse_range,
    parse_ranges,
)

# -- parse_range ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "start", "end"),
    [
        ("bytes=0-99", 1000, 0, 99),
        ("bytes=0-0", 1000, 0, 0),
        ("bytes=500-", 1000, 500, 999),
        ("bytes=999-", 1000, 999, 999),
        ("bytes=-100", 1000, 900, 999),
        ("bytes=-1", 1000, 999, 999),
        ("bytes=-1000", 1000, 0, 999),
        ("bytes=-5000", 1000, 0, 999),  # suffix larger than the object: all of it
        ("bytes=900-5000", 1000, 900, 999),  # last beyond the end: clamped
        ("bytes=0-999999999999999999999999999999", 1000, 0, 999),
        ("bytes=0-", 1, 0, 0),
        ("bytes=0-", 1000, 0, 999),
        ("Bytes=10-19", 1000, 10, 19),  # range units are case-insensitive
        ("bytes=10-19,", 1000, 10, 19),  # empty list elements do not count
        ("bytes= 10-19 ", 1000, 10, 19),
        ("  bytes=10-19", 1000, 10, 19),
        ("bytes=007-009", 1000, 7, 9),
    ],
)
def test_satisfiable(header: str, size: int, start: int, end: int) -> None:
    result = parse_range(header, size)
    assert result == ByteRange(start, end, size)
    assert result is not None and result.length == end - start + 1


def test_length_and_content_range() -> None:
    result = parse_range("bytes=0-99", 1000)
    assert result is not None
    assert result.length == 100
    assert result.content_range == "bytes 0-99/1000"


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=1000-", 1000),
        ("bytes=1000-1000", 1000),
        ("bytes=5000-6000", 1000),
        ("bytes=-0", 1000),
        ("bytes=-000", 1000),
        ("bytes=0-", 0),
        ("bytes=0-0", 0),
        ("bytes=-1", 0),
        ("bytes=-0", 0),
        ("bytes=99999999999999999999999999999999999-", 10),
        ("bytes=" + "9" * 5000 + "-", 10),  # longer than Python converts to int
    ],
)
def test_not_satisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.size == size
    assert info.value.content_range == f"bytes */{size}"
    assert str(info.value) == info.value.message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=,",
        "bytes=a-b",
        "bytes=1-a",
        "bytes=-a",
        "bytes=0x10-0x20",
        "bytes=+1-2",
        "bytes=-1-2",
        "bytes=1 - 2",
        "bytes=5-4",  # last before first: invalid, ignored
        "bytes=0-1,5-6",  # several ranges: served whole
        "bytes=0-1, 3-",
        "items=0-10",
        "pages=1-2",
        "0-10",
        "bytes:0-10",
        "bytes=\u0661-\u0662",  # Arabic-Indic digits are not DIGIT
        "bytes=１-２",
    ],
)
def test_ignored(header: str | None) -> None:
    assert parse_range(header, 1000) is None


def test_invalid_headers_are_ignored_even_for_an_empty_object() -> None:
    assert parse_range("bytes=5-4", 0) is None
    assert parse_range("items=0-1", 0) is None


def test_negative_size_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        parse_range("bytes=0-1", -1)


def test_byte_range_checks_itself() -> None:
    with pytest.raises(ValueError):
        ByteRange(5, 4, 10)
    with pytest.raises(ValueError):
        ByteRange(0, 10, 10)


# -- parse_ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", [(0, 9)]),
        ("bytes=0-9,20-29", [(0, 9), (20, 29)]),
        ("bytes=20-29,0-9", [(20, 29), (0, 9)]),  # parts in the order asked
        ("bytes=0-9,10-19", [(0, 19)]),  # adjacent: merged, a single range
        ("bytes=0-9,5-19", [(0, 19)]),  # overlapping: merged
        ("bytes=500-599,0-9,590-700", [(500, 700), (0, 9)]),  # merged part where first asked
        ("bytes=0-1,-5", [(0, 1), (995, 999)]),
        ("bytes=0-1,2000-", [(0, 1)]),  # unsatisfiable ones dropped
        ("bytes=0-1, ,5-6,", [(0, 1), (5, 6)]),
        ("bytes=" + ",".join(f"{i * 100}-{i * 100 + 1}" for i in range(MAX_PARTS)),
         [(i * 100, i * 100 + 1) for i in range(MAX_PARTS)]),
        ("bytes=" + ",".join(f"{i * 2}-{i * 2 + 1}" for i in range(MAX_RANGE_SPECS)),
         [(0, 2 * MAX_RANGE_SPECS - 1)]),  # many, but all touching: one range
    ],
)
def test_several_ranges(header: str, expected: list[tuple[int, int]]) -> None:
    assert parse_ranges(header, 1000) == [ByteRange(a, b, 1000) for a, b in expected]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("bytes=" + ",".join(f"{i * 2}-{i * 2 + 1}" for i in range(MAX_RANGE_SPECS + 1)),
         f"{MAX_RANGE_SPECS + 1} ranges"),
        ("bytes=" + ",".join(f"{i * 100}-{i * 100 + 1}" for i in range(MAX_PARTS + 1)),
         f"{MAX_PARTS + 1} separate ranges"),
        ("bytes=0-100,50-150,60-70", "3 overlapping"),
        ("bytes=0-,0-,0-", "3 overlapping"),
    ],
)
def test_abusive_range_sets_are_refused(header: str, reason: str) -> None:
    with pytest.raises(RangeSetRefused) as info:
        parse_ranges(header, 1000)
    assert reason in info.value.reason and reason in str(info.value)
    assert info.value.status == 416 and info.value.headers == {"Content-Range": "bytes */1000"}


@pytest.mark.parametrize("header", [None, "bytes=0-1,a-b", "bytes=0-1,5-4", "items=0-1,3-4",
                                    "bytes=" + ",".join(["x"] * (MAX_RANGE_SPECS + 1))])
def test_several_ranges_ignored(header: str | None) -> None:
    assert parse_ranges(header, 1000) is None


def test_no_satisfiable_range_in_a_set() -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_ranges("bytes=1000-,2000-3000,-0", 1000)
    assert not isinstance(info.value, RangeSetRefused)


_SPEC = st.one_of(
    st.tuples(st.integers(0, 2**70), st.none() | st.integers(0, 2**70)).map(
        lambda t: f"{t[0]}-{'' if t[1] is None else t[1]}"
    ),
    st.integers(0, 2**70).map(lambda n: f"-{n}"),
)


@settings(max_examples=500)
@given(st.integers(0, 2**64), _SPEC)
def test_any_satisfiable_range_lies_inside_the_object(size: int, spec: str) -> None:
    try:
        result = parse_range(f"bytes={spec}", size)
    except RangeNotSatisfiable as exc:
        assert exc.size == size
        return
    if result is None:  # only an invalid spec (last < first) is ignored
        first, last = spec.split("-")
        assert first and last and int(last) < int(first)
        return
    assert 0 <= result.start <= result.end < size
    assert result.length == result.end - result.start + 1 <= size
    assert re.fullmatch(r"bytes \d+-\d+/\d+", result.content_range)


@given(st.text(max_size=30), st.integers(0, 10_000))
def test_arbitrary_headers_never_crash(header: str, size: int) -> None:
    try:
        result = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    assert result is None or 0 <= result.start <= result.end < size


# -- if_range_allows ---------------------------------------------------------------------

MODIFIED = datetime(2024, 3, 5, 10, 20, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("if_range", "etag", "expected"),
    [
        (None, '"abc"', True),
        ("", '"abc"', True),
        ('"abc"', '"abc"', True),
        (' "abc" ', '"abc"', True),
        ('"abc"', "abc", True),  # a bare etag is compared quoted
        ('"abd"', '"abc"', False),
        ('W/"abc"', '"abc"', False),  # weak tags never match strongly
        ('"abc"', 'W/"abc"', False),
        ('W/"abc"', 'W/"abc"', False),
        ('"abc", "def"', '"abc"', False),  # If-Range carries one validator only
    ],
)
def test_if_range_etag(if_range: str | None, etag: str, expected: bool) -> None:
    assert if_range_allows(if_range, etag, MODIFIED) is expected


@pytest.mark.parametrize(
    ("if_range", "last_modified", "expected"),
    [
        ("Tue, 05 Mar 2024 10:20:30 GMT", MODIFIED, True),
        ("Tuesday, 05-Mar-24 10:20:30 GMT", MODIFIED, True),  # RFC 850 form
        ("Tue Mar  5 10:20:30 2024", MODIFIED, True),  # asctime form
        ("Tue, 05 Mar 2024 10:20:30 GMT", MODIFIED.replace(microsecond=250_000), True),
        ("Tue, 05 Mar 2024 10:20:30 GMT", MODIFIED.replace(tzinfo=None), True),
        ("Tue, 05 Mar 2024 10:20:31 GMT", MODIFIED, False),
        ("Tue, 05 Mar 2024 10:20:29 GMT", MODIFIED, False),
        ("Tue, 05 Mar 2024 10:20:30 GMT", MODIFIED + timedelta(days=1), False),
        ("Tue, 05 Mar 2024 10:20:30 GMT", None, False),
        ("not a date", MODIFIED, False),
        ("Tue, 99 Mar 2024 10:20:30 GMT", MODIFIED, False),
    ],
)
def test_if_range_date(if_range: str, last_modified: datetime | None, expected: bool) -> None:
    assert if_range_allows(if_range, '"abc"', last_modified) is expected


@given(st.text(max_size=40))
def test_if_range_never_crashes(value: str) -> None:
    assert if_range_allows(value, '"abc"', MODIFIED) in (True, False)


# -- content_disposition -----------------------------------------------------------------

_PARAM = re.compile(r'filename="([^"]*)"(?:; filename\*=UTF-8\'\'([A-Za-z0-9!#$&+\-.^_`|~%]*))?$')


def _parse_back(value: str) -> tuple[str, str, str | None]:
    """The disposition, the ASCII fallback, and the decoded ``filename*`` (if any)."""
    disposition, _, params = value.partition("; ")
    match = _PARAM.fullmatch(params)
    assert match is not None, value
    extended = match.group(2)
    return (
        disposition,
        match.group(1),
        None if extended is None else unquote(extended, encoding="utf-8", errors="strict"),
    )


@pytest.mark.parametrize(
    ("filename", "attachment", "expected"),
    [
        ("scan.pdf", False, 'inline; filename="scan.pdf"'),
        ("scan.pdf", True, 'attachment; filename="scan.pdf"'),
        ("my scan (1).pdf", True, 'attachment; filename="my scan (1).pdf"'),
        (
            "résumé.pdf",
            True,
            "attachment; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        ),
        (
            'a"b.pdf',
            False,
            "inline; filename=\"a_b.pdf\"; filename*=UTF-8''a%22b.pdf",
        ),
        (
            "a\r\nSet-Cookie: x=1.pdf",
            True,
            "attachment; filename=\"a__Set-Cookie: x=1.pdf\"; "
            "filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x%3D1.pdf",
        ),
        (
            "Ärztebrief München.pdf",
            True,
            "attachment; filename=\"Arztebrief Munchen.pdf\"; "
            "filename*=UTF-8''%C3%84rztebrief%20M%C3%BCnchen.pdf",
        ),
        (
            "Straße Øre Łódź.pdf",
            True,
            "attachment; filename=\"Strasse Ore Lodz.pdf\"; "
            "filename*=UTF-8''Stra%C3%9Fe%20%C3%98re%20%C5%81%C3%B3d%C5%BA.pdf",
        ),
        (
            "患者.pdf",
            True,
            "attachment; filename=\"file-f1ce5f76.pdf\"; filename*=UTF-8''%E6%82%A3%E8%80%85.pdf",
        ),
        (
            "Befund 患者 Müller.pdf",
            False,
            "inline; filename=\"Befund Muller-d0704045.pdf\"; "
            "filename*=UTF-8''Befund%20%E6%82%A3%E8%80%85%20M%C3%BCller.pdf",
        ),
        ("", True, "attachment; filename=\"download\"; filename*=UTF-8''"),
    ],
)
def test_content_disposition(filename: str, attachment: bool, expected: str) -> None:
    assert content_disposition(filename, attachment=attachment) == expected


@pytest.mark.parametrize("char", ['"', "\\", "/", ";", "%", "\x00", "\x7f", "\x85", "\u202e"])
def test_content_disposition_replaces_unsafe_characters_in_fallback(char: str) -> None:
    _, fallback, extended = _parse_back(content_disposition(f"a{char}b", attachment=True))
    assert fallback == "a_b"
    assert extended == f"a{char}b"


def test_content_disposition_fallbacks_of_untransliterable_names_stay_distinct() -> None:
    names = ["患者.pdf", "診断書.pdf", "検査結果.pdf", "Ελένη.pdf", "Иванов.pdf", "김민준.pdf"]
    fallbacks = [_parse_back(content_disposition(n, attachment=True))[1] for n in names]
    assert len(set(fallbacks)) == len(names)
    assert all(f.startswith("file-") and f.endswith(".pdf") for f in fallbacks)


@pytest.mark.parametrize("name", ["letter\uff0eexe", "letter\u2024exe", "a\ufe52hta", "x\u2025js"])
def test_content_disposition_fallback_never_gains_an_extension(name: str) -> None:
    # Look-alike dots decompose to "."; the fallback must not turn them into a real one.
    _, fallback, extended = _parse_back(content_disposition(name, attachment=True))
    assert "." not in fallback and extended == name


def test_content_disposition_lone_surrogate_does_not_fail() -> None:
    value = content_disposition("a\udc80b", attachment=True)
    assert _parse_back(value)[2] == "a\ufffdb"


@settings(max_examples=500)
@given(st.text(max_size=60), st.booleans())
def test_content_disposition_is_safe_and_round_trips(filename: str, attachment: bool) -> None:
    value = content_disposition(filename, attachment=attachment)
    assert value.isascii()
    assert not any(c in value for c in "\r\n\x00")
    assert all(" " <= c <= "~" for c in value)
    disposition, fallback, extended = _parse_back(value)
    assert disposition == ("attachment" if attachment else "inline")
    assert not any(c in fallback for c in '"\\/;')
    assert (fallback if extended is None else extended) == filename
