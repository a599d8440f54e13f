"""``gateway decrypt FILE``: decrypt an object copied straight out of the bucket.

Needs only the database (the catalog holds the wrapped data key) and the master key: no web
app, no bucket. The object's catalog row is found from the salt in the object's header, or
failing that from the file name (objects are stored under their ``storage_id``). Memory stays
bounded whatever the object's size; with ``-o OUT`` the plaintext goes to ``OUT.partial``,
which is renamed to ``OUT`` only once the whole object is authenticated and its SHA-256 matches
the catalog, and removed otherwise.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..crypto import envelope
from ..db.models import EncryptionMode, StoredObject
from ..keys import KeyringError
from ._common import CommandError, get_services
from .keys import _audit

READ_CHUNK = 1024 * 1024


class _IntegrityFailure(Exception):
    """The object, its wrapped key or its plaintext digest failed a check."""


def _read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as source:
        while chunk := source.read(READ_CHUNK):
            yield chunk


def find_object(session: Session, header: envelope.Header, file_name: str) -> StoredObject | None:
    """The catalog row of an object file: by its header's salt, else by its storage id."""
    rows = list(
        session.scalars(select(StoredObject).where(StoredObject.envelope_salt == header.salt))
    )
    if len(rows) > 1:
        rows = [row for row in rows if row.storage_id == file_name] or rows[:1]
    if rows:
        return rows[0]
    return session.scalar(select(StoredObject).where(StoredObject.storage_id == file_name))


class _Copy:
    """Plaintext copied to a sink while hashed and counted."""

    def __init__(self) -> None:
        self.written = 0
        self._digest = hashlib.sha256()

    def run(self, plaintext: Iterator[bytes], sink: IO[bytes], expected_sha256: str) -> None:
        """Copy everything; :raises _IntegrityFailure: if the digest is not the expected one."""
        for piece in plaintext:
            self._digest.update(piece)
            sink.write(piece)
            self.written += len(piece)
        sink.flush()
        if self._digest.hexdigest() != expected_sha256:
            raise _IntegrityFailure("the plaintext's SHA-256 does not match the catalog")


@contextlib.contextmanager
def _partial_file(out: Path) -> Iterator[IO[bytes]]:
    """``OUT.partial`` (mode 0600), renamed to ``OUT`` on success and removed on any failure."""
    partial = out.with_name(out.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as sink:
            yield sink
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(partial, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def _services(database_url: str | None, master_key: str | None):  # type: ignore[no-untyped-def]
    """The services, with ``--database-url`` / ``--master-key`` over the environment."""
    if database_url is None and master_key is None:
        return get_services(require=())
    from ..config import Settings
    from ..services import build_services

    environ = dict(os.environ)
    if database_url is not None:
        environ["GATEWAY_DATABASE_URL"] = database_url
    if master_key is not None:
        environ["GATEWAY_MASTER_KEY"] = master_key
    root = click.get_current_context().find_root()
    root.ensure_object(dict)
    services = build_services(Settings.from_env(environ, require=()))
    root.obj["services"] = services
    root.call_on_close(services.close)
    return services


_HELP = """Decrypt FILE, the bytes of one object copied straight out of the bucket.

\b
Needs only:
  - the catalog database (a live one, or one restored from a dump): --database-url,
    or GATEWAY_DATABASE_URL
  - the master key that wrapped its keys: --master-key file:PATH or aws-kms:KEY_ID
    (or GATEWAY_MASTER_KEY); KMS needs AWS credentials and a region
No web app, no bucket, no other setting. The catalog row is found from the salt in
FILE's header, or else from FILE's name (the last part of its S3 key, the storage id).

With -o OUT the plaintext goes to OUT.partial, renamed to OUT only once the whole object
was authenticated and its SHA-256 matches the catalog; on any failure nothing is left
and the command exits 1 naming the failure. The run is recorded in the audit trail of
that database (action decrypt). keys/README.md, "Recovery", describes the procedure.
"""


@click.command("decrypt", help=_HELP, short_help="Decrypt an object copied out of the bucket "
               "(needs only the database and the master key).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the plaintext here (default: standard output).")
@click.option("--database-url", metavar="URL", default=None,
              help="SQLAlchemy URL of the catalog database, e.g. a restored copy "
                   "(default: GATEWAY_DATABASE_URL).")
@click.option("--master-key", metavar="file:PATH|aws-kms:KEY", default=None,
              help="The master key (default: GATEWAY_MASTER_KEY).")
def decrypt(file: Path, out: Path | None, database_url: str | None,
            master_key: str | None) -> None:
    services = _services(database_url, master_key)
    if out is not None and out.exists() and out.samefile(file):
        raise CommandError("the output file must not be the encrypted file itself")
    with open(file, "rb") as source:
        head = source.read(envelope.HEADER_SIZE)
    try:
        header = envelope.parse_header(head)
    except envelope.DecryptionError:
        raise CommandError(
            f"integrity failure: {file.name} does not start with a gateway object header"
        ) from None

    failure: tuple[str, str] | None = None
    with services.sessions() as session:
        row = find_object(session, header, file.name)
        if row is None:
            raise CommandError(
                f"no catalog row matches {file.name} (neither its header salt nor its name as "
                "a storage id)"
            )
        if row.encryption != EncryptionMode.CSE.value or row.wrapped_data_key is None:
            raise CommandError(
                f"object {row.id} is not client-side encrypted ({row.encryption}): S3 decrypts "
                "it on download"
            )
        event: dict[str, Any] = {"object_id": row.id, "object_path": row.path}
        org_id, storage_id, expected = row.org_id, row.storage_id, row.sha256
        try:
            data_key = services.keyring.unwrap_data_key(
                session, org_id, storage_id, row.key_version, row.wrapped_data_key
            )
        except KeyringError as exc:
            failure = ("error", str(exc))
        except envelope.DecryptionError:
            failure = ("integrity_failure",
                       "integrity failure: the object's wrapped data key does not unwrap")
    # The audit log writes in its own transaction: only once this session's has ended.
    if failure is not None:
        _audit(services, "decrypt", failure[0], org_id, {"file": file.name}, **event)
        raise CommandError(failure[1])
    _audit(services, "decrypt", "started", org_id, {"file": file.name}, **event)

    plaintext = envelope.decrypt_stream(
        data_key, _read_chunks(file), org_id=org_id, object_id=storage_id
    )
    copy = _Copy()
    try:
        if out is None:
            with click.open_file("-", "wb") as stdout:
                copy.run(plaintext, stdout, expected)
        else:
            with _partial_file(out) as sink:
                copy.run(plaintext, sink, expected)
    except (envelope.DecryptionError, _IntegrityFailure) as exc:
        _audit(services, "decrypt", "integrity_failure", org_id, {"file": file.name},
               nbytes=copy.written, **event)
        reason = "the object failed authentication" if isinstance(
            exc, envelope.DecryptionError) else str(exc)
        raise CommandError(f"integrity failure: {reason}") from None
    except OSError as exc:
        _audit(services, "decrypt", "aborted", org_id, {"file": file.name},
               nbytes=copy.written, **event)
        raise CommandError(f"cannot write the plaintext: {exc.strerror or exc}") from None
    _audit(services, "decrypt", "completed", org_id, {"file": file.name},
           nbytes=copy.written, **event)
    if out is not None:
        click.echo(f"decrypted {copy.written} bytes to {out}", err=True)


COMMANDS = [decrypt]
