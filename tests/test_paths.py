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
        "uploads/..a",
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


def _saveable_on_windows(segment: str) -> bool:
    """What Windows can save: no trailing dot or space, no device name, an extension (if
    any) in ordinary characters."""
    nfc = unicodedata.normalize("NFC", segment)
    stem, _, ext = nfc.rpartition(".")
    return (
        not nfc.endswith((".", " "))
        and nfc.split(".", 1)[0].rstrip(" ").upper() not in paths._RESERVED_NAMES
        and (not stem or unicodedata.normalize("NFKC", ext) == ext)
    )


_SEGMENT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cc", "Cs", "Cf", "Zl", "Zp", "Cn", "Co"),
        blacklist_characters='/\\<>:"|?*' + "".join(paths._LOOKALIKE_DOTS),
    ),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", "..") and _saveable_on_windows(s))


@given(st.sampled_from(CATEGORIES), st.lists(_SEGMENT, min_size=1, max_size=6))
def test_well_formed_paths_are_accepted(category: str, segments: list[str]) -> None:
    raw = "/".join([category, *segments])
    result = normalize_path(raw)
    assert result.path == unicodedata.normalize("NFC", raw)
    assert result.filename == unicodedata.normalize("NFC", segments[-1])


# -- names Windows cannot save, and look-alike names --------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("uploads/CON.pdf", paths.MSG_RESERVED_NAME),
        ("uploads/con", paths.MSG_RESERVED_NAME),
        ("uploads/Nul.tar.gz", paths.MSG_RESERVED_NAME),
        ("uploads/aux .pdf", paths.MSG_RESERVED_NAME),
        ("uploads/PRN/scan.pdf", paths.MSG_RESERVED_NAME),  # folders too
        ("uploads/COM1.txt", paths.MSG_RESERVED_NAME),
        ("uploads/lpt9", paths.MSG_RESERVED_NAME),
        ("uploads/COM\u00b9.pdf", paths.MSG_RESERVED_NAME),  # superscript one
        ("uploads/CONIN$.pdf", paths.MSG_RESERVED_NAME),
        ("uploads/scan.pdf.", paths.MSG_TRAILING_DOT_SPACE),
        ("uploads/scan.pdf ", paths.MSG_TRAILING_DOT_SPACE),
        ("uploads/...", paths.MSG_TRAILING_DOT_SPACE),
        ("uploads/folder./scan.pdf", paths.MSG_TRAILING_DOT_SPACE),
        ("uploads/folder /scan.pdf", paths.MSG_TRAILING_DOT_SPACE),
        ("uploads/scan.pdf::$DATA", paths.MSG_WINDOWS_CHAR),
        ("uploads/scan.pdf:secret", paths.MSG_WINDOWS_CHAR),
        ("uploads/C:/scan.pdf", paths.MSG_WINDOWS_CHAR),
        ("uploads/a<b.pdf", paths.MSG_WINDOWS_CHAR),
        ("uploads/a>b.pdf", paths.MSG_WINDOWS_CHAR),
        ('uploads/a"b.pdf', paths.MSG_WINDOWS_CHAR),
        ("uploads/a|b.pdf", paths.MSG_WINDOWS_CHAR),
        ("uploads/a?b.pdf", paths.MSG_WINDOWS_CHAR),
        ("uploads/a*.pdf", paths.MSG_WINDOWS_CHAR),
        ("uploads/scan\uff0epdf", paths.MSG_LOOKALIKE_DOT),  # fullwidth full stop
        ("uploads/invoice.pdf\uff0eexe", paths.MSG_LOOKALIKE_DOT),
        ("uploads/scan\u2024pdf", paths.MSG_LOOKALIKE_DOT),  # one dot leader
        ("uploads/scan\ufe52pdf", paths.MSG_LOOKALIKE_DOT),  # small full stop
        ("uploads/scan\uff0e\uff50\uff44\uff46", paths.MSG_LOOKALIKE_DOT),
        ("uploads/scan.\uff50\uff44\uff46", paths.MSG_LOOKALIKE_EXTENSION),  # fullwidth pdf
        ("uploads/scan.\ufb01le", paths.MSG_LOOKALIKE_EXTENSION),  # the "fi" ligature
        ("uploads/a\x01.pdf", paths.MSG_CONTROL),
        ("uploads/a\x1f.pdf", paths.MSG_CONTROL),
    ],
)
def test_refuses_names_windows_cannot_save_or_that_disguise_their_extension(
        raw: str, message: str) -> None:
    with pytest.raises(PathError) as info:
        normalize_path(raw)
    assert info.value.message == message


@pytest.mark.parametrize(
    "raw",
    [
        "uploads/console.pdf", "uploads/CONTRACT.pdf", "uploads/com10.txt", "uploads/lpt.txt",
        "uploads/nul-results.pdf", "uploads/a.b.c.pdf", "uploads/ leading space.pdf",
        "documents/\u5831\u544a\u66f8\uff0e\u6700\u7d42.pdf",  # fullwidth dot inside Japanese
        "uploads/\u0441\u043a\u0430\u043d.pdf",  # a Cyrillic name is a name
        "uploads/Stra\u00dfe.pdf",
    ],
)
def test_accepts_names_windows_can_save(raw: str) -> None:
    assert normalize_path(raw).path == raw


def test_prefixes_may_name_the_start_of_a_reserved_word() -> None:
    """Listing prefixes are partial names: ``uploads/con`` lists ``uploads/contracts/``."""
    assert normalize_prefix("uploads/con") == "uploads/con"


def test_decode_utf8_refuses_what_is_not_utf8() -> None:
    assert paths.decode_utf8("uploads/caf\u00e9.pdf".encode()) == "uploads/caf\u00e9.pdf"
    for raw in (b"uploads/a\xff.pdf", b"uploads/a\xc3.pdf", b"uploads/\xed\xa0\x80.pdf",
                b"uploads/\xc0\xaf.pdf"):  # bad byte, truncated, surrogate, overlong '/'
        with pytest.raises(PathError) as info:
            paths.decode_utf8(raw)
        assert info.value.message == paths.MSG_INVALID_UTF8


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("scan.pdf", "Scan.PDF"),
        ("scan.pdf", "sc\u0430n.pdf"),  # Cyrillic a
        ("report.pdf", "r\u0435p\u043ert.pdf"),  # Cyrillic e and o
        ("scan.pdf", "\uff53\uff43\uff41\uff4e.pdf"),  # fullwidth letters
        ("scan.pdf", "scan\uff0epdf"),  # fullwidth dot
        ("scan.pdf", "scan.pdf."),  # Windows drops trailing dots
        ("scan.pdf", "scan.pdf "),
        ("invoice_2024.pdf", "invoice-2024.pdf"),
        ("invoice-2024.pdf", "invoice\u20132024.pdf"),  # en dash
        ("logo.png", "l0go.png"),  # zero for o
        ("bill.pdf", "biII.pdf"),  # capital i for l
        ("modern.pdf", "rnodern.pdf"),  # r n for m
        ("caf\u00e9.pdf", "cafe\u0301.pdf"),
        ("scan.pdf", "sc\u00adan.pdf"),  # soft hyphen
    ],
)
def test_confusable_names_share_a_key(a: str, b: str) -> None:
    assert paths.confusable_key(a) == paths.confusable_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [("scan.pdf", "scan2.pdf"), ("scan.pdf", "scan.png"), ("a.pdf", "b.pdf"),
     ("\u60a3\u8005.pdf", "\u60a3\u8005\u0031.pdf"), ("report.pdf", "reports.pdf")],
)
def test_different_names_have_different_keys(a: str, b: str) -> None:
    assert paths.confusable_key(a) != paths.confusable_key(b)


@given(_SEGMENT)
def test_confusable_key_is_stable(name: str) -> None:
    key = paths.confusable_key(name)
    assert paths.confusable_key(key) == key
