"""Sign-in, sign-out, bearer tokens, idle logout, CSRF and sign-in throttling.

Libraries: Flask-Login (sessions), Flask-WTF (CSRF on every form and on session-authenticated
API writes), Flask-Limiter (sign-in throttling), argon2-cffi (password hashes, in
:mod:`gateway.accounts`, which also holds the session rows and token checks).
"""
from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import urljoin, urlsplit

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
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect, validate_csrf
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length, ValidationError

from ..accounts import end_browser_session, session_user, sign_in, throttle, token_user
from ..db.models import Organisation, User
from .context import anonymous_actor, current_actor, services
from .errors import ApiError

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
    return _snapshot(*found, via_token=True) if found else None


@login_manager.unauthorized_handler
def _unauthorized():  # type: ignore[no-untyped-def]
    if request.path.startswith("/api/"):
        raise ApiError(401, "unauthorized", "sign in or send an Authorization: Bearer token")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def bearer_request() -> bool:
    """Whether this request authenticates with a bearer token (no cookie, so no CSRF risk)."""
    return request.headers.get("Authorization", "").lower().startswith("bearer ")


def login_required_api(fn: F) -> F:
    """The request must come from a signed-in user or carry a valid bearer token."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
        if not bearer_request() and request.method not in SAFE_METHODS:
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
    except ValidationError:
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


def _audit_denied(reason: str) -> None:
    services().audit.record(action="denied", outcome="denied", actor=current_actor(),
                            http_status=403, detail={"reason": reason})


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def _safe_next(target: str | None) -> str:
    """``target`` if it stays on this site, else the home page (no open redirects)."""
    if not target:
        return url_for("pages.index")
    host_url = urlsplit(request.host_url)
    joined = urlsplit(urljoin(request.host_url, target))
    if (
        joined.scheme not in ("http", "https")
        or joined.netloc != host_url.netloc
        or target.startswith(("//", "\\", "/\\"))
        or any(ord(c) < 32 for c in target)
    ):
        return url_for("pages.index")
    return joined.path + (f"?{joined.query}" if joined.query else "")


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
    if bearer_request() or request.endpoint in (None, "static", "health.healthz", "health.readyz"):
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
    app.before_request(_enforce_idle_timeout)
    app.register_blueprint(bp)
