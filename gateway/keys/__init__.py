"""Keys: the master key, organisation key versions, derived keys, and the rotation jobs.

Rooms: :mod:`.master` (the master key providers and the key file), :mod:`.kms` (the AWS KMS
provider: with :mod:`gateway.storage.s3` the only code that imports boto3), :mod:`.keyring`
(organisation keys, data-key wrapping, audit keys), :mod:`.jobs` (the runner of resumable
jobs) and :mod:`.rotation` (rewrap, re-encrypt, SSE-C migration), :mod:`.errors`.

May import: :mod:`gateway.errors`, :mod:`gateway.config`, :mod:`gateway.principal`,
:mod:`gateway.crypto`, :mod:`gateway.db`; the rotation jobs also :mod:`gateway.storage` and
:mod:`gateway.audit`. Never Flask, click or :mod:`gateway.services`: a job is handed the
services it uses (:class:`~.jobs.JobServices`).
"""
from .errors import KeyInUse, KeyringError, UnknownKeyVersion
from .keyring import Keyring, KeyUsage
from .kms import KMS_ENDPOINT_ENV, KmsMasterKey, make_kms_client
from .master import (
    KEY_FILE_FORMAT,
    KEY_SIZE,
    FileMasterKey,
    MasterKey,
    add_master_key_version,
    encode_context,
    init_master_key_file,
    load_master_key,
    retire_master_key_version,
)

__all__ = [
    "KEY_FILE_FORMAT", "KEY_SIZE", "KMS_ENDPOINT_ENV", "FileMasterKey", "KeyInUse",
    "KeyUsage", "Keyring", "KeyringError", "KmsMasterKey", "MasterKey", "UnknownKeyVersion",
    "add_master_key_version", "encode_context", "init_master_key_file", "load_master_key",
    "make_kms_client", "retire_master_key_version",
]
