"""The audit trail: record every access, chain the rows, verify, query, export and archive.

Rooms: :mod:`.events` (actions, outcomes, errors), :mod:`.chain` (the exact bytes hashed;
pure), :mod:`.log` (appending), :mod:`.verification`, :mod:`.queries`, :mod:`.exports`,
:mod:`.archives` (monthly archives in the bucket), :mod:`.anchors` (signed chain heads in the bucket).

May import: :mod:`gateway.errors`, :mod:`gateway.principal`, :mod:`gateway.db`,
:mod:`gateway.crypto` and :mod:`gateway.storage` (archives only); never Flask, click, the
files domain or :mod:`gateway.services`. The keyring is passed in (anything with
``audit_key(session, chain)``).
"""
from .anchors import (
    ANCHOR_FORMAT,
    ANCHOR_PREFIX,
    ANCHOR_RETENTION_DAYS,
    Anchor,
    AnchorInvalid,
    AnchorResult,
    anchor_body,
    anchor_key,
    anchored_chains,
    bucket_claims,
    newest_anchor,
    parse_anchor,
    write_anchors,
)
from .archives import (
    ARCHIVE_FORMAT,
    ARCHIVE_PREFIX,
    ArchiveReport,
    ArchiveResult,
    ArchiveServices,
    archive_claim,
    archive_key,
    archive_month,
    archive_storage_id,
    month_bounds,
    verify_archive,
)
from .chain import (
    ARCHIVE_FIELDS,
    EXPORT_FIELDS,
    GENESIS_HASH,
    HASH_FORMAT,
    HASHED_FIELDS,
    canonical_json,
    format_time,
    row_fields,
    row_hash,
    row_message,
)
from .events import (
    SYSTEM_CHAIN,
    Action,
    AuditArchiveError,
    AuditUnavailable,
    FilterError,
    Outcome,
)
from .exports import PDF_MAX_ROWS, event_to_dict, to_csv, to_jsonl, to_pdf
from .log import AuditLog, lock_chain_head
from .queries import (
    MAX_CURSOR,
    MAX_USER_ID,
    Page,
    check_cursor,
    count,
    cursor_after,
    cursor_of,
    folder_prefix,
    iter_query,
    name_condition,
    parse_action,
    parse_month,
    parse_outcome,
    parse_time,
    query,
    query_page,
    user_condition,
)
from .verification import (
    CHAIN_COLUMNS,
    REASONS,
    ChainFault,
    ChainResult,
    Claim,
    VerifyReport,
    expected_chains,
    recorded_claims,
    verify,
)

__all__ = [
    "ANCHOR_FORMAT", "ANCHOR_PREFIX", "ANCHOR_RETENTION_DAYS", "Anchor", "AnchorInvalid",
    "AnchorResult", "Claim", "anchor_body", "anchor_key", "anchored_chains", "archive_claim",
    "bucket_claims", "expected_chains", "newest_anchor", "parse_anchor", "recorded_claims",
    "write_anchors",
    "ARCHIVE_FIELDS", "ARCHIVE_FORMAT", "ARCHIVE_PREFIX", "CHAIN_COLUMNS", "EXPORT_FIELDS", "GENESIS_HASH",
    "HASHED_FIELDS", "HASH_FORMAT", "MAX_CURSOR", "MAX_USER_ID", "REASONS", "SYSTEM_CHAIN", "Action", "ArchiveReport",
    "ArchiveResult", "ArchiveServices", "AuditArchiveError", "AuditLog", "AuditUnavailable",
    "ChainFault", "ChainResult", "FilterError", "Outcome", "Page", "VerifyReport", "archive_key",
    "archive_month", "archive_storage_id", "canonical_json", "check_cursor", "count", "folder_prefix", "name_condition", "cursor_after", "cursor_of", "event_to_dict",
    "format_time", "iter_query", "lock_chain_head", "month_bounds", "parse_action",
    "parse_month", "parse_outcome", "parse_time", "query", "query_page", "row_fields",
    "row_hash", "row_message", "to_csv", "to_jsonl", "to_pdf", "PDF_MAX_ROWS", "user_condition", "verify",
    "verify_archive",
]
