"""Throughput of the envelope format against bare AES-256-GCM on the same data.

Run ``python bench/crypto.py [--mib 256] [--repeat 5]``. The plaintext is generated once and
encrypted and decrypted:

* with the format: :class:`gateway.envelope.Encryptor` fed 1 MiB chunks, and
  :func:`gateway.envelope.decrypt_stream` fed the object in 1 MiB chunks (which do not line up
  with segments, as when reading an S3 body);
* raw: one ``AESGCM.encrypt``/``decrypt`` call per MiB, the ceiling the format can reach.

Outputs are counted and dropped as they come, as a streaming upload or download does.

Each measurement is the best of ``--repeat`` runs, the four runs taking turns. The last line
compares the format with the raw baseline.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.crypto import envelope  # noqa: E402

MIB = 1 << 20


def best_seconds(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Return the shortest of ``repeat`` timed calls of each run.

    The runs take turns within each repetition, so that a change in machine load affects
    the format and the raw baseline alike.
    """
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            gc.collect()
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def split(data: bytes, size: int) -> list[bytes]:
    """Cut ``data`` into ``bytes`` chunks of ``size`` (the last may be shorter)."""
    return [data[i:i + size] for i in range(0, len(data), size)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="plaintext size in MiB")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement")
    parser.add_argument(
        "--segment-size", type=int, default=envelope.DEFAULT_SEGMENT_SIZE,
        help="plaintext bytes per segment",
    )
    args = parser.parse_args(argv)

    plaintext_chunks = split(os.urandom(args.mib * MIB), MIB)
    total = args.mib
    data_key = envelope.new_data_key()
    ids = {"org_id": "bench-org", "object_id": "bench-object"}

    def format_encrypt() -> int:
        encryptor = envelope.Encryptor(data_key, segment_size=args.segment_size, **ids)
        written = len(encryptor.header)
        for chunk in plaintext_chunks:
            written += len(encryptor.update(chunk))
        return written + len(encryptor.finalize())

    obj = b"".join(
        envelope.encrypt_stream(
            data_key, plaintext_chunks, segment_size=args.segment_size, **ids
        )
    )
    assert len(obj) == envelope.ciphertext_size(total * MIB, args.segment_size)
    object_chunks = split(obj, MIB)
    del obj

    def format_decrypt() -> int:
        return sum(map(len, envelope.decrypt_stream(data_key, object_chunks, **ids)))

    raw = AESGCM(os.urandom(32))
    nonces = [i.to_bytes(12, "big") for i in range(len(plaintext_chunks))]

    def raw_encrypt() -> int:
        return sum(len(raw.encrypt(n, c, None)) for n, c in zip(nonces, plaintext_chunks))

    raw_chunks = [raw.encrypt(n, c, None) for n, c in zip(nonces, plaintext_chunks)]

    def raw_decrypt() -> int:
        return sum(len(raw.decrypt(n, c, None)) for n, c in zip(nonces, raw_chunks))

    decrypted = envelope.decrypt_stream(data_key, object_chunks, **ids)
    assert b"".join(decrypted) == b"".join(plaintext_chunks)

    runs = {
        "raw encrypt": raw_encrypt,
        "format encrypt": format_encrypt,
        "raw decrypt": raw_decrypt,
        "format decrypt": format_decrypt,
    }
    results = {name: total / seconds for name, seconds in best_seconds(runs, args.repeat).items()}
    for name, rate in results.items():
        print(f"{name:15} {rate:9.0f} MiB/s  ({total} MiB, best of {args.repeat})")

    encrypt_ratio = results["format encrypt"] / results["raw encrypt"]
    decrypt_ratio = results["format decrypt"] / results["raw decrypt"]
    print(f"crypto: format/raw encrypt={encrypt_ratio:.2f} decrypt={decrypt_ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
