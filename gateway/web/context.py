"""Per-request context: the services, the request id and the acting user."""
from __future__ import annotations

import uuid

from flask import Flask, current_app, g, request
from flask_login import current_user

from ..principal import Actor
from ..services import Services


def services() -> Services:
    """The application's services."""
    return current_app.extensions["gateway"]


def request_id() -> str:
    """This request's id (also sent back as ``X-Request-Id``)."""
    rid = getattr(g, "request_id", None)
    if rid is None:
        rid = g.request_id = uuid.uuid4().hex
    return rid


def client_addr() -> str | None:
    return request.remote_addr


def current_actor() -> Actor:
    """The authenticated user of this request as an :class:`Actor` (anonymous if none)."""
    user = current_user
    if user is not None and getattr(user, "is_authenticated", False):
        return Actor(
            org_id=user.org_id,
            user_id=user.id,
            email=user.email,
            role=user.role,
            client_addr=client_addr(),
            user_agent=(request.user_agent.string or None),
            request_id=request_id(),
        )
    return anonymous_actor()


def anonymous_actor(org_id: str | None = None, email: str | None = None) -> Actor:
    return Actor(
        org_id=org_id,
        email=email,
        client_addr=client_addr(),
        user_agent=(request.user_agent.string or None),
        request_id=request_id(),
    )


def init_app(app: Flask) -> None:
    @app.after_request
    def _request_id_header(response):  # type: ignore[no-untyped-def]
        response.headers["X-Request-Id"] = request_id()
        return response
