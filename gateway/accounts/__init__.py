"""Accounts: organisations, users and their roles, passwords, API tokens, browser sessions,
and the sign-in throttle's counters.

Rooms: :mod:`.credentials` (Argon2id password hashes, API tokens), :mod:`.sessions` (sign-in,
browser sessions, bearer tokens), :mod:`.admin` (creating organisations, users and tokens),
:mod:`.throttle` (Flask-Limiter's counters in the gateway's database), :mod:`.errors`.

May import: :mod:`gateway.errors`, :mod:`gateway.db`, argon2 and ``limits``; never Flask,
click or :mod:`gateway.services`.
"""
from .admin import (
    AccountServices,
    create_organisation,
    create_token,
    create_user,
    find_org,
    find_user,
    revoke_tokens,
)
from .credentials import (
    TOKEN_PREFIX,
    generate_password,
    hash_password,
    hash_token,
    new_api_token,
    tokens_equal,
    verify_password,
)
from .errors import AccountError, AccountExists, AccountNotFound
from .sessions import (
    SignIn,
    end_browser_session,
    session_key,
    session_user,
    sign_in,
    token_user,
)

__all__ = [
    "TOKEN_PREFIX", "AccountError", "AccountExists", "AccountNotFound", "AccountServices",
    "SignIn", "create_organisation", "create_token", "create_user", "end_browser_session",
    "find_org", "find_user", "generate_password", "hash_password", "hash_token",
    "new_api_token", "revoke_tokens", "session_key", "session_user", "sign_in", "token_user",
    "tokens_equal", "verify_password",
]
