"""Accounts: organisations, users and their roles, passwords, API tokens, browser sessions,
and the sign-in throttle's counters.

Rooms: :mod:`.credentials` (Argon2id password hashes, API tokens), :mod:`.sessions` (sign-in,
browser sessions, bearer tokens), :mod:`.admin` (creating organisations, users and tokens),
:mod:`.lifecycle` (listing, deactivating, roles, password resets, revoking one token),
:mod:`.overview` (the admin console's key, job and storage views), :mod:`.trail` (auditing
account changes), :mod:`.throttle` (Flask-Limiter's counters in the gateway's database),
:mod:`.errors`.

May import: :mod:`gateway.errors`, :mod:`gateway.db`, argon2 and ``limits``; never Flask,
click or :mod:`gateway.services`.
"""
from .admin import (
    AccountServices,
    NewToken,
    create_organisation,
    create_token,
    create_user,
    find_org,
    find_user,
    issue_token,
    load_user,
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
from .lifecycle import (
    RESET_LINK_SECONDS,
    AccountConflict,
    ResetLink,
    TokenInfo,
    UserInfo,
    check_password,
    get_user,
    issue_reset_link,
    list_tokens,
    list_users,
    redeem_reset_link,
    reset_link_email,
    reset_password,
    revoke_token,
    set_active,
    set_role,
)
from .sessions import (
    SignIn,
    end_browser_session,
    end_user_sessions,
    session_key,
    session_user,
    sign_in,
    token_user,
)

__all__ = [
    "RESET_LINK_SECONDS", "TOKEN_PREFIX", "AccountConflict", "AccountError", "AccountExists",
    "AccountNotFound", "AccountServices", "NewToken", "ResetLink", "SignIn", "TokenInfo",
    "UserInfo", "check_password", "create_organisation", "create_token", "create_user",
    "end_browser_session", "end_user_sessions", "find_org", "find_user", "generate_password",
    "get_user", "hash_password", "hash_token", "issue_reset_link", "issue_token",
    "list_tokens", "list_users", "load_user", "new_api_token", "redeem_reset_link",
    "reset_link_email", "reset_password", "revoke_token", "revoke_tokens", "session_key",
    "session_user", "set_active", "set_role", "sign_in", "token_user", "tokens_equal",
    "verify_password",
]
