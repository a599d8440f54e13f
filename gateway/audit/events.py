"""What the trail records: the actions and outcomes, and the audit errors.

Pure: imports nothing but the standard library and :mod:`gateway.errors`.
"""
from __future__ import annotations

from enum import Enum

from ..errors import GatewayError

#: The chain of events that belong to no organisation (e.g. a failed login for an unknown
#: e-mail address, or an operator command run without ``--org``).
SYSTEM_CHAIN = "system"


class Action(str, Enum):
    """What happened. Stored as the value; never renamed (old rows keep their names)."""

    UPLOAD = "upload"  # outcome started, then completed / aborted with the bytes received
    VIEW = "view"  # inline display (outcome started, then completed / aborted)
    DOWNLOAD = "download"  # attachment (outcome started, then completed / aborted)
    RANGE_READ = "range_read"  # a Range request (outcome started, then completed / aborted)
    LIST = "list"
    MOVE = "move"  # renamed or moved to another folder (metadata only)
    DELETE = "delete"
    PURGE = "purge"
    RESTORE = "restore"
    LINK_ISSUED = "link_issued"
    LINK_USED = "link_used"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    DENIED = "denied"
    INTEGRITY_FAILURE = "integrity_failure"
    KEY_ROTATE = "key_rotate"
    KEY_REWRAP = "key_rewrap"
    KEY_REENCRYPT = "key_reencrypt"
    KEY_ROTATE_MASTER = "key_rotate_master"
    KEY_MIGRATE_SSEC = "key_migrate_ssec"
    KEY_RETIRE = "key_retire"
    ORG_CREATE = "org_create"
    USER_CREATE = "user_create"
    USER_UPDATE = "user_update"
    USER_DEACTIVATE = "user_deactivate"  # its sessions end and its tokens are revoked
    USER_REACTIVATE = "user_reactivate"
    USER_SET_ROLE = "user_set_role"  # detail: before and after
    PASSWORD_RESET = "password_reset"  # an admin or operator reset it (printed, or a link issued)
    PASSWORD_SET = "password_set"  # the user chose a new one through a reset link
    TOKEN_CREATE = "token_create"
    TOKEN_REVOKE = "token_revoke"
    STORAGE_RECONCILE = "storage_reconcile"
    DECRYPT = "decrypt"  # `gateway decrypt` run on the server
    AUDIT_QUERY = "audit_query"
    AUDIT_EXPORT = "audit_export"
    AUDIT_ARCHIVE = "audit_archive"
    AUDIT_VERIFY = "audit_verify"
    UPLOAD_CREATE = "upload_create"  # a resumable upload begins (tus POST)
    UPLOAD_PATCH = "upload_patch"  # bytes added to it (offset from/to), or refused
    UPLOAD_TERMINATE = "upload_terminate"  # the uploader abandoned it (tus DELETE)
    UPLOAD_EXPIRE = "upload_expire"  # it expired unfinished; everything stored for it deleted
    AUDIT_ANCHOR = "audit_anchor"  # chain heads written to the bucket


class Outcome(str, Enum):
    """How it ended. Transfers write ``started`` before the first byte, then ``completed`` or
    ``aborted`` with the bytes actually moved."""

    SUCCESS = "success"
    STARTED = "started"
    COMPLETED = "completed"
    ABORTED = "aborted"
    DENIED = "denied"
    FAILURE = "failure"
    INTEGRITY_FAILURE = "integrity_failure"
    ERROR = "error"


class AuditUnavailable(GatewayError):
    """The event could not be recorded; whatever it was about must not happen (HTTP 503).

    The message is generic; the cause (database or keyring error) is chained for the logs.
    """

    status, code = 503, "audit_unavailable"
    public_message = "the audit log is unavailable; nothing was served"


class FilterError(GatewayError, ValueError):
    """A filter of an audit query is malformed (HTTP 400); the message says how to write it."""

    status, code = 400, "bad_request"


class AuditArchiveError(GatewayError):
    """An archive cannot be written or read (bad month, conflicting archive, broken rows)."""

    status, code = 409, "audit_archive"
