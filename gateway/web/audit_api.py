"""``GET /api/v1/audit``: the audit trail for auditors and admins, of their own organisation.

The organisation is always the signed-in user's; no parameter can name another one. Every
query is recorded (``audit_query``, or ``audit_export`` for CSV and JSON lines) before any
event is sent; if that fails the answer is 503 and nothing is served.

Parameters (all optional): ``user`` (id or e-mail), ``object`` (object id), ``path`` (exact,
or a prefix ending in ``*``), ``name`` (a file name, case-insensitive; ``*`` at its end for a
start), ``folder`` (every path under it), ``status`` (an HTTP status), ``outside_hours``
(``1``: a person's access outside the working hours), ``hide_mine`` (``1``: leave out the
caller's own searches and exports), ``count`` (``1``: add the number of matching events), ``action`` and ``outcome`` (comma-separated), ``since``
(inclusive) and ``until`` (exclusive; a date alone includes that day), ``limit``, ``after``
(the cursor of the previous page: the last ``seq`` it held, the organisation's own sequence
number), ``order`` (``asc`` or ``desc``), ``format`` (``json``, ``csv``, ``jsonl``, ``pdf``). Events
are named by ``seq``; the database's global row ids are never sent.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import func, select

from ..audit import (
    MAX_CURSOR,
    PDF_MAX_ROWS,
    Action,
    Outcome,
    bucket_claims,
    count,
    cursor_after,
    event_to_dict,
    folder_prefix,
    format_time,
    iter_query,
    name_condition,
    parse_action,
    parse_outcome,
    parse_time,
    query_page,
    to_csv,
    to_jsonl,
    to_pdf,
    user_condition,
    verify,
    write_anchors,
)
from ..audit.queries import check_path
from ..audit.review import (
    last_verification,
    parse_working_hours,
    review,
    working_intervals,
)
from ..db.models import AuditChainHead, User
from ..errors import GatewayError
from .auth import login_or_token_required, require_roles
from .context import current_actor, services
from .errors import ApiError

bp = Blueprint("audit_api", __name__)

ROLES = ("auditor", "admin")
JSON_LIMIT, JSON_MAX = 100, 1000
EXPORT_LIMIT, EXPORT_MAX = 100_000, 1_000_000
FORMATS = ("json", "csv", "jsonl", "pdf")
#: The review dashboard's default window.
REVIEW_DAYS = 7
#: The most user suggestions one search returns.
USER_SUGGESTIONS = 20


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


@bp.get("/api/v1/audit/folders")
@login_or_token_required
@require_roles(*ROLES)
def folder_history() -> Response:
    """Every access to anything under ``prefix`` (a folder: a patient's or a form's)."""
    prefix = (request.args.get("prefix") or "").strip()
    if not prefix:
        raise _bad("prefix is required: the folder, e.g. patients/12345/")
    return answer(request.args, object_path=folder_prefix(prefix) + "*")


@bp.get("/api/v1/audit/users")
@login_or_token_required
@require_roles(*ROLES)
def user_suggestions() -> Response:
    """Users of the caller's organisation whose e-mail address contains ``q`` (suggestions
    for the user filter; reads no events, so it is not recorded)."""
    actor = _org_actor()
    q = (request.args.get("q") or "").strip().lower()
    if len(q) > 320:
        raise _bad("q must be at most 320 characters")
    stmt = select(User).where(User.org_id == actor.org_id)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(func.lower(User.email).like(pattern, escape="\\"))
    with services().sessions() as session:
        users = list(session.scalars(stmt.order_by(User.email).limit(USER_SUGGESTIONS)))
        body = {"users": [{"id": u.id, "email": u.email, "role": u.role,
                           "active": u.is_active} for u in users]}
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _org_actor() -> Any:
    actor = current_actor()
    if actor.org_id is None:
        raise ApiError(403, "forbidden", "your account belongs to no organisation")
    return actor


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


#: The header of a 400 that names the parameter at fault (a page shows the message there).
FILTER_HEADER = "X-Audit-Filter"


def _checked(name: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, a refusal naming parameter ``name`` in :data:`FILTER_HEADER`."""
    try:
        return fn()
    except GatewayError as exc:
        if exc.status != 400:
            raise
        raise ApiError(400, "bad_request", exc.answer, headers={FILTER_HEADER: name}) from None


def parse_filters(args: Mapping[str, str]) -> dict[str, Any]:
    """The query filters of a request's parameters (400 when one is malformed, its name in
    the :data:`FILTER_HEADER` header)."""
    def text(name: str) -> str | None:
        return (args.get(name) or "").strip() or None

    def user() -> str | None:
        value = text("user")
        if value is not None:
            user_condition(value)  # a malformed user is refused now, not at the query
        return value

    def path() -> str | None:
        value = text("path")
        return None if value is None else check_path(value)

    def name() -> str | None:
        value = text("name")
        if value is not None:
            name_condition(value)  # refused now: folders in a name, or a bare *
        return value

    filters: dict[str, Any] = {
        "user": _checked("user", user),
        "object_id": text("object"),
        "object_path": _checked("path", path),
        "action": _checked("action", lambda: parse_action(args["action"])
                           if text("action") else None),
        "outcome": _checked("outcome", lambda: parse_outcome(args["outcome"])
                            if text("outcome") else None),
        "since": _checked("since", lambda: parse_time(args["since"])
                          if text("since") else None),
        "until": _checked("until", lambda: parse_time(args["until"], end=True)
                          if text("until") else None),
        "name": _checked("name", name),
        "http_status": _checked("status", lambda: _int(args, "status", None, 100, 599)),
    }
    folder = text("folder")
    if folder is not None:
        if filters["object_path"] is not None:
            raise ApiError(400, "bad_request", "give path or folder, not both",
                           headers={FILTER_HEADER: "folder"})
        filters["object_path"] = _checked("folder", lambda: folder_prefix(folder)) + "*"
    filters["outside_hours"] = _checked("outside_hours", lambda: _flag(args, "outside_hours"))
    return filters


def _flag(args: Mapping[str, str], name: str) -> bool:
    raw = (args.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise _bad(f"{name} must be 1 or 0")


def _hours_window(filters: dict[str, Any]) -> list[tuple[datetime, datetime]] | None:
    """The working hours of the filter's window, for ``outside_hours`` (None: not asked)."""
    if not filters.pop("outside_hours", False):
        return None
    if filters["since"] is None:
        raise _bad("outside_hours needs since (and until, default now)")
    settings = services().settings
    until = filters["until"] or datetime.now(timezone.utc)
    return working_intervals(filters["since"], until, parse_working_hours(settings.working_hours),
                             settings.timezone)


def answer(args: Mapping[str, str], **fixed: Any) -> Response:
    """Query the acting user's organisation, record the query, and answer in the format asked."""
    actor = _org_actor()
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
    hide_mine = _flag(args, "hide_mine")
    want_count = _flag(args, "count")
    filters = parse_filters(args)
    filters.update(fixed)
    if filters["since"] and filters["until"] and filters["since"] >= filters["until"]:
        raise ApiError(400, "bad_request", "since must come before until",
                       headers={FILTER_HEADER: "until"})
    outside = _checked("outside_hours", lambda: _hours_window(filters))
    svc = services()
    shown = {k: (format_time(v) if isinstance(v, datetime) else v)
             for k, v in filters.items() if v is not None}
    if outside is not None:
        shown["outside_hours"] = True
    if hide_mine:
        shown["hide_mine"] = True
    scope: dict[str, Any] = dict(filters, org_id=actor.org_id, descending=order == "desc",
                                 outside=outside,
                                 exclude_queries_of=actor.user_id if hide_mine else None)
    detail = {"filters": shown, "format": fmt, "limit": limit, "after": after, "order": order}
    if not export:
        with svc.sessions() as session:
            page = query_page(session, limit=limit or JSON_LIMIT, after=after, **scope)
            total = count(session, **scope) if want_count else None
        svc.audit.record(action=Action.AUDIT_QUERY, outcome=Outcome.SUCCESS, actor=actor,
                         http_status=200, detail=dict(detail, rows=len(page.events)))
        body: dict[str, Any] = {"events": [event_to_dict(e) for e in page.events],
                                "next": page.next}
        if total is not None:
            body["count"] = total
        resp = jsonify(body)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    with svc.sessions() as session:
        next_cursor = cursor_after(session, limit=limit or EXPORT_LIMIT, after=after, **scope)
        total = count(session, after=after, **scope)
    rows = min(total, limit or EXPORT_LIMIT)
    if fmt == "pdf":
        rows = min(rows, PDF_MAX_ROWS)
    svc.audit.record(action=Action.AUDIT_EXPORT, outcome=Outcome.SUCCESS, actor=actor,
                     http_status=200, detail=dict(detail, rows=rows, matching=total))
    name = f"audit.{fmt}"
    if fmt == "pdf":
        events = iter_query(svc.sessions, limit=min(limit or EXPORT_LIMIT, PDF_MAX_ROWS),
                            after=after, **scope)
        data = to_pdf(events, title=_title(fixed, filters), filters=shown,
                      exported_at=format_time(datetime.now(timezone.utc)),
                      exported_by=actor.email or f"user {actor.user_id}",
                      total=min(total, limit or EXPORT_LIMIT))
        resp = Response(data, mimetype="application/pdf")
    else:
        events = iter_query(svc.sessions, limit=limit, after=after, **scope)
        lines: Iterator[str] = to_csv(events) if fmt == "csv" else to_jsonl(events)
        mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
        resp = Response(_encoded(lines), mimetype=mimetype)
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    if next_cursor is not None:
        resp.headers["X-Next-Cursor"] = str(next_cursor)
    return resp


def _title(fixed: dict[str, Any], filters: dict[str, Any]) -> str:
    if "object_id" in fixed:
        return f"Access history of file {fixed['object_id']}"
    if "user" in fixed:
        return f"Activity of user {fixed['user']}"
    if "object_path" in fixed:
        return f"Access to folder {fixed['object_path'].rstrip('*')}"
    return "Audit trail"


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


@bp.get("/api/v1/audit/review")
@login_or_token_required
@require_roles(*ROLES)
def review_items() -> Response:
    """What to look at first over a window (``since``/``until``; default the last 7 days)."""
    actor = _org_actor()
    now = datetime.now(timezone.utc)
    since = parse_time(request.args["since"]) if request.args.get("since", "").strip() \
        else now - timedelta(days=REVIEW_DAYS)
    until = parse_time(request.args["until"], end=True) \
        if request.args.get("until", "").strip() else now
    if since >= until:
        raise _bad("since must come before until")
    svc = services()
    settings = svc.settings
    with svc.sessions() as session:
        items = review(session, org_id=actor.org_id, since=since, until=until,
                       max_files=settings.review_bulk_files,
                       max_bytes=settings.review_bulk_bytes,
                       hours=parse_working_hours(settings.working_hours), tz=settings.timezone)
        last = last_verification(session, actor.org_id)
    window = {"since": format_time(since), "until": format_time(until)}
    svc.audit.record(action=Action.AUDIT_QUERY, outcome=Outcome.SUCCESS, actor=actor,
                     http_status=200, detail={"review": window,
                                              "counts": {i.key: i.count for i in items}})
    body = {
        **window,
        "items": [{"key": i.key, "title": i.title, "count": i.count,
                   "filters": dict(i.filters, **window), "rows": i.rows} for i in items],
        "last_verification": None if last is None else dict(
            last, occurred_at=format_time(last["occurred_at"])),
        "settings": {"bulk_files": settings.review_bulk_files,
                     "bulk_bytes": settings.review_bulk_bytes,
                     "working_hours": settings.working_hours, "timezone": settings.timezone},
    }
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post("/api/v1/audit/verify")
@login_or_token_required
@require_roles(*ROLES)
def verify_now() -> Response:
    """Verify the caller's organisation's chain now (``gateway audit verify --org``), compare
    it with the bucket's anchors, anchor the head when intact, and record ``audit_verify``."""
    actor = _org_actor()
    svc = services()
    chain = actor.org_id
    use_bucket = bool(svc.settings.s3_bucket)
    claims: list[Any] = []
    bucket_problem = None
    if use_bucket:
        try:
            claims = bucket_claims(svc, [chain])
        except GatewayError as exc:  # the storage room's errors
            bucket_problem = f"the bucket's anchors cannot be read: {exc}"
            use_bucket = False
    with svc.sessions() as session:
        report = verify(session, svc.keyring, chain, claims=claims)
        head = session.scalar(select(AuditChainHead.row_hash)
                              .where(AuditChainHead.chain == chain))
    heads = {r.chain: [r.head_seq, head] for r in report.chains if r.ok and r.rows}
    anchors = [c for c in report.claims if c.source.startswith("bucket anchor")]
    written = 0
    if report.ok and use_bucket and heads:
        try:
            written = sum(r.status == "written" for r in write_anchors(svc, list(heads)))
        except GatewayError as exc:  # the storage room's errors
            bucket_problem = f"the head could not be anchored in the bucket: {exc}"
    fault = report.first_fault
    fault_body = None if fault is None else {
        "chain": fault.chain, "seq": fault.seq, "row_id": fault.row_id, "reason": fault.reason}
    svc.audit.record(
        action=Action.AUDIT_VERIFY, outcome=Outcome.SUCCESS if report.ok else Outcome.FAILURE,
        actor=actor, http_status=200,
        detail={"chains": len(report.chains), "rows": report.rows, "org": chain,
                "heads": heads if report.ok else {}, "anchors": len(anchors),
                "anchored": written, "fault": fault_body})
    resp = jsonify({
        "ok": report.ok, "rows": report.rows, "anchors_compared": len(anchors),
        "anchored": written, "bucket_problem": bucket_problem,
        "fault": None if fault is None else {"seq": fault.seq, "reason": fault.reason,
                                             "message": fault.message},
    })
    resp.headers["Cache-Control"] = "no-store"
    return resp
