"""The AWS KMS master key provider (with :mod:`gateway.storage.s3`, the only code using boto3).

Organisation and audit keys are wrapped with KMS ``Encrypt`` and unwrapped with ``Decrypt``,
always with an encryption context (organisation or chain, purpose, version) that KMS checks
and CloudTrail records. The id stored next to each wrapped key is the ``KeyId`` KMS returns
(the key's ARN), so that after the operator points ``GATEWAY_MASTER_KEY`` at another key,
``gateway keys rotate-master`` knows which rows to rewrap and ``Decrypt`` which key to use.

botocore errors are translated here, once, into :class:`~gateway.keys.errors.KeyringError`,
whose message names the KMS operation and the error code, never a key.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from .errors import KeyringError

__all__ = ["KMS_ENDPOINT_ENV", "KmsMasterKey", "make_kms_client"]

#: Optional endpoint of a KMS-compatible service (tests point it at moto's server).
KMS_ENDPOINT_ENV = "GATEWAY_KMS_ENDPOINT_URL"


def make_kms_client() -> Any:
    """A KMS client from boto3's usual credential and region chain.

    ``GATEWAY_KMS_ENDPOINT_URL``, when set, replaces the AWS endpoint.

    :raises KeyringError: if no client can be made (no region configured, for instance).
    """
    endpoint = os.environ.get(KMS_ENDPOINT_ENV) or None
    try:
        return boto3.client("kms", endpoint_url=endpoint)
    except (BotoCoreError, ValueError) as exc:
        raise KeyringError(
            f"cannot create a KMS client ({type(exc).__name__}); set AWS_DEFAULT_REGION and "
            "AWS credentials"
        ) from None


def _failure(operation: str, exc: Exception) -> KeyringError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "unknown error")
        return KeyringError(f"KMS {operation} failed: {code}")
    return KeyringError(f"KMS {operation} failed: {type(exc).__name__}")


class KmsMasterKey:
    """A master key held by AWS KMS (a symmetric ``ENCRYPT_DECRYPT`` key).

    :param key_id: the key id, key ARN, alias name (``alias/...``) or alias ARN of the current
        master key, as ``GATEWAY_MASTER_KEY=aws-kms:...`` names it.
    :param client: a boto3 KMS client.
    """

    def __init__(self, key_id: str, client: Any) -> None:
        if not key_id:
            raise ValueError("a KMS key id is required.")
        self.configured_key_id = key_id
        self._client = client
        self._arn: str | None = key_id if _is_key_arn(key_id) else None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KmsMasterKey(key_id={self.configured_key_id!r})"

    def _describe(self) -> dict[str, Any]:
        try:
            return self._client.describe_key(KeyId=self.configured_key_id)["KeyMetadata"]
        except (BotoCoreError, ClientError) as exc:
            raise _failure("DescribeKey", exc) from None

    @property
    def key_id(self) -> str:
        """The ARN of the configured key (resolved once with ``DescribeKey``)."""
        with self._lock:
            if self._arn is None:
                self._arn = str(self._describe()["Arn"])
            return self._arn

    def wrap(self, key: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        """``Encrypt`` under the configured key with ``context`` as encryption context."""
        try:
            answer = self._client.encrypt(
                KeyId=self.configured_key_id, Plaintext=bytes(key), EncryptionContext=dict(context)
            )
        except (BotoCoreError, ClientError) as exc:
            raise _failure("Encrypt", exc) from None
        return bytes(answer["CiphertextBlob"]), str(answer["KeyId"])

    def unwrap(self, blob: bytes, master_key_id: str, context: Mapping[str, str]) -> bytes:
        """``Decrypt`` with the key that wrapped ``blob`` and the same encryption context.

        :raises KeyringError: on any failure, including a context that does not match.
        """
        try:
            answer = self._client.decrypt(
                CiphertextBlob=bytes(blob),
                KeyId=master_key_id,
                EncryptionContext=dict(context),
            )
        except (BotoCoreError, ClientError) as exc:
            raise _failure("Decrypt", exc) from None
        return bytes(answer["Plaintext"])

    def check(self) -> None:
        """``DescribeKey``: the key must exist, be reachable, enabled and for encryption."""
        metadata = self._describe()
        state = metadata.get("KeyState")
        if state != "Enabled":
            raise KeyringError(f"the KMS master key is not enabled (state {state})")
        if metadata.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT":
            raise KeyringError("the KMS master key is not an encryption key")
        with self._lock:
            if self._arn is None:
                self._arn = str(metadata["Arn"])


def _is_key_arn(key_id: str) -> bool:
    return key_id.startswith("arn:") and ":key/" in key_id
