"""Finding and managing files in the catalog: pages of a folder, search by name, folders,
move and rename, the trash, and earlier versions.

Everything here changes rows only: the ciphertext in the bucket is never touched (a moved
file keeps its storage id, so its bytes still decrypt). Each method is scoped to the actor's
organisation and audited like the object service's.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError

from ..db.models import Role, StoredObject, utcnow
from ..db.prefix import prefix_condition
from ..principal import Actor
from .errors import Conflict, Forbidden, NotFound
from .paths import CATEGORIES, PathError, folded_name, normalize_path, normalize_prefix
from .service import READ_ROLES, WRITE_ROLES, ObjectService

SORTS = {"path": StoredObject.path, "name": StoredObject.name_folded,
         "size": StoredObject.size, "created": StoredObject.created_at}
MAX_PAGE = 1000
DEFAULT_PAGE = 200


class BadQuery(PathError):
    """A malformed listing parameter (400 ``bad_request``)."""

    code = "bad_request"


@dataclass(frozen=True)
class Page:
    objects: list[StoredObject]
    next: str | None  # the cursor of the next page, if there is one


@dataclass(frozen=True)
class Folder:
    name: str  # the folder's own name
    prefix: str  # its whole prefix, ending with "/"
    count: int  # objects anywhere below it


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadQuery("cursor is not one this gateway gave") from None
    if not isinstance(values, list) or len(values) != 2:
        raise BadQuery("cursor is not one this gateway gave")
    return values


class Catalog:
    """The catalog side of the file app (see the module's description).

    :param objects: the object service, whose rules (paths, roles, audit) apply here too.
    """

    def __init__(self, objects: ObjectService) -> None:
        self.objects = objects
        self.sessions = objects.sessions

    def _record(self, actor: Actor, action: str, outcome: str, **kwargs: Any) -> None:
        self.objects._record(actor, action, outcome, **kwargs)

    def _prefix(self, actor: Actor, raw: str, what: str) -> str:
        try:
            return normalize_prefix(raw)
        except PathError as exc:
            self._record(actor, "denied", "denied", path=raw[:1024], status=400,
                         detail={"reason": str(exc), "attempted": what})
            raise

    # -- pages and search ------------------------------------------------------------------

    def page(self, actor: Actor, raw_prefix: str = "", *, q: str | None = None,
             sort: str = "path", order: str = "asc", limit: int = DEFAULT_PAGE,
             cursor: str | None = None, children_only: bool = False) -> Page:
        """A page of the organisation's live objects under ``raw_prefix`` (only those
        directly in it with ``children_only``), optionally those whose name contains ``q``
        (case-insensitive), sorted by ``sort`` (name, size, created; by path if not given)."""
        if sort not in SORTS:
            raise BadQuery("sort must be name, size, created or path")
        if order not in ("asc", "desc"):
            raise BadQuery("order must be asc or desc")
        if not 1 <= limit <= MAX_PAGE:
            raise BadQuery(f"limit must be between 1 and {MAX_PAGE}")
        if q is not None and len(q) > 255:
            raise BadQuery("the search text is too long")
        prefix = self._prefix(actor, raw_prefix, "list")
        self.objects._require_role(actor, READ_ROLES, "list", prefix or None)
        column = SORTS[sort]
        stmt = select(StoredObject).where(StoredObject.org_id == actor.org_id,
                                          StoredObject.deleted_at.is_(None))
        if prefix:
            stmt = stmt.where(prefix_condition(StoredObject.path, prefix))
        if children_only:
            base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
            stmt = stmt.where(~func.substr(StoredObject.path, len(base) + 1).contains("/"))
        if q:
            stmt = stmt.where(StoredObject.name_folded.like(
                f"%{_escape_like(folded_name(q))}%", escape="\\"))
        if cursor:
            value, last_id = _decode_cursor(cursor)
            if sort == "created":
                try:
                    value = datetime.fromisoformat(value)
                except (TypeError, ValueError):
                    raise BadQuery("cursor is not one this gateway gave") from None
            after = column > value if order == "asc" else column < value
            same = and_(column == value,
                        StoredObject.id > last_id if order == "asc" else StoredObject.id < last_id)
            stmt = stmt.where(or_(after, same))
        ordering = (column.asc(), StoredObject.id.asc()) if order == "asc" else \
            (column.desc(), StoredObject.id.desc())
        with self.sessions() as s:
            rows = list(s.scalars(stmt.order_by(*ordering).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = None
        if more:
            last = rows[-1]
            value = getattr(last, {"path": "path", "name": "name_folded", "size": "size",
                                   "created": "created_at"}[sort])
            nxt = encode_cursor([value.isoformat() if sort == "created" else value, last.id])
        self._record(actor, "list", "success", path=prefix or None, status=200,
                     detail={"count": len(rows), **({"q": q} if q else {}), "sort": sort})
        return Page(rows, nxt)

    def folders(self, actor: Actor, raw_prefix: str = "") -> list[Folder]:
        """The folders directly under ``raw_prefix``, with how many objects each holds (at
        the top: the four categories, even when empty)."""
        prefix = self._prefix(actor, raw_prefix, "list")
        self.objects._require_role(actor, READ_ROLES, "list", prefix or None)
        base = prefix if (prefix.endswith("/") or not prefix) else prefix + "/"
        stmt = select(StoredObject.path).where(StoredObject.org_id == actor.org_id,
                                               StoredObject.deleted_at.is_(None))
        if base:
            stmt = stmt.where(prefix_condition(StoredObject.path, base))
        counts: dict[str, int] = {c: 0 for c in CATEGORIES} if not base else {}
        with self.sessions() as s:
            for (path,) in s.execute(stmt):
                rest = path[len(base):]
                if "/" in rest:
                    name = rest.split("/", 1)[0]
                    counts[name] = counts.get(name, 0) + 1
        self._record(actor, "list", "success", path=base or None, status=200,
                     detail={"folders": len(counts)})
        return [Folder(name, base + name + "/", n) for name, n in sorted(counts.items())]

    # -- move ------------------------------------------------------------------------------

    def _may_change(self, actor: Actor, obj: StoredObject, action: str) -> None:
        if actor.role != Role.ADMIN.value and obj.created_by != actor.user_id:
            self._record(actor, action, "denied", obj=obj, status=403,
                         detail={"reason": "only the uploader or an admin may change it"})
            raise Forbidden("only the person who uploaded this file, or an admin, may change it")

    def move(self, actor: Actor, raw_path: str, raw_to: str, *, overwrite: bool = False
             ) -> StoredObject:
        """Rename or move a file within the organisation (metadata only)."""
        obj = self.objects.find(actor, raw_path, "move")
        self.objects._require_role(actor, WRITE_ROLES, "move", obj.path)
        to = self.objects.writable_path(actor, raw_to, "move")
        self._may_change(actor, obj, "move")
        if to.path == obj.path:
            return obj
        # (audit rows are never written while a session is open: SQLite would wait on itself)
        with self.sessions() as s:
            taken = self.objects._live(s, actor.org_id, to.path)
        if taken is not None and not overwrite:
            self._record(actor, "move", "denied", obj=obj, status=409,
                         detail={"reason": "path exists", "to": to.path})
            raise Conflict("a file with this name is already in that folder")
        if taken is not None:
            self._may_change(actor, taken, "move")
        with self.sessions() as s:
            if taken is not None:
                taken = s.get(StoredObject, taken.id)
                assert taken is not None
                taken.deleted_at, taken.deleted_by = utcnow(), actor.user_id
                taken.replaced_by = obj.id
                s.flush()
            row = s.get(StoredObject, obj.id)
            assert row is not None
            row.path, row.name_folded = to.path, folded_name(to.filename)
            try:
                s.commit()
            except IntegrityError:
                raise Conflict("a file with this name was stored there at the same time") from None
            s.refresh(row)
            s.expunge(row)
        self._record(actor, "move", "success", obj=row, status=200,
                     detail={"from": obj.path, "to": to.path})
        return row

    # -- trash -----------------------------------------------------------------------------

    def _trash_filter(self, actor: Actor) -> Any:
        cond = and_(StoredObject.org_id == actor.org_id, StoredObject.deleted_at.is_not(None),
                    StoredObject.replaced_by.is_(None))
        if actor.role != Role.ADMIN.value:
            cond = and_(cond, StoredObject.created_by == actor.user_id)
        return cond

    def trash(self, actor: Actor, *, limit: int = MAX_PAGE) -> list[StoredObject]:
        """Deleted files (all of the organisation's for an admin, one's own otherwise)."""
        self.objects._require_role(actor, WRITE_ROLES, "list", None)
        with self.sessions() as s:
            rows = list(s.scalars(select(StoredObject).where(self._trash_filter(actor))
                                  .order_by(StoredObject.deleted_at.desc()).limit(limit)))
        self._record(actor, "list", "success", status=200,
                     detail={"what": "trash", "count": len(rows)})
        return rows

    def restore(self, actor: Actor, object_id: str) -> StoredObject:
        """Bring a deleted file back to its path (409 if another file lives there now)."""
        self.objects._require_role(actor, WRITE_ROLES, "restore", None)
        with self.sessions() as s:
            row = s.scalar(select(StoredObject).where(
                StoredObject.id == object_id[:32], self._trash_filter(actor)))
            taken = row is not None and self.objects._live(s, row.org_id, row.path) is not None
        if row is None:
            self._record(actor, "restore", "failure", status=404,
                         detail={"reason": "not in the trash", "object_id": object_id[:64]})
            raise NotFound("no such file in the trash")
        if taken:
            self._record(actor, "restore", "denied", obj=row, status=409,
                         detail={"reason": "path taken"})
            raise Conflict("another file now has this name in this folder")
        with self.sessions() as s:
            fresh = s.get(StoredObject, row.id)
            assert fresh is not None
            fresh.deleted_at = fresh.deleted_by = fresh.replaced_by = None
            try:
                s.commit()
            except IntegrityError:
                raise Conflict("another file now has this name in this folder") from None
            s.refresh(fresh)
            s.expunge(fresh)
        self._record(actor, "restore", "success", obj=fresh, status=200, detail={"from": "trash"})
        return fresh

    # -- versions --------------------------------------------------------------------------

    def versions(self, actor: Actor, raw_path: str) -> list[StoredObject]:
        """Earlier versions of a path (replaced by an overwrite), newest first."""
        path = normalize_path(raw_path)
        current = self.objects.find(actor, path.path, "list")
        with self.sessions() as s:
            rows = list(s.scalars(select(StoredObject).where(
                StoredObject.org_id == actor.org_id, StoredObject.path == path.path,
                StoredObject.replaced_by.is_not(None)).order_by(StoredObject.deleted_at.desc())))
        self._record(actor, "list", "success", obj=current, status=200,
                     detail={"what": "versions", "count": len(rows)})
        return rows

    def restore_version(self, actor: Actor, raw_path: str, version_id: str) -> StoredObject:
        """Make an earlier version the current one; the current one becomes a version."""
        current = self.objects.find(actor, raw_path, "restore")
        self.objects._require_role(actor, WRITE_ROLES, "restore", current.path)
        self._may_change(actor, current, "restore")
        with self.sessions() as s:
            found = s.scalar(select(StoredObject.id).where(
                StoredObject.id == version_id[:32], StoredObject.org_id == actor.org_id,
                StoredObject.path == current.path, StoredObject.replaced_by.is_not(None)))
        if found is None:
            self._record(actor, "restore", "failure", obj=current, status=404,
                         detail={"reason": "no such version", "version": version_id[:64]})
            raise NotFound("no such earlier version of this file")
        with self.sessions() as s:
            old = s.get(StoredObject, found)
            assert old is not None
            live = s.get(StoredObject, current.id)
            assert live is not None
            live.deleted_at, live.deleted_by, live.replaced_by = utcnow(), actor.user_id, old.id
            s.flush()
            old.deleted_at = old.deleted_by = old.replaced_by = None
            s.commit()
            s.refresh(old)
            s.expunge(old)
        self._record(actor, "restore", "success", obj=old, status=200,
                     detail={"from": "version", "replaced": current.id})
        return old
