"""Sign-in, sign-out, bearer tokens, idle logout, CSRF and sign-in throttling.

Libraries: Flask-Login (sessions), Flask-WTF (CSRF on every form and on session-authenticated
API writes), Flask-Limiter (sign-in throttling), argon2-cffi (password hashes, in
:mod:`gateway.accounts`, which also holds the session rows and token checks).
"""
from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, TypeVar
from urllib.parse import unquote, unquote_to_bytes

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError, CSRFProtect, validate_csrf
from limits import parse as parse_limit
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length, ValidationError

from ..accounts import (
    end_browser_session,
    hash_token,
    session_user,
    sign_in,
    throttle,
    token_user,
)
from ..db.models import ApiToken, Organisation, User, utcnow
from ..files import PathError
from ..files.paths import decode_utf8
from ..principal import Actor
from .context import anonymous_actor, current_actor, route, services
from .errors import ApiError, error_response

F = TypeVar("F", bound=Callable[..., Any])

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, storage_uri=f"{throttle.SCHEME}://",
                  default_limits=[])
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class SignedInUser:
    """The authenticated user of a request: a snapshot, holding no database session."""

    id: int
    org_id: str
    org_name: str
    email: str
    role: str
    active: bool = True
    via_token: bool = False

    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        return str(self.id)


def _snapshot(user: User, org: Organisation, *, via_token: bool = False) -> SignedInUser:
    return SignedInUser(
        id=user.id, org_id=user.org_id, org_name=org.name, email=user.email, role=user.role,
        active=user.is_active, via_token=via_token,
    )


def _end_browser_session(sid: str | None) -> None:
    end_browser_session(services().sessions, sid)


@login_manager.user_loader
def _load_user(user_id: str) -> SignedInUser | None:
    # The cookie names the user and a session id: both must match a session that has not
    # ended, so a cookie copied before the sign-out signs nobody in afterwards.
    sid = session.get("sid")
    if not isinstance(sid, str) or not sid:
        return None
    found = session_user(services().sessions, int(user_id), sid)
    return _snapshot(*found) if found else None


@login_manager.request_loader
def _load_user_from_bearer(req) -> SignedInUser | None:  # type: ignore[no-untyped-def]
    header = req.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    found = token_user(services().sessions, token.strip())
    if found is None:
        _audit_bad_token(token.strip())
        return None
    return _snapshot(*found, via_token=True)


def _audit_bad_token(token: str) -> None:
    """A ``denied`` row for a bearer token that authenticates nobody.

    A token the gateway issued (revoked, expired, or its user deactivated) is recorded in its
    organisation's chain, naming the user; an unknown one in the system chain, within the
    per-address budget of :func:`audit_refusal`.
    """
    with services().sessions() as s:
        row = s.execute(select(ApiToken, User).join(User, ApiToken.user_id == User.id)
                        .where(ApiToken.token_hash == hash_token(token))).first()
    if row is None:
        audit_refusal("unknown bearer token", 401, actor=anonymous_actor())
        return
    api_token, user = row
    if api_token.revoked_at is not None:
        reason = "revoked bearer token"
    elif api_token.expires_at is not None and api_token.expires_at <= utcnow():
        reason = "expired bearer token"
    else:
        reason = "bearer token of a deactivated user"
    audit_refusal(reason, 401, actor=anonymous_actor(org_id=user.org_id, email=user.email),
                  user_id=user.id, role=user.role)


@login_manager.unauthorized_handler
def _unauthorized():  # type: ignore[no-untyped-def]
    if request.path.startswith("/api/"):
        raise ApiError(401, "unauthorized", "sign in or send an Authorization: Bearer token")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def token_authenticated() -> bool:
    """Whether a valid bearer token (not a cookie) authenticated this request: only then is
    there no CSRF risk. A mere ``Authorization`` header proves nothing."""
    return bool(getattr(current_user, "via_token", False)) and current_user.is_authenticated


def login_required_api(fn: F) -> F:
    """The request must come from a signed-in user or carry a valid bearer token."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
        if not token_authenticated() and request.method not in SAFE_METHODS:
            _check_csrf_header()
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


login_or_token_required = login_required_api


def _check_csrf_header() -> None:
    """CSRF check for cookie-authenticated API writes, from the ``X-CSRFToken`` header only.

    Never from the form: reading ``request.form`` would make Werkzeug parse (and spool to
    disk) the very upload body that must stream to the encryptor.
    """
    token = request.headers.get("X-CSRFToken") or request.headers.get("X-CSRF-Token")
    try:
        validate_csrf(token)
    except ValidationError as exc:
        audit_refusal(f"CSRF check failed: {exc}", 400, actor=current_actor(),
                      authenticated=current_user.is_authenticated)
        raise ApiError(400, "csrf_failed",
                       "missing or invalid CSRF token: send it in the X-CSRFToken header") from None


def require_roles(*roles: str) -> Callable[[F], F]:
    """The authenticated user must hold one of ``roles`` (403 otherwise)."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        @login_required_api
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in roles:
                _audit_denied(f"role {current_user.role} may not {request.method} {request.path}")
                raise ApiError(403, "forbidden", "your role does not allow this")
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


#: Unauthenticated refusals are audited, but an anonymous client could otherwise make the
#: gateway write audit rows as fast as it can send requests (each one a commit on the system
#: chain's head). Each process records at most this many per client address and minute, and
#: at most ALL_ANONYMOUS_REFUSALS from all addresses together (many addresses, one attacker);
#: the throttle's own refusals (429) once per address, limit and minute.
ANONYMOUS_REFUSAL_BUDGET = "20/minute"
ALL_ANONYMOUS_REFUSALS = "600/minute"
THROTTLED_REFUSAL_BUDGET = "1/minute"
_budget = FixedWindowRateLimiter(MemoryStorage())


def audit_refusal(reason: str, status: int, *, actor: Actor | None = None,
                  user_id: int | None = None, role: str | None = None,
                  authenticated: bool | None = None,
                  budget: str | None = ANONYMOUS_REFUSAL_BUDGET,
                  budget_key: str = "", action: str = "denied",
                  object_path: str | None = None) -> bool:
    """Record a ``denied`` row (``action``, by default ``denied``) for a refused request;
    returns whether it was recorded.

    ``actor`` defaults to the request's (anonymous unless signed in); ``user_id`` and ``role``
    name the user a refused credential belongs to. Refusals of an authenticated request are
    always recorded, in the user's organisation's chain; unauthenticated ones are limited by
    ``budget`` per client address (``None``: always recorded).
    """
    if actor is None:
        actor = current_actor()
        if authenticated is None:
            authenticated = actor.user_id is not None
    if user_id is not None or role is not None:
        actor = replace(actor, user_id=user_id, role=role)
    if budget is not None and not authenticated:
        key = ("audit-refusal", budget_key, actor.client_addr or "-")
        if not _budget.test(parse_limit(ALL_ANONYMOUS_REFUSALS), "audit-refusal-all"):
            return False
        if not _budget.hit(parse_limit(budget), *key):
            return False
        _budget.hit(parse_limit(ALL_ANONYMOUS_REFUSALS), "audit-refusal-all")
    services().audit.record(action=action, outcome="denied", actor=actor, http_status=status,
                            object_path=object_path,
                            detail={"reason": reason, "route": route()})
    return True


def _refuse_undecodable() -> None:
    """A path or query that is not UTF-8 is refused (400), never read with U+FFFD in place of
    its bad bytes (Werkzeug's default), which would make ``a%ff.pdf`` and ``a%fe.pdf`` one
    name. The WSGI server hands the percent-decoded path over as bytes in latin-1."""
    environ = request.environ
    try:
        decode_utf8(environ.get("PATH_INFO", "").encode("latin-1"))
    except UnicodeEncodeError:
        pass  # a server that decoded the path itself: nothing left to check
    except PathError as exc:
        audit_refusal(exc.message, 400, object_path=request.path[:1024])
        raise
    query = environ.get("QUERY_STRING", "")
    try:
        unquote_to_bytes(query.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        audit_refusal("query string is not valid UTF-8", 400)
        raise ApiError(400, "bad_request", "the query string is not valid UTF-8") from None


def _too_large(exc: RequestEntityTooLarge):  # type: ignore[no-untyped-def]
    limit = request.max_content_length
    audit_refusal(f"request body larger than {limit} bytes", 413)
    return error_response(413, "too_large", f"the request body is larger than {limit} bytes")


def _csrf_refused(exc: CSRFError):  # type: ignore[no-untyped-def]
    audit_refusal(f"CSRF check failed: {exc.description}", 400)
    return error_response(400, "csrf_failed", exc.description or "the CSRF token is missing")


def _throttled(exc: RateLimitExceeded):  # type: ignore[no-untyped-def]
    audit_refusal(f"throttled: more than {exc.description}", 429,
                  budget=THROTTLED_REFUSAL_BUDGET, budget_key=str(exc.description))
    return error_response(429, "too_many_requests",
                          "too many attempts; wait a minute and try again")


def _audit_denied(reason: str) -> None:
    services().audit.record(action="denied", outcome="denied", actor=current_actor(),
                            http_status=403, detail={"reason": reason})


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def _safe_next(target: str | None) -> str:
    """``target`` if it stays on this site, else the home page (no open redirects)."""
    safe = safe_redirect_path(target)
    return safe if safe is not None else url_for("pages.index")


def safe_redirect_path(target: str | None) -> str | None:
    """The local path ``target`` resolves to, or ``None`` if a browser could leave the site.

    Only a path-absolute reference is accepted, judged as resolved: after its dot segments
    are removed as RFC 3986 and browsers do (``/.//evil`` becomes ``//evil``, a host), and as
    browsers read it (they drop tabs and newlines and take ``\\`` for ``/``), also once and
    twice percent-decoded (``%2F``, ``%5C``, ``%2E``: some proxies decode before the browser
    sees it). Controls, spaces and backslashes are refused rather than repaired. The answer is
    the resolved path and query, so what is sent is exactly what was judged.
    """
    if not target or not target.startswith("/"):
        return None
    if " " in target:
        return None
    for candidate in (target, unquote(target), unquote(unquote(target))):
        if any(ord(c) < 32 or ord(c) == 127 or c == "\\" for c in candidate):
            return None
        path = candidate.partition("#")[0].partition("?")[0]
        if path.startswith("//") or remove_dot_segments(path).startswith("//"):
            return None
    path, _, query = target.partition("#")[0].partition("?")
    return remove_dot_segments(path) + (f"?{query}" if query else "")


def remove_dot_segments(path: str) -> str:
    """RFC 3986, section 5.2.4, for a path that starts with ``/``."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _email_key() -> str:
    # hashed again by the storage; hashing here keeps e-mail addresses out of its keys too
    email = (request.form.get("email") or "").strip().lower()
    return "login-email:" + hashlib.sha256(email.encode("utf-8")).hexdigest()


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, methods=["POST"], key_func=_email_key)
def login():  # type: ignore[no-untyped-def]
    form = LoginForm()
    if current_user.is_authenticated and request.method == "GET":
        return redirect(_safe_next(request.args.get("next")))
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        attempt = sign_in(services().sessions, email, form.password.data)
        # audit rows are written after the sign-in's session: SQLite allows one writer at a time
        audit = services().audit
        if attempt.user is None or attempt.org is None:
            audit.record(
                action="login_failed", outcome="denied", http_status=401,
                actor=anonymous_actor(org_id=attempt.org_id, email=email),
                detail={"reason": "bad credentials"},
            )
            flash("Wrong e-mail address or password.", "error")
            return render_template("login.html", form=form), 401
        session.clear()
        session["sid"] = attempt.sid
        login_user(_snapshot(attempt.user, attempt.org))
        session.permanent = True
        session["last_seen"] = time.time()
        audit.record(action="login", outcome="success", actor=current_actor(), http_status=302)
        return redirect(_safe_next(request.args.get("next")))
    status = 400 if request.method == "POST" else 200
    return render_template("login.html", form=form), status


@bp.route("/logout", methods=["POST"])
def logout():  # type: ignore[no-untyped-def]
    if current_user.is_authenticated:
        services().audit.record(action="logout", outcome="success", actor=current_actor(),
                                http_status=302)
    _end_browser_session(session.get("sid"))
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


def _enforce_idle_timeout():  # type: ignore[no-untyped-def]
    """End a browser session that has been idle longer than the configured limit."""
    if request.endpoint in (None, "static", "health.healthz", "health.readyz"):
        return None
    if "_user_id" not in session:
        return None
    idle = current_app.config["IDLE_LOGOUT_SECONDS"]
    now = time.time()
    last = session.get("last_seen")
    if last is not None and now - float(last) > idle:
        _end_browser_session(session.get("sid"))
        session.clear()
        logout_user()
        if request.path.startswith("/api/"):
            raise ApiError(401, "session_expired", "the session ended after inactivity; sign in again")
        flash("Your session ended after inactivity. Please sign in again.", "info")
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    session["last_seen"] = now
    return None


# the sign-in counters live in the database of whichever application is serving the request
throttle.use_sessions(lambda: services().sessions)


def init_app(app: Flask) -> None:
    app.config.setdefault("LOGIN_RATE_LIMIT", "10 per minute")
    login_manager.init_app(app)
    login_manager.session_protection = "strong"
    login_manager.login_view = "auth.login"
    csrf.init_app(app)
    limiter.init_app(app)
    app.register_error_handler(CSRFError, _csrf_refused)
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.register_error_handler(RateLimitExceeded, _throttled)
    app.before_request(_refuse_undecodable)
    app.before_request(_enforce_idle_timeout)
    app.register_blueprint(bp)
