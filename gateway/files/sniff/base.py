"""What the detectors share: little readers of binary integers and the refusal they return.

Pure functions; no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Refused:
    """A detector's reasoned refusal, for a clearer message than "not an accepted kind".

    :ivar reason: a short fixed code for the audit trail, e.g. ``dicom_preamble``
    :ivar message: one or two sentences for the person uploading, in plain words
    """

    reason: str
    message: str


def u16le(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 2], "little")


def u32le(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 4], "little")


def u32be(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 4], "big")
