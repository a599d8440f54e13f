"""``GET /api/v1/audit``: the audit trail for auditors and admins, of their own organisation.

The organisation is always the signed-in user's; no parameter can name another one. Every
query is recorded (``audit_query``, or ``audit_export`` for CSV and JSON lines) before any
event is sent; if that fails the answer is 503 and nothing is served.

Parameters (all optional): ``user`` (id or e-mail), ``object`` (object id), ``path`` (exact,
or a prefix ending in ``*``), ``action`` and ``outcome`` (comma-separated), ``since``
(inclusive) and ``until`` (exclusive; a date alone includes that day), ``limit``, ``after``
(the cursor of the previous page: the last ``seq`` it held, the organisation's own sequence
number), ``order`` (``asc`` or ``desc``), ``format`` (``json``, ``csv``, ``jsonl``). Events
are named by ``seq``; the database's global row ids are never sent.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, Mapping

from flask import Blueprint, Response, jsonify, request

from ..audit import (
    MAX_CURSOR,
    Action,
    Outcome,
    cursor_after,
    event_to_dict,
    format_time,
    iter_query,
    parse_action,
    parse_outcome,
    parse_time,
    query_page,
    to_csv,
    to_jsonl,
    user_condition,
)
from .auth import login_or_token_required, require_roles
from .context import current_actor, services
from .errors import ApiError

bp = Blueprint("audit_api", __name__)

ROLES = ("auditor", "admin")
JSON_LIMIT, JSON_MAX = 100, 1000
EXPORT_LIMIT, EXPORT_MAX = 100_000, 1_000_000
FORMATS = ("json", "csv", "jsonl")


@bp.get("/api/v1/audit")
@login_or_token_required
@require_roles(*ROLES)
def list_events() -> Response:
    return answer(request.args)


@bp.get("/api/v1/audit/objects/<object_id>")
@login_or_token_required
@require_roles(*ROLES)
def object_history(object_id: str) -> Response:
    return answer(request.args, object_id=object_id)


@bp.get("/api/v1/audit/users/<user_id>")
@login_or_token_required
@require_roles(*ROLES)
def user_history(user_id: str) -> Response:
    if not (user_id.isascii() and user_id.isdigit()):
        raise _bad("the user id must be a whole number")
    user_condition(user_id)  # an id out of range is a FilterError (400)
    return answer(request.args, user=int(user_id))


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def _int(args: Mapping[str, str], name: str, default: int | None, low: int,
         high: int | None = None) -> int | None:
    raw = args.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name} must be a whole number") from None
    if value < low or (high is not None and value > high):
        raise _bad(f"{name} must be between {low} and {high}" if high else
                   f"{name} must be at least {low}")
    return value


def parse_filters(args: Mapping[str, str]) -> dict[str, Any]:
    """The query filters of a request's parameters (:class:`~gateway.audit.FilterError`, 400,
    when one is malformed)."""
    def text(name: str) -> str | None:
        return (args.get(name) or "").strip() or None

    filters: dict[str, Any] = {
        "user": text("user"),
        "object_id": text("object"),
        "object_path": text("path"),
        "action": parse_action(args["action"]) if text("action") else None,
        "outcome": parse_outcome(args["outcome"]) if text("outcome") else None,
        "since": parse_time(args["since"]) if text("since") else None,
        "until": parse_time(args["until"], end=True) if text("until") else None,
    }
    if filters["user"] is not None:
        user_condition(filters["user"])  # a malformed user is refused now, not at the query
    return filters


def answer(args: Mapping[str, str], **fixed: Any) -> Response:
    """Query the acting user's organisation, record the query, and answer in the format asked."""
    actor = current_actor()
    if actor.org_id is None:
        raise ApiError(403, "forbidden", "your account belongs to no organisation")
    fmt = (args.get("format") or "json").strip().lower()
    if fmt not in FORMATS:
        raise _bad(f"format must be one of: {', '.join(FORMATS)}")
    export = fmt != "json"
    order = (args.get("order") or ("asc" if export else "desc")).strip().lower()
    if order not in ("asc", "desc"):
        raise _bad("order must be asc or desc")
    limit = _int(args, "limit", EXPORT_LIMIT if export else JSON_LIMIT, 1,
                 EXPORT_MAX if export else JSON_MAX)
    after = _int(args, "after", None, 0, MAX_CURSOR)
    filters = parse_filters(args)
    filters.update(fixed)
    if filters["since"] and filters["until"] and filters["since"] >= filters["until"]:
        raise _bad("since must come before until")
    svc = services()
    scope: dict[str, Any] = dict(filters, org_id=actor.org_id, descending=order == "desc")
    detail = {
        "filters": {k: (format_time(v) if isinstance(v, datetime) else v)
                    for k, v in filters.items() if v is not None},
        "format": fmt, "limit": limit, "after": after, "order": order,
    }
    if not export:
        with svc.sessions() as session:
            page = query_page(session, limit=limit or JSON_LIMIT, after=after, **scope)
        svc.audit.record(action=Action.AUDIT_QUERY, outcome=Outcome.SUCCESS, actor=actor,
                         http_status=200, detail=dict(detail, rows=len(page.events)))
        resp = jsonify({"events": [event_to_dict(e) for e in page.events], "next": page.next})
        resp.headers["Cache-Control"] = "no-store"
        return resp

    with svc.sessions() as session:
        next_cursor = cursor_after(session, limit=limit or EXPORT_LIMIT, after=after, **scope)
    svc.audit.record(action=Action.AUDIT_EXPORT, outcome=Outcome.SUCCESS, actor=actor,
                     http_status=200, detail=detail)
    events = iter_query(svc.sessions, limit=limit, after=after, **scope)
    lines: Iterator[str] = to_csv(events) if fmt == "csv" else to_jsonl(events)
    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    resp = Response(_encoded(lines), mimetype=mimetype)
    resp.headers["Content-Disposition"] = f'attachment; filename="audit.{fmt}"'
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    if next_cursor is not None:
        resp.headers["X-Next-Cursor"] = str(next_cursor)
    return resp


def _encoded(lines: Iterator[str]) -> Iterator[bytes]:
    """Lines gathered into chunks of about 64 KiB."""
    buffer: list[str] = []
    size = 0
    for line in lines:
        buffer.append(line)
        size += len(line)
        if size >= 65536:
            yield "".join(buffer).encode("utf-8")
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode("utf-8")
