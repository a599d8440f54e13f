"""Files: an organisation's objects, from a request's bytes to the bucket and back.

Rooms: :mod:`.service` (:class:`ObjectService`: authorise, key, encrypt, store, audit; and
back), :mod:`.catalog` (:class:`Catalog`: pages, search, folders, move, trash, versions), :mod:`.downloads` (the plaintext stream of a read), :mod:`.paths` (the path rules),
:mod:`.sniff` (the type from the bytes), :mod:`.ranges` (HTTP ranges), :mod:`.formstream` (the
streaming multipart parser), :mod:`.errors`. ``paths``, ``sniff`` and ``ranges`` are pure.

May import: :mod:`gateway.errors`, :mod:`gateway.principal`, :mod:`gateway.crypto`,
:mod:`gateway.db`, :mod:`gateway.storage`, :mod:`gateway.keys` and :mod:`gateway.audit`
(the service is handed its keyring, store and audit log); werkzeug's sans-I/O multipart
parser; Pillow and pillow-heif (:mod:`.previews`, pictures converted in memory). Never Flask, click or :mod:`gateway.services`.
"""
from .catalog import Catalog, Folder, Page
from .downloads import Download, etag_of
from .errors import (
    BadRange,
    Conflict,
    Forbidden,
    NotFound,
    ObjectError,
    TooLarge,
    UnsupportedType,
)
from .formstream import FormError, FormField, FormFile, FormStream
from .paths import CATEGORIES, ObjectPath, PathError, normalize_path, normalize_prefix
from .ranges import ByteRange, RangeNotSatisfiable, content_disposition
from .service import READ_ROLES, WRITE_ROLES, ObjectService
from .sniff import ALLOWED_TYPES, INLINE_TYPES, SNIFF_BYTES, is_inline

__all__ = [
    "ALLOWED_TYPES", "BadRange", "ByteRange", "CATEGORIES", "Catalog", "Conflict", "Download",
    "Folder", "Page",
    "FormError", "FormField", "FormFile", "FormStream", "Forbidden", "INLINE_TYPES",
    "NotFound", "ObjectError", "ObjectPath", "ObjectService", "PathError", "READ_ROLES",
    "RangeNotSatisfiable", "SNIFF_BYTES", "TooLarge", "UnsupportedType", "WRITE_ROLES",
    "content_disposition", "etag_of", "is_inline", "normalize_path", "normalize_prefix",
]
