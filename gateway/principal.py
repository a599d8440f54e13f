"""Who is acting: the authenticated user (or command-line operator) behind a request."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """The identity and origin of one request or command, as the audit trail records it.

    ``org_id`` always comes from the authenticated user, never from the request.
    """

    org_id: str | None
    user_id: int | None = None
    email: str | None = None
    role: str | None = None
    client_addr: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    @classmethod
    def cli(cls, org_id: str | None = None, command: str = "") -> Actor:
        """An operator running a ``gateway`` command on the server."""
        import getpass
        import uuid

        try:
            who = getpass.getuser()
        except Exception:  # noqa: BLE001  (no login name in some containers)
            who = "unknown"
        return cls(
            org_id=org_id,
            email=f"cli:{who}",
            role="operator",
            client_addr="local",
            user_agent=f"gateway {command}".strip(),
            request_id=uuid.uuid4().hex,
        )
