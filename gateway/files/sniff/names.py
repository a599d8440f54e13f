"""Whether a file's name agrees with the type its bytes show.

The bytes decide the type; the name decides which program a computer opens the downloaded
file with.  A PDF that is also a web page, stored as ``letter.hta``, is run by Windows as an
application; as ``letter.html`` it opens in a browser, as ``.js`` in the script host, as
``.zip`` in an archive tool that finds a different content.  So a name whose extension
contradicts the detected type is refused (the person uploading renames the file), rather than
silently corrected, which would hand back a file under a name its owner never gave it.

The safer direction is an allowlist: the extension must be one of the type's family (any
picture extension for a picture, any audio or video extension for a recording, ``.doc`` or
``.docx`` or ``.rtf`` for a word-processing document, ...), because the list of extensions
that run something is long and keeps growing (``.hta``, ``.scr``, ``.lnk``, ``.appref-ms``,
``.settingcontent-ms``...).  A name without an extension is accepted: nothing opens it by
itself, and browsers add the type's own extension on download.

The extension is read the way Windows reads it: after compatibility normalisation (a
fullwidth ``．ｅｘｅ`` is ``.exe``), with trailing dots and spaces dropped (``viewer.exe.`` is
``viewer.exe``).  A suffix that no system treats as an extension (one with spaces or
non-ASCII letters, as in ``Brief an Dr. Müller``, or digits only, as in a date
``12.03.2024`` or a DICOM UID) does not count.

Pure functions; no I/O.
"""
from __future__ import annotations

import unicodedata

from .base import Refused
from .kinds import EXTENSIONS, USUAL_EXTENSION, describe

_MAX_SHOWN = 20


def name_extension(filename: str | None) -> str:
    """The extension an operating system reads in ``filename``, lower case, or ``""``."""
    if not filename:
        return ""
    name = unicodedata.normalize("NFKC", filename).replace("\\", "/").rsplit("/", 1)[-1]
    name = name.rstrip(" .")
    _, dot, ext = name.rpartition(".")
    ext = ext.lower()
    if not dot or not ext or not ext.isascii() or ext.isdigit():
        return ""
    if any(char.isspace() for char in ext):
        return ""
    return ext


def name_conflict(mime: str, filename: str | None) -> Refused | None:
    """A refusal when ``filename``'s extension contradicts ``mime``, else ``None``."""
    ext = name_extension(filename)
    if not ext or ext in EXTENSIONS.get(mime, frozenset()):
        return None
    shown = ext if len(ext) <= _MAX_SHOWN else ext[:_MAX_SHOWN] + "..."
    usual = USUAL_EXTENSION.get(mime)
    advice = f" Rename it to end in .{usual} and upload it again." if usual else ""
    return Refused(
        "extension_mismatch",
        f'This file is {describe(mime)}, but its name ends in ".{shown}", which would make a '
        f"computer open it with the wrong program.{advice}",
    )
