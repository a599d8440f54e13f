"""Previews of images a browser cannot show (iPhone HEIC photos, TIFF scans and faxes).

Pure: the file's plaintext in, a PNG or JPEG out, all in memory. Nothing is written to disk
and nothing is cached; the caller bounds the input with :data:`MAX_PREVIEW_BYTES`.
Pillow decodes TIFF; pillow-heif, when installed, adds HEIC/HEIF.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import GatewayError

try:  # HEIC/HEIF support is optional: without it those previews are refused cleanly
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - pillow-heif is in install_requires
    HEIF = False
else:
    register_heif_opener()
    HEIF = True

__all__ = ["HEIF", "MAX_PREVIEW_BYTES", "MAX_SIDE", "PREVIEW_TYPES", "Preview",
           "PreviewError", "needs_preview", "preview"]

#: Largest file a preview is made of (decoding happens in memory).
MAX_PREVIEW_BYTES = 40 * 1024 * 1024
#: Longest side of a preview, in pixels.
MAX_SIDE = 2400
#: Largest decoded image accepted (guards against decompression bombs).
MAX_PIXELS = 120_000_000

PREVIEW_TYPES = frozenset({"image/tiff", "image/heic", "image/heif"})


class PreviewError(GatewayError):
    """No preview can be made of this file (415 ``no_preview``, 413 when too large)."""

    status, code = 415, "no_preview"


class PreviewTooLarge(PreviewError):
    status, code = 413, "too_large"


@dataclass(frozen=True)
class Preview:
    data: bytes
    content_type: str
    page: int  # the page shown (0-based)
    pages: int  # how many pages the file has (multi-page TIFF)


def needs_preview(content_type: str) -> bool:
    """Whether the browser needs a server-made preview to show this type."""
    return content_type in PREVIEW_TYPES


def preview(data: bytes, *, page: int = 0, max_side: int = MAX_SIDE) -> Preview:
    """A PNG (or JPEG, for photos) of ``page`` of the image in ``data``."""
    if len(data) > MAX_PREVIEW_BYTES:
        raise PreviewTooLarge(
            f"the file is larger than {MAX_PREVIEW_BYTES // (1024 * 1024)} MB: download it instead")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise PreviewError("the picture is too large to preview: download it instead")
            pages = getattr(img, "n_frames", 1)
            page = min(max(page, 0), pages - 1)
            if pages > 1:
                img.seek(page)
            frame = ImageOps.exif_transpose(img.copy())
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PreviewError("this file cannot be previewed: download it instead") from exc
    frame.thumbnail((max_side, max_side))
    photo = frame.mode in ("RGB", "YCbCr", "CMYK") and frame.width * frame.height > 250_000
    out = io.BytesIO()
    if photo:
        frame.convert("RGB").save(out, "JPEG", quality=85)
        content_type = "image/jpeg"
    else:
        if frame.mode not in ("1", "L", "LA", "RGB", "RGBA", "P"):
            frame = frame.convert("RGBA")
        frame.save(out, "PNG")
        content_type = "image/png"
    return Preview(out.getvalue(), content_type, page, pages)
