"""Object path validation: what is refused, what is accepted, and that acceptance is stable."""
from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.files import (
    CATEGORIES,
    ObjectPath,
    PathError,
    normalize_path,
    normalize_prefix,
    paths,
)


def test_categories() -> None:
    assert CATEGORIES == ("uploads", "documents", "signatures", "templates")


def test_accepts_the_contract_example() -> None:
    result = normalize_path("uploads/forms/201/field_7/scan.pdf")
    assert result == ObjectPath(
        path="uploads/forms/201/field_7/scan.pdf", category="uploads", filename="scan.pdf"
    )
    assert str(result) == "uploads/forms/201/field_7/scan.pdf"


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_with_a_file(category: str) -> None:
    result = normalize_path(f"{category}/x.png")
    assert (result.category, result.filename) == (category, "x.png")


@pytest.mark.parametrize(
    "raw",
    [
        "uploads/Ünïcödé/naïve résumé.pdf",
        "documents/患者/スキャン.pdf",
        "uploads/a b/c (1).jpg",
        "uploads/.hidden",
        "uploads/...",
        "uploads/a..b/c",
        "uploads/emoji/\U0001f468\u200d\u2695\ufe0f.png",  # ZWJ sequence stays allowed
        "signatures/x",
    ],
)
def test_accepts_ordinary_names(raw: str) -> None:
    assert normalize_path(raw).path == unicodedata.normalize("NFC", raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", paths.MSG_EMPTY),
        ("/uploads/a.pdf", paths.MSG_ABSOLUTE),
        ("/", paths.MSG_ABSOLUTE),
        ("uploads/../documents/a.pdf", paths.MSG_DOT_SEGMENT),
        ("uploads/..", paths.MSG_DOT_SEGMENT),
        ("uploads/./a.pdf", paths.MSG_DOT_SEGMENT),
        ("../uploads/a.pdf", paths.MSG_DOT_SEGMENT),
        ("uploads\\a.pdf", paths.MSG_BACKSLASH),
        ("uploads/a\\..\\b.pdf", paths.MSG_BACKSLASH),
        ("uploads/a\x00.pdf", paths.MSG_CONTROL),
        ("uploads/a\n.pdf", paths.MSG_CONTROL),
        ("uploads/a\r.pdf", paths.MSG_CONTROL),
        ("uploads/a\t.pdf", paths.MSG_CONTROL),
        ("uploads/a\x1b[31m.pdf", paths.MSG_CONTROL),
        ("uploads/a\x7f.pdf", paths.MSG_CONTROL),
        ("uploads/a\x85.pdf", paths.MSG_CONTROL),
        ("uploads/a\x9b.pdf", paths.MSG_CONTROL),
        ("uploads/a\u2028.pdf", paths.MSG_CONTROL),
        ("uploads/a\u2029.pdf", paths.MSG_CONTROL),
        ("uploads/invoice\u202efdp.exe", paths.MSG_INVISIBLE),
        ("uploads/a\u202a.pdf", paths.MSG_INVISIBLE),
        ("uploads/a\u202d.pdf", paths.MSG_INVISIBLE),
        ("uploads/a\u2066.pdf", paths.MSG_INVISIBLE),
        ("uploads/a\u2069.pdf", paths.MSG_INVISIBLE),
        ("uploads/a\u200e.pdf", paths.MSG_INVISIBLE),
        ("uploads/sc\u200ban.pdf", paths.MSG_INVISIBLE),
        ("uploads/\ufeffscan.pdf", paths.MSG_INVISIBLE),
        ("uploads/a\ud800.pdf", paths.MSG_INVALID_UNICODE),
        ("uploads/a\uffff.pdf", paths.MSG_INVALID_UNICODE),
        ("uploads/a\ufdd0.pdf", paths.MSG_INVALID_UNICODE),
        ("uploads//a.pdf", paths.MSG_EMPTY_SEGMENT),
        ("uploads/a/", paths.MSG_EMPTY_SEGMENT),
        ("uploads/", paths.MSG_EMPTY_SEGMENT),
        ("uploads", paths.MSG_NO_FILENAME),
        ("templates", paths.MSG_NO_FILENAME),
        ("Uploads/a.pdf", paths.MSG_UNKNOWN_CATEGORY),
        ("other/a.pdf", paths.MSG_UNKNOWN_CATEGORY),
        ("a.pdf", paths.MSG_UNKNOWN_CATEGORY),
        ("uploads/" + "a" * 256, paths.MSG_SEGMENT_TOO_LONG),
        ("uploads/" + "é" * 128, paths.MSG_SEGMENT_TOO_LONG),  # 256 bytes, 128 characters
        ("uploads/" + "/".join(["a" * 200] * 6), paths.MSG_TOO_LONG),
        ("uploads/" + "a" * 100_000, paths.MSG_TOO_LONG),
    ],
)
def test_refuses(raw: str, message: str) -> None:
    with pytest.raises(PathError) as info:
        normalize_path(raw)
    assert info.value.message == message
    assert str(info.value) == message


def test_path_error_is_a_value_error() -> None:
    assert issubclass(PathError, ValueError)


def test_limits_are_inclusive() -> None:
    segment = "a" * 255
    assert normalize_path(f"uploads/{segment}").filename == segment
    assert normalize_path("uploads/" + "é" * 127 + "a").filename == "é" * 127 + "a"
    long_path = "uploads/" + "/".join(["b" * 200] * 5)
    long_path += "/" + "c" * (1024 - len(long_path) - 1)
    assert len(long_path) == 1024
    assert normalize_path(long_path).path == long_path
    with pytest.raises(PathError):
        normalize_path(long_path + "c")


def test_unknown_category_does_not_echo_input() -> None:
    with pytest.raises(PathError) as info:
        normalize_path("<script>/a.pdf")
    assert "<script>" not in info.value.message


def test_nfc_makes_visually_identical_names_one_path() -> None:
    composed = normalize_path("uploads/caf\u00e9.pdf")
    decomposed = normalize_path("uploads/cafe\u0301.pdf")
    assert composed == decomposed
    assert decomposed.filename == "caf\u00e9.pdf"


def test_nfc_length_is_measured_after_normalisation() -> None:
    # Precomposed characters that arrive as 2 code points each; raw length 2017, NFC 1017.
    raw = "uploads/" + "/".join(["e\u0301" * 100] * 10)
    normalized = unicodedata.normalize("NFC", raw)
    assert len(raw) > 1024 >= len(normalized)
    assert normalize_path(raw).path == normalized


def test_refuses_non_str() -> None:
    with pytest.raises(TypeError):
        normalize_path(b"uploads/a.pdf")  # type: ignore[arg-type]


# -- prefixes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("uploads", "uploads"),
        ("uploads/", "uploads/"),
        ("uploads/forms/20", "uploads/forms/20"),
        ("uploads/forms/201/", "uploads/forms/201/"),
        ("documents/cafe\u0301/", "documents/caf\u00e9/"),
    ],
)
def test_prefix_accepts(raw: str, expected: str) -> None:
    assert normalize_prefix(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("/", paths.MSG_ABSOLUTE),
        ("/uploads", paths.MSG_ABSOLUTE),
        ("uploads//", paths.MSG_EMPTY_SEGMENT),
        ("uploads//a", paths.MSG_EMPTY_SEGMENT),
        ("uploads/../", paths.MSG_DOT_SEGMENT),
        ("uploads/./a", paths.MSG_DOT_SEGMENT),
        ("upl", paths.MSG_UNKNOWN_CATEGORY),
        ("other/", paths.MSG_UNKNOWN_CATEGORY),
        ("uploads\\", paths.MSG_BACKSLASH),
        ("uploads/\x00", paths.MSG_CONTROL),
        ("uploads/\u202e", paths.MSG_INVISIBLE),
    ],
)
def test_prefix_refuses(raw: str, message: str) -> None:
    with pytest.raises(PathError) as info:
        normalize_prefix(raw)
    assert info.value.message == message


# -- properties ----------------------------------------------------------------------------

_DANGEROUS = "\x00\x01\x1f\x7f\x80\x9f\\\u202a\u202e\u2066\u2069\u200e\u2028\ufeff"
_FRAGMENTS = st.sampled_from(
    [*CATEGORIES, "/", ".", "..", "a", "é", "e\u0301", "\u212b", "x.pdf", " ", *_DANGEROUS]
)
# Paths assembled from fragments that hit every rule, plus arbitrary text (surrogates included).
_RAW_PATHS = st.one_of(
    st.lists(_FRAGMENTS, max_size=12).map("".join),
    st.text(alphabet=st.characters(), max_size=40),
    st.builds(
        lambda cat, rest: f"{cat}/{rest}",
        st.sampled_from(CATEGORIES),
        st.text(alphabet=st.characters(codec=None), max_size=40),
    ),
)


def _assert_safe(path: str) -> None:
    assert path and not path.startswith("/")
    segments = path.split("/")
    assert ".." not in segments and "." not in segments and "" not in segments[:-1]
    assert "\\" not in path
    assert not any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in path)
    assert not any(c in _DANGEROUS for c in path)
    assert len(path) <= 1024
    assert all(len(s.encode("utf-8")) <= 255 for s in segments)
    assert segments[0] in CATEGORIES
    assert unicodedata.is_normalized("NFC", path)


@settings(max_examples=500)
@given(_RAW_PATHS)
def test_accepted_paths_are_safe_and_stable(raw: str) -> None:
    try:
        result = normalize_path(raw)
    except PathError:
        return
    _assert_safe(result.path)
    assert result.category == result.path.split("/")[0]
    assert result.filename == result.path.split("/")[-1] != ""
    assert normalize_path(result.path) == result


@settings(max_examples=500)
@given(_RAW_PATHS)
def test_accepted_prefixes_are_safe_and_stable(raw: str) -> None:
    try:
        prefix = normalize_prefix(raw)
    except PathError:
        return
    if prefix:
        _assert_safe(prefix)
    assert normalize_prefix(prefix) == prefix


_SEGMENT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cc", "Cs", "Cf", "Zl", "Zp", "Cn", "Co"),
        blacklist_characters="/\\",
    ),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", ".."))


@given(st.sampled_from(CATEGORIES), st.lists(_SEGMENT, min_size=1, max_size=6))
def test_well_formed_paths_are_accepted(category: str, segments: list[str]) -> None:
    raw = "/".join([category, *segments])
    result = normalize_path(raw)
    assert result.path == unicodedata.normalize("NFC", raw)
    assert result.filename == unicodedata.normalize("NFC", segments[-1])
