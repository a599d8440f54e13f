"""Who is signed in: passwords checked, browser sessions started and ended, bearer tokens.

A browser session is a row of ``browser_sessions`` keyed by the SHA-256 of a random id that
only the signed cookie holds, so that a session ends on the server (sign-out, idle timeout)
and a copied cookie signs nobody in afterwards. Nothing here knows Flask: the web layer keeps
the id in its cookie and turns the rows returned here into its signed-in user.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..db.models import ApiToken, BrowserSession, Organisation, User, utcnow
from .credentials import hash_token, verify_password

#: How precisely a token's ``last_used_at`` is kept: it is written again only this long after
#: the last write, so that most API calls do not commit a write of their own
TOKEN_USE_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in attempt.

    :ivar user: the signed-in user and ``org`` their organisation (detached rows), or
        ``None`` when the attempt was refused.
    :ivar sid: the new browser session's id, for the cookie (``""`` when refused).
    :ivar org_id: the organisation of the e-mail address tried, if it names a user (the
        refusal is recorded in that organisation's trail).
    """

    user: User | None
    org: Organisation | None
    sid: str
    org_id: str | None


def session_key(sid: str) -> str:
    """The stored form of a browser session id."""
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()


def sign_in(sessions: sessionmaker[Session], email: str, password: str) -> SignIn:
    """Check ``password`` for ``email``; on success start a browser session.

    The work is the same whether or not the address exists (a dummy hash is verified), so
    timing does not tell.
    """
    email = email.strip().lower()
    with sessions() as s:
        row = s.execute(
            select(User, Organisation).join(Organisation).where(func.lower(User.email) == email)
        ).first()
        user, org = row if row else (None, None)
        ok = verify_password(user.password_hash if user else None, password)
        org_id = user.org_id if user else None
        if user is None or org is None or not ok or not user.is_active:
            return SignIn(None, None, "", org_id)
        user.last_login_at = datetime.now(timezone.utc)
        sid = _start_browser_session(s, user)
        s.commit()
        return SignIn(user, org, sid, org_id)


def _start_browser_session(s: Session, user: User) -> str:
    """Record a new browser session for ``user`` (in the caller's transaction); its id."""
    sid = secrets.token_urlsafe(32)
    s.execute(delete(BrowserSession).where(BrowserSession.user_id == user.id,
                                           BrowserSession.ended_at.is_not(None)))
    s.add(BrowserSession(id=session_key(sid), user_id=user.id, created_at=utcnow()))
    return sid


def end_browser_session(sessions: sessionmaker[Session], sid: str | None) -> None:
    """End the browser session ``sid`` (sign-out, idle timeout); nothing if there is none."""
    if not sid:
        return
    with sessions() as s:
        row = s.get(BrowserSession, session_key(sid))
        if row is not None and row.ended_at is None:
            row.ended_at = utcnow()
            s.commit()


def end_user_sessions(s: Session, user_id: int) -> int:
    """End every open browser session of a user (deactivation, password reset), in the
    caller's transaction; how many were open. Their cookies sign nobody in afterwards."""
    result = s.execute(
        update(BrowserSession)
        .where(BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )
    return int(result.rowcount or 0)


def session_user(sessions: sessionmaker[Session], user_id: int,
                 sid: str) -> tuple[User, Organisation] | None:
    """The active user whose browser session ``sid`` has not ended, with their organisation."""
    with sessions() as s:
        row = s.execute(
            select(User, Organisation).join(Organisation)
            .join(BrowserSession, BrowserSession.user_id == User.id)
            .where(User.id == user_id, BrowserSession.id == session_key(sid),
                   BrowserSession.ended_at.is_(None))
        ).first()
        if row is None or not row[0].is_active:
            return None
        return row[0], row[1]


def token_user(sessions: sessionmaker[Session], token: str) -> tuple[User, Organisation] | None:
    """The active user an API token authenticates (not revoked, not expired); records its use."""
    now = utcnow()
    with sessions() as s:
        row = s.execute(
            select(ApiToken, User, Organisation)
            .join(User, ApiToken.user_id == User.id)
            .join(Organisation, User.org_id == Organisation.id)
            .where(ApiToken.token_hash == hash_token(token))
        ).first()
        if row is None:
            return None
        api_token, user, org = row
        if api_token.revoked_at is not None or not user.is_active:
            return None
        if api_token.expires_at is not None and api_token.expires_at <= now:
            return None
        last = api_token.last_used_at
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=timezone.utc)
        if last is None or now - last >= TOKEN_USE_RESOLUTION:
            # a write per request would cost every API call a commit: the stamp says when a
            # token was last used to within a minute, which is what an admin asks of it
            api_token.last_used_at = now
            s.commit()
        return user, org
