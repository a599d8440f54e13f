"""The object encryption format (gateway.envelope) against its specification, docs/format.md."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.crypto import envelope
from gateway.crypto.envelope import (
    HEADER_SIZE,
    TAG_SIZE,
    DecryptionError,
    Decryptor,
    Encryptor,
    ciphertext_size,
    data_key_context,
    decrypt_range,
    decrypt_stream,
    encrypt,
    parse_header,
    plaintext_size,
    plan_range,
    unwrap_key,
    wrap_key,
)

VECTORS = Path(__file__).parent / "vectors"
FAILED = "object failed authentication"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
IDS = {"org_id": "org-1", "object_id": "obj-1"}
SEGMENT_SIZES = st.sampled_from([16, 17, 64])

fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def seal(plaintext: bytes, segment_size: int = 16, key: bytes = KEY, **ids: str) -> bytes:
    return encrypt(key, plaintext, segment_size=segment_size, **(ids or IDS))


def open_all(obj: Iterable[bytes] | bytes, key: bytes = KEY, **ids: str) -> bytes:
    chunks = [obj] if isinstance(obj, bytes) else obj
    return b"".join(decrypt_stream(key, chunks, **(ids or IDS)))


def cut(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` split at the given offsets."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def sealed_segments(obj: bytes, segment_size: int) -> list[bytes]:
    body = obj[HEADER_SIZE:]
    step = segment_size + TAG_SIZE
    return [body[i:i + step] for i in range(0, len(body), step)]


def failure(call: Callable[[], object]) -> DecryptionError:
    with pytest.raises(DecryptionError) as caught:
        result = call()
        if hasattr(result, "__next__"):
            list(result)
    return caught.value


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("segment_size", [16, 64])
def test_every_size_through_several_segments_round_trips(segment_size: int) -> None:
    for size in range(0, 4 * segment_size + 2):
        plaintext = bytes(i % 251 for i in range(size))
        obj = seal(plaintext, segment_size)
        assert len(obj) == ciphertext_size(size, segment_size)
        assert plaintext_size(len(obj), segment_size) == size
        assert open_all(obj) == plaintext


@given(data=st.data(), segment_size=SEGMENT_SIZES)
@fast
def test_round_trip_with_arbitrary_chunking(data: st.DataObject, segment_size: int) -> None:
    plaintext = data.draw(st.binary(max_size=5 * segment_size + 3))
    kind = data.draw(st.sampled_from([bytes, bytearray, memoryview]))
    encryptor = Encryptor(KEY, segment_size=segment_size, **IDS)
    pieces = [encryptor.header]
    for chunk in cut(plaintext, data.draw(st.lists(st.integers(0, len(plaintext)), max_size=6))):
        pieces.append(encryptor.update(kind(chunk)))
    pieces.append(encryptor.finalize())
    obj = b"".join(pieces)
    assert encryptor.plaintext_size == len(plaintext)
    assert encryptor.ciphertext_size == len(obj) == ciphertext_size(len(plaintext), segment_size)

    chunks = cut(obj, data.draw(st.lists(st.integers(0, len(obj)), max_size=8)))
    kind = data.draw(st.sampled_from([bytes, bytearray, memoryview]))
    assert open_all([kind(c) for c in chunks]) == plaintext


def test_byte_by_byte_chunks() -> None:
    plaintext = bytes(range(200))
    obj = seal(plaintext, 64)
    assert open_all([obj[i:i + 1] for i in range(len(obj))]) == plaintext
    decryptor = Decryptor(KEY, obj[:HEADER_SIZE], **IDS)
    plan = plan_range(200, 64, 10, 150)
    body = obj[plan.ciphertext_start:plan.ciphertext_end_inclusive + 1]
    chunks = [body[i:i + 1] for i in range(len(body))]
    assert b"".join(decrypt_range(decryptor, plan, 200, chunks)) == plaintext[10:151]


def test_encrypt_stream_yields_header_then_segments() -> None:
    plaintext = bytes(range(40))
    parts = list(envelope.encrypt_stream(KEY, [plaintext[:7], plaintext[7:]], segment_size=16,
                                         **IDS))
    assert len(parts[0]) == HEADER_SIZE
    assert parse_header(parts[0]).segment_size == 16
    assert open_all(b"".join(parts)) == plaintext


def test_update_holds_back_a_full_segment_until_more_data_follows() -> None:
    encryptor = Encryptor(KEY, segment_size=16, **IDS)
    assert encryptor.update(bytes(16)) == b""
    assert len(encryptor.update(b"x")) == 16 + TAG_SIZE
    assert len(encryptor.finalize()) == 1 + TAG_SIZE


def test_empty_object_is_one_tag_only_segment() -> None:
    encryptor = Encryptor(KEY, segment_size=16, **IDS)
    assert encryptor.update(b"") == b""
    assert len(encryptor.finalize()) == TAG_SIZE
    assert encryptor.ciphertext_size == HEADER_SIZE + TAG_SIZE


def test_encryptor_cannot_be_used_after_finalize() -> None:
    encryptor = Encryptor(KEY, segment_size=16, **IDS)
    encryptor.finalize()
    with pytest.raises(ValueError, match="already finalized"):
        encryptor.update(b"more")
    with pytest.raises(ValueError, match="already finalized"):
        encryptor.finalize()


def test_buffers_the_caller_reuses_are_copied() -> None:
    plaintext = bytes(range(100))
    encryptor = Encryptor(KEY, segment_size=16, **IDS)
    buffer = bytearray(10)
    pieces = [encryptor.header]
    for i in range(0, 100, 10):
        buffer[:] = plaintext[i:i + 10]
        pieces.append(encryptor.update(buffer))
        buffer[:] = bytes(10)  # scribble over it, as a reused read buffer would be
    pieces.append(encryptor.finalize())
    obj = b"".join(pieces)

    def reused_chunks() -> Iterable[bytearray]:
        reused = bytearray(7)
        for i in range(0, len(obj), 7):
            reused[:] = obj[i:i + 7]
            yield reused
            reused[:] = bytes(len(reused))

    assert b"".join(decrypt_stream(KEY, reused_chunks(), **IDS)) == plaintext


def test_fresh_randomness_per_object() -> None:
    first, second = seal(b"same"), seal(b"same")
    assert first[:10] == second[:10]
    assert first != second
    assert parse_header(first).salt != parse_header(second).salt
    assert envelope.new_data_key() != envelope.new_data_key()
    assert len(envelope.new_data_key()) == 32


# --- sizes --------------------------------------------------------------------------------


def test_header_size() -> None:
    assert HEADER_SIZE == 4 + 1 + 1 + 4 + 32 + 7 + 32 == 81


@given(data=st.data(), segment_size=st.integers(16, 16 << 20))
@fast
def test_size_formulas_are_inverse(data: st.DataObject, segment_size: int) -> None:
    size = data.draw(st.integers(0, (2**32 - 1) * segment_size))
    total = ciphertext_size(size, segment_size)
    segments = max(1, -(-size // segment_size))
    assert total == HEADER_SIZE + size + TAG_SIZE * segments
    assert plaintext_size(total, segment_size) == size


@pytest.mark.parametrize(
    "total",
    [
        0,
        HEADER_SIZE + TAG_SIZE - 1,  # no room for a tag
        HEADER_SIZE + 32 + TAG_SIZE,  # a second, empty segment
        HEADER_SIZE + 32 + 5,  # a second segment shorter than a tag
    ],
)
def test_impossible_ciphertext_sizes(total: int) -> None:
    with pytest.raises(DecryptionError, match=f"^{FAILED}$"):
        plaintext_size(total, 16)


def test_largest_object() -> None:
    assert ciphertext_size((2**32 - 1) * 16, 16) > 0
    with pytest.raises(ValueError, match="too large"):
        ciphertext_size((2**32 - 1) * 16 + 1, 16)


# --- tampering ----------------------------------------------------------------------------


@given(data=st.data(), segment_size=SEGMENT_SIZES)
@fast
def test_any_bit_flip_fails(data: st.DataObject, segment_size: int) -> None:
    plaintext = data.draw(st.binary(max_size=3 * segment_size + 5))
    obj = bytearray(seal(plaintext, segment_size))
    bit = data.draw(st.integers(0, 8 * len(obj) - 1))
    obj[bit // 8] ^= 1 << (bit % 8)
    chunks = cut(bytes(obj), data.draw(st.lists(st.integers(0, len(obj)), max_size=4)))
    assert str(failure(lambda: open_all(chunks))) == FAILED


@given(bit=st.integers(0, 8 * HEADER_SIZE - 1))
@fast
def test_any_header_bit_flip_fails_in_the_constructor(bit: int) -> None:
    header = bytearray(seal(b"data")[:HEADER_SIZE])
    header[bit // 8] ^= 1 << (bit % 8)
    failure(lambda: Decryptor(KEY, bytes(header), **IDS))


def test_truncation_at_every_offset_fails() -> None:
    obj = seal(bytes(range(50)), 16)  # segments of 16, 16, 16 and 2 bytes
    for end in range(len(obj)):
        failure(lambda: open_all(obj[:end]))


def test_truncation_at_segment_boundaries_fails() -> None:
    for size in (32, 40, 48):
        obj = seal(bytes(size), 16)
        for count in range(len(sealed_segments(obj, 16))):
            failure(lambda: open_all(obj[:HEADER_SIZE + count * (16 + TAG_SIZE)]))


@pytest.mark.parametrize("extra", [b"\x00", b"garbage", bytes(16), bytes(32 + TAG_SIZE)])
def test_trailing_data_fails(extra: bytes) -> None:
    for size in (0, 5, 16, 40):
        failure(lambda: open_all(seal(bytes(size), 16) + extra))


def test_reordered_and_duplicated_segments_fail() -> None:
    obj = seal(bytes(range(60)), 16)
    header, segments = obj[:HEADER_SIZE], sealed_segments(obj, 16)
    a, b, c, d = segments
    for arrangement in ([b, a, c, d], [a, c, b, d], [a, a, b, c, d], [a, b, c, c, d],
                        [a, b, c], [a, b, d, d], [a, b, c, d, d]):
        failure(lambda: open_all(header + b"".join(arrangement)))


def test_segments_spliced_from_another_object_fail() -> None:
    plaintext = bytes(range(48))
    obj = seal(plaintext)
    same_ids_other_salt = seal(plaintext)
    other_object = seal(plaintext, org_id="org-1", object_id="obj-2")
    for donor in (same_ids_other_salt, other_object):
        for index in range(3):
            segments = sealed_segments(obj, 16)
            segments[index] = sealed_segments(donor, 16)[index]
            failure(lambda: open_all(obj[:HEADER_SIZE] + b"".join(segments)))
        failure(lambda: open_all(donor[:HEADER_SIZE] + obj[HEADER_SIZE:]))


@pytest.mark.parametrize(
    "ids",
    [
        {"org_id": "org-2", "object_id": "obj-1"},
        {"org_id": "org-1", "object_id": "obj-2"},
        {"org_id": "org-1obj-1", "object_id": "x"},  # same concatenation, other split
        {"org_id": "ORG-1", "object_id": "obj-1"},
    ],
)
def test_object_moved_to_another_id_or_organisation_fails(ids: dict[str, str]) -> None:
    obj = seal(b"patient record")
    failure(lambda: Decryptor(KEY, obj[:HEADER_SIZE], **ids))
    failure(lambda: open_all(obj, **ids))


def test_wrong_key_fails_in_the_constructor() -> None:
    obj = seal(b"patient record")
    failure(lambda: Decryptor(OTHER_KEY, obj[:HEADER_SIZE], **IDS))


def test_wrong_key_never_reaches_segment_decryption(monkeypatch: pytest.MonkeyPatch) -> None:
    obj = seal(bytes(100))

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a segment cipher was set up for an uncommitted key")

    monkeypatch.setattr(envelope, "AESGCM", forbidden)
    monkeypatch.setattr(envelope, "Cipher", forbidden)
    failure(lambda: open_all(obj, key=OTHER_KEY))
    failure(lambda: open_all(cut(obj, [10, 90, 130]), key=OTHER_KEY))


@pytest.mark.parametrize("cuts", [[], [HEADER_SIZE + 20]])
def test_never_yields_bytes_of_a_failed_segment(cuts: list[int]) -> None:
    plaintext = bytes(range(48))
    obj = bytearray(seal(plaintext, 16))
    obj[HEADER_SIZE + 32 + 5] ^= 1  # inside the second segment
    delivered = []
    with pytest.raises(DecryptionError):
        for piece in decrypt_stream(KEY, cut(bytes(obj), cuts), **IDS):
            delivered.append(piece)
    assert b"".join(delivered) == plaintext[:16]


def test_decrypt_segment_checks_position_and_last_flag() -> None:
    obj = seal(bytes(range(40)), 16)
    decryptor = Decryptor(KEY, obj[:HEADER_SIZE], **IDS)
    first, second, third = sealed_segments(obj, 16)
    assert decryptor.decrypt_segment(1, second, last=False) == bytes(range(16, 32))
    assert decryptor.decrypt_segment(2, third, last=True) == bytes(range(32, 40))
    failure(lambda: decryptor.decrypt_segment(0, second, last=False))
    failure(lambda: decryptor.decrypt_segment(1, second, last=True))
    failure(lambda: decryptor.decrypt_segment(2, third, last=False))
    failure(lambda: decryptor.decrypt_segment(2**32 - 1, third, last=True))
    with pytest.raises(ValueError):
        decryptor.decrypt_segment(-1, first, last=False)


@pytest.mark.parametrize("data", [b"", b"GWEN", None])
def test_missing_or_short_header_fails(data: bytes | None) -> None:
    obj = seal(b"abc")
    chunks = [] if data is None else [data]
    failure(lambda: open_all(chunks))
    failure(lambda: open_all([obj[:HEADER_SIZE]]))


@pytest.mark.parametrize(
    "offset, value",
    [(0, b"X"), (4, b"\x02"), (5, b"\x02"), (6, b"\x00\x00\x00\x0f"), (6, b"\x01\x00\x00\x01")],
)
def test_parse_header_rejects_unknown_shapes(offset: int, value: bytes) -> None:
    header = bytearray(seal(b"abc")[:HEADER_SIZE])
    header[offset:offset + len(value)] = value
    failure(lambda: parse_header(bytes(header)))


def test_parse_header_reads_the_start_of_an_object() -> None:
    obj = encrypt(KEY, b"abc", segment_size=64, salt=bytes(range(32)),
                  nonce_prefix=bytes(range(7)), **IDS)
    header = parse_header(obj)
    assert (header.version, header.algorithm, header.segment_size) == (1, 1, 64)
    assert header.salt == bytes(range(32))
    assert header.nonce_prefix == bytes(range(7))
    assert header.raw == obj[:HEADER_SIZE]
    assert header.commitment == obj[HEADER_SIZE - 32:HEADER_SIZE]
    failure(lambda: Decryptor(KEY, obj[:HEADER_SIZE + 1], **IDS))


def test_every_failure_has_the_same_message() -> None:
    obj = seal(bytes(40))
    flipped = bytearray(obj)
    flipped[-1] ^= 1
    header = obj[:HEADER_SIZE]
    decryptor = Decryptor(KEY, header, **IDS)
    plan = plan_range(40, 16, 0, 5)
    errors = [
        failure(lambda: Decryptor(OTHER_KEY, header, **IDS)),
        failure(lambda: Decryptor(KEY, header, org_id="org-2", object_id="obj-1")),
        failure(lambda: Decryptor(KEY, b"GWEN" + header[4:], org_id="o", object_id="x")),
        failure(lambda: parse_header(b"nope")),
        failure(lambda: open_all(bytes(flipped))),
        failure(lambda: open_all(obj[:-1])),
        failure(lambda: open_all(obj + b"\x00")),
        failure(lambda: plaintext_size(5, 16)),
        failure(lambda: decryptor.decrypt_segment(0, obj[HEADER_SIZE:], last=True)),
        failure(lambda: decrypt_range(decryptor, plan, 40, [obj[HEADER_SIZE:HEADER_SIZE + 3]])),
    ]
    assert {type(e) for e in errors} == {DecryptionError}
    assert {str(e) for e in errors} == {FAILED}
    assert all(e.__cause__ is None and e.__suppress_context__ for e in errors if e.__context__)


# --- random access ------------------------------------------------------------------------


@given(data=st.data(), segment_size=SEGMENT_SIZES)
@fast
def test_any_range_decrypts_to_exactly_its_slice(data: st.DataObject, segment_size: int) -> None:
    size = data.draw(st.integers(1, 6 * segment_size))
    plaintext = bytes(i % 253 for i in range(size))
    obj = seal(plaintext, segment_size)
    start = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(start, size - 1))
    plan = plan_range(size, segment_size, start, end)

    step = segment_size + TAG_SIZE
    first, last = start // segment_size, end // segment_size
    assert (plan.first_segment, plan.last_segment) == (first, last)
    assert plan.ciphertext_start == HEADER_SIZE + first * step
    assert plan.ciphertext_end_inclusive == min(HEADER_SIZE + (last + 1) * step, len(obj)) - 1
    assert plan.skip == start - first * segment_size
    assert plan.length == end - start + 1
    assert plan.http_range == f"bytes={plan.ciphertext_start}-{plan.ciphertext_end_inclusive}"

    body = obj[plan.ciphertext_start:plan.ciphertext_end_inclusive + 1]
    assert len(body) == plan.ciphertext_length
    chunks = cut(body, data.draw(st.lists(st.integers(0, len(body)), max_size=6)))
    decryptor = Decryptor(KEY, obj[:HEADER_SIZE], **IDS)
    assert b"".join(decrypt_range(decryptor, plan, size, chunks)) == plaintext[start:end + 1]


def test_range_with_missing_extra_or_shifted_bytes_fails() -> None:
    plaintext = bytes(range(100))
    obj = seal(plaintext, 16)
    decryptor = Decryptor(KEY, obj[:HEADER_SIZE], **IDS)
    plan = plan_range(100, 16, 20, 60)
    a, b = plan.ciphertext_start, plan.ciphertext_end_inclusive + 1
    assert b"".join(decrypt_range(decryptor, plan, 100, [obj[a:b]])) == plaintext[20:61]
    for body in (obj[a:b - 1], obj[a:b + 1], obj[a + 1:b + 1], obj[a - 1:b - 1]):
        failure(lambda: decrypt_range(decryptor, plan, 100, [body]))


def test_range_of_a_truncated_object_fails_on_its_last_segment() -> None:
    obj = seal(bytes(64), 16)  # four full segments
    decryptor = Decryptor(KEY, obj[:HEADER_SIZE], **IDS)
    # Cut at a segment boundary and sized from what is left, the object seems to end with
    # segment 2; but segment 2 was not sealed as the last one.
    truncated = obj[:HEADER_SIZE + 3 * (16 + TAG_SIZE)]
    size = plaintext_size(len(truncated), 16)
    assert size == 48
    plan = plan_range(size, 16, 40, 47)
    body = truncated[plan.ciphertext_start:plan.ciphertext_end_inclusive + 1]
    failure(lambda: decrypt_range(decryptor, plan, size, [body]))
    # A range inside the intact part still reads: random access authenticates what it reads.
    plan = plan_range(size, 16, 0, 20)
    body = truncated[plan.ciphertext_start:plan.ciphertext_end_inclusive + 1]
    assert b"".join(decrypt_range(decryptor, plan, 64, [body])) == bytes(21)


def test_range_plan_must_match_the_object() -> None:
    obj = seal(bytes(100), 16)
    decryptor = Decryptor(KEY, obj[:HEADER_SIZE], **IDS)
    with pytest.raises(ValueError, match="does not match"):
        list(decrypt_range(decryptor, plan_range(100, 32, 0, 10), 100, [b""]))
    for start, end in ((-1, 3), (5, 4), (0, 100)):
        with pytest.raises(ValueError):
            plan_range(100, 16, start, end)
    with pytest.raises(ValueError):
        plan_range(0, 16, 0, 0)


def test_segment_span() -> None:
    span = envelope.segment_span(40, 16, 2)
    assert span == envelope.SegmentSpan(
        index=2, plaintext_start=32, plaintext_length=8,
        ciphertext_start=HEADER_SIZE + 2 * 32, ciphertext_length=8 + TAG_SIZE, last=True,
    )
    assert not envelope.segment_span(40, 16, 1).last
    with pytest.raises(ValueError):
        envelope.segment_span(40, 16, 3)


# --- key wrapping -------------------------------------------------------------------------


def test_wrapped_key_round_trips_and_is_bound_to_its_context() -> None:
    kek, dek = bytes(range(32)), envelope.new_data_key()
    context = data_key_context("org-1", "obj-1", 3)
    blob = wrap_key(kek, dek, context)
    assert len(blob) == 12 + 32 + TAG_SIZE
    assert unwrap_key(kek, blob, context) == dek
    assert wrap_key(kek, dek, context) != blob  # fresh nonce each time
    for other in (
        data_key_context("org-2", "obj-1", 3),
        data_key_context("org-1", "obj-2", 3),
        data_key_context("org-1", "obj-1", 4),
        data_key_context("org-1o", "bj-1", 3),
        b"",
    ):
        with pytest.raises(DecryptionError):
            unwrap_key(kek, blob, other)
    with pytest.raises(DecryptionError):
        unwrap_key(bytes(32), blob, context)
    for damaged in (blob[:-1], blob[:28], b"", blob[:12] + bytes([blob[12] ^ 1]) + blob[13:]):
        with pytest.raises(DecryptionError):
            unwrap_key(kek, damaged, context)


def test_data_key_context_is_unambiguous() -> None:
    assert data_key_context("ab", "c", 1) != data_key_context("a", "bc", 1)
    assert data_key_context("a", "b", 1) == (
        b"data-key" + b"\x00\x00\x00\x01a" + b"\x00\x00\x00\x01b" + b"\x00\x00\x00\x01"
    )
    with pytest.raises(ValueError):
        data_key_context("a", "b", -1)
    with pytest.raises(ValueError):
        data_key_context("", "b", 1)


# --- argument checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"data_key": bytes(16)}, "data key must be 32 bytes."),
        ({"segment_size": 15}, "segment size must be between 16 bytes and 16 MiB."),
        ({"segment_size": (16 << 20) + 1}, "segment size must be between 16 bytes and 16 MiB."),
        ({"salt": bytes(31)}, "salt must be 32 bytes."),
        ({"nonce_prefix": bytes(8)}, "nonce prefix must be 7 bytes."),
        ({"object_id": ""}, "object_id must not be empty."),
    ],
)
def test_encryptor_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"data_key": KEY, **IDS, **kwargs}
    data_key = arguments.pop("data_key")
    with pytest.raises(ValueError) as caught:
        Encryptor(data_key, **arguments)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_key_wrap_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^key-encryption key must be 32 bytes\.$"):
        wrap_key(bytes(16), KEY, b"")
    with pytest.raises(ValueError, match=r"^nonce must be 12 bytes\.$"):
        wrap_key(KEY, KEY, b"", nonce=bytes(8))


# --- known answers ------------------------------------------------------------------------


def load_vectors() -> list[dict[str, object]]:
    found = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(VECTORS.glob("*.json"))]
    return [v for v in found if "ciphertext" in v]


@pytest.mark.parametrize("vector", load_vectors(), ids=lambda v: str(v["object_id"]))
def test_known_answer(vector: dict[str, object]) -> None:
    data_key = bytes.fromhex(str(vector["data_key"]))
    ids = {"org_id": str(vector["org_id"]), "object_id": str(vector["object_id"])}
    plaintext = bytes.fromhex(str(vector["plaintext"]))
    expected = bytes.fromhex(str(vector["ciphertext"]))
    obj = encrypt(
        data_key, plaintext, segment_size=int(vector["segment_size"]),  # type: ignore[arg-type]
        salt=bytes.fromhex(str(vector["salt"])),
        nonce_prefix=bytes.fromhex(str(vector["nonce_prefix"])), **ids,
    )
    assert obj.hex() == expected.hex()
    assert obj[:HEADER_SIZE].hex() == vector["header"]
    assert b"".join(decrypt_stream(data_key, [expected], **ids)) == plaintext
    decryptor = Decryptor(data_key, expected[:HEADER_SIZE], **ids)
    for segment in vector["segments"]:  # type: ignore[attr-defined]
        sealed = bytes.fromhex(segment["sealed"])
        index = segment["index"]
        start = index * decryptor.segment_size
        assert decryptor.decrypt_segment(index, sealed, last=segment["last"]) == (
            plaintext[start:start + decryptor.segment_size]
        )


def test_known_answer_vectors_cover_the_required_cases() -> None:
    names = {p.stem for p in VECTORS.glob("*.json")}
    assert {"empty", "one-short-segment", "one-full-segment", "several-segments-last-partial",
            "several-segments-last-full", "key-wrap"} <= names


def test_known_answer_key_wrap() -> None:
    vector = json.loads((VECTORS / "key-wrap.json").read_text(encoding="utf-8"))
    context = data_key_context(vector["org_id"], vector["object_id"], vector["key_version"])
    assert context.hex() == vector["context"]
    kek, key = bytes.fromhex(vector["kek"]), bytes.fromhex(vector["key"])
    wrapped = wrap_key(kek, key, context, nonce=bytes.fromhex(vector["nonce"]))
    assert wrapped.hex() == vector["wrapped"]
    assert unwrap_key(kek, wrapped, context) == key
