"""Settings, read once from the environment at start-up.

Every variable of the contract is parsed and checked here, so that a missing or malformed
value stops the process with one line naming the variable, never later at the first request.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Mapping

from .errors import GatewayError

DEFAULT_DATABASE_URL = "sqlite:///instance/gateway.db"
DEFAULT_MASTER_KEY = "file:keys/master.key"
DEFAULT_MAX_UPLOAD_BYTES = 262_144_000
DEFAULT_READ_LINK_SECONDS = 900
DEFAULT_WRITE_LINK_SECONDS = 300
DEFAULT_IDLE_LOGOUT_SECONDS = 900
DEFAULT_UPLOAD_EXPIRES_SECONDS = 24 * 3600
DEFAULT_REVIEW_BULK_FILES = 50
DEFAULT_REVIEW_BULK_BYTES = 1 << 30
DEFAULT_WORKING_HOURS = "07:00-19:00"
DEFAULT_TIMEZONE = "UTC"

#: The settings that have no default outside dev mode.
REQUIRED = ("GATEWAY_S3_BUCKET", "GATEWAY_MASTER_KEY", "GATEWAY_SECRET_KEY")


class SettingsError(GatewayError):
    """A setting is missing or malformed; the message names the variable (HTTP 503)."""

    status, code = 503, "misconfigured"
    public_message = "the gateway is misconfigured"


@dataclass(frozen=True)
class Settings:
    """The gateway's configuration (see the contract's settings table)."""

    database_url: str = DEFAULT_DATABASE_URL
    s3_bucket: str = ""
    s3_endpoint_url: str | None = None
    master_key: str = DEFAULT_MASTER_KEY
    secret_key: str = ""
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    read_link_seconds: int = DEFAULT_READ_LINK_SECONDS
    write_link_seconds: int = DEFAULT_WRITE_LINK_SECONDS
    idle_logout_seconds: int = DEFAULT_IDLE_LOGOUT_SECONDS
    #: how long an unfinished resumable upload lives (``Upload-Expires``)
    upload_expires_seconds: int = DEFAULT_UPLOAD_EXPIRES_SECONDS
    #: reverse proxies in front whose X-Forwarded-For/-Proto/-Host are believed (0: none)
    trusted_proxies: int = 0
    #: the review dashboard's bulk downloads: more files, or more bytes, in one hour
    review_bulk_files: int = DEFAULT_REVIEW_BULK_FILES
    review_bulk_bytes: int = DEFAULT_REVIEW_BULK_BYTES
    #: the review dashboard's working hours (``HH:MM-HH:MM``) in :attr:`timezone`
    working_hours: str = DEFAULT_WORKING_HOURS
    timezone: str = DEFAULT_TIMEZONE
    dev: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        require: tuple[str, ...] = REQUIRED,
        dev: bool = False,
    ) -> Settings:
        """Read and validate the settings.

        :param environ: the environment (``os.environ`` when omitted).
        :param require: the variables that must be present (dev mode supplies its own).
        :raises SettingsError: naming the first missing or malformed variable.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            if value is None or value.strip() == "":
                if name in require:
                    raise SettingsError(f"{name} is required but not set")
                return None
            return value.strip()

        database_url = get("GATEWAY_DATABASE_URL") or DEFAULT_DATABASE_URL
        if "://" not in database_url:
            raise SettingsError(
                "GATEWAY_DATABASE_URL is malformed: expected an SQLAlchemy URL such as "
                "sqlite:///instance/gateway.db or postgresql+psycopg://user@host/db"
            )
        bucket = get("GATEWAY_S3_BUCKET") or ""
        if bucket and not _valid_bucket_name(bucket):
            raise SettingsError(
                "GATEWAY_S3_BUCKET is malformed: 3-63 lowercase letters, digits, dots or hyphens"
            )
        endpoint = get("GATEWAY_S3_ENDPOINT_URL")
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise SettingsError("GATEWAY_S3_ENDPOINT_URL is malformed: expected an http(s):// URL")
        master_key = get("GATEWAY_MASTER_KEY") or DEFAULT_MASTER_KEY
        parse_master_key(master_key)
        secret_key = get("GATEWAY_SECRET_KEY") or ""
        if secret_key and len(secret_key) < 16:
            raise SettingsError("GATEWAY_SECRET_KEY is malformed: use at least 16 characters")
        working_hours = get("GATEWAY_WORKING_HOURS") or DEFAULT_WORKING_HOURS
        _check_working_hours(working_hours)
        tz = get("GATEWAY_TIMEZONE") or DEFAULT_TIMEZONE
        _check_timezone(tz)
        return cls(
            database_url=database_url,
            s3_bucket=bucket,
            s3_endpoint_url=endpoint,
            master_key=master_key,
            secret_key=secret_key,
            max_upload_bytes=_positive_int(get, "GATEWAY_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES),
            read_link_seconds=_positive_int(get, "GATEWAY_READ_LINK_SECONDS", DEFAULT_READ_LINK_SECONDS),
            write_link_seconds=_positive_int(
                get, "GATEWAY_WRITE_LINK_SECONDS", DEFAULT_WRITE_LINK_SECONDS
            ),
            idle_logout_seconds=_positive_int(
                get, "GATEWAY_IDLE_LOGOUT_SECONDS", DEFAULT_IDLE_LOGOUT_SECONDS
            ),
            upload_expires_seconds=_positive_int(
                get, "GATEWAY_UPLOAD_EXPIRES_SECONDS", DEFAULT_UPLOAD_EXPIRES_SECONDS
            ),
            trusted_proxies=_positive_int(get, "GATEWAY_TRUSTED_PROXIES", 0, allow_zero=True),
            review_bulk_files=_positive_int(
                get, "GATEWAY_REVIEW_BULK_FILES", DEFAULT_REVIEW_BULK_FILES),
            review_bulk_bytes=_positive_int(
                get, "GATEWAY_REVIEW_BULK_BYTES", DEFAULT_REVIEW_BULK_BYTES),
            working_hours=working_hours,
            timezone=tz,
            dev=dev,
        )

    @property
    def secure_cookies(self) -> bool:
        """Whether cookies carry ``Secure``: behind a TLS terminator (trusted proxies) and
        outside dev mode; only the dev stack on plain-HTTP loopback goes without."""
        return self.trusted_proxies > 0 or not self.dev

    def with_changes(self, **changes: object) -> Settings:
        """A copy with some fields replaced (tests and dev mode)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def parse_master_key(value: str) -> tuple[str, str]:
    """Split ``GATEWAY_MASTER_KEY`` into ``("file", path)`` or ``("aws-kms", key_id)``.

    :raises SettingsError: for any other form.
    """
    scheme, sep, rest = value.partition(":")
    if not sep or scheme not in ("file", "aws-kms") or not rest:
        raise SettingsError(
            "GATEWAY_MASTER_KEY is malformed: expected file:PATH or aws-kms:KEY_ID_OR_ARN"
        )
    return scheme, rest


def _positive_int(get, name: str, default: int, *,  # type: ignore[no-untyped-def]
                  allow_zero: bool = False) -> int:
    raw = get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} is malformed: expected a whole number, got {raw!r}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise SettingsError(f"{name} is malformed: must be "
                            f"{'zero or more' if allow_zero else 'greater than zero'}")
    return value


def _check_working_hours(value: str) -> None:
    from datetime import time

    start, sep, end = value.partition("-")
    try:
        if not sep or time.fromisoformat(end.strip()) <= time.fromisoformat(start.strip()):
            raise ValueError
    except ValueError:
        raise SettingsError("GATEWAY_WORKING_HOURS is malformed: expected HH:MM-HH:MM with the "
                            f"end after the start, e.g. 07:00-19:00, got {value!r}") from None


def _check_timezone(value: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError("GATEWAY_TIMEZONE is malformed: expected an IANA time zone such "
                            f"as Europe/Berlin or UTC, got {value!r}") from None


def _valid_bucket_name(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    return 3 <= len(name) <= 63 and set(name) <= allowed and name[0].isalnum() and name[-1].isalnum()
