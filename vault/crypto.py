"""Envelope encryption of upstream credentials. Imports nothing of ours.

Each secret gets its own random 256-bit data key; the secret is sealed with AES-256-GCM under
that key, and the data key is sealed under the key-encryption key (KEK), derived with Argon2id
from the vault password and a stored salt. A token is

    v1.<base64url(nonce_k | sealed data key | nonce_d | sealed secret)>

The KEK only lives in memory. A wrong or missing password leaves the vault locked: sealed
secrets cannot be read, and channels that need one are skipped with that reason.
"""

from __future__ import annotations

import base64
import os

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v1."
_NONCE = 12


class SecretUnreadable(Exception):
    """A sealed secret cannot be read now; the message says why and never holds the secret."""


class VaultLocked(SecretUnreadable):
    """The vault has no key, or not the right one."""


class CorruptToken(SecretUnreadable):
    """The stored token is not a well-formed vault token (damaged, truncated, hand-edited)."""


def derive_kek(password: str, salt: bytes) -> bytes:
    return hash_secret_raw(
        password.encode(), salt, time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, type=Type.ID
    )


def seal(kek: bytes, plaintext: str) -> str:
    data_key = AESGCM.generate_key(bit_length=256)
    nonce_k, nonce_d = os.urandom(_NONCE), os.urandom(_NONCE)
    sealed_key = AESGCM(kek).encrypt(nonce_k, data_key, b"tokenhub-dek")
    sealed = AESGCM(data_key).encrypt(nonce_d, plaintext.encode(), b"tokenhub-secret")
    return PREFIX + base64.urlsafe_b64encode(nonce_k + sealed_key + nonce_d + sealed).decode()


def _split(token: str) -> tuple[bytes, bytes, bytes, bytes]:
    if not isinstance(token, str) or not token.startswith(PREFIX):
        raise CorruptToken("the stored credential is not a vault token")
    try:
        raw = base64.urlsafe_b64decode(token[len(PREFIX) :].encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise CorruptToken("the stored credential is damaged (not base64)") from None
    if len(raw) < 2 * _NONCE + 48 + 16:
        raise CorruptToken("the stored credential is damaged (too short)")
    nonce_k, sealed_key = raw[:_NONCE], raw[_NONCE : _NONCE + 48]
    nonce_d, sealed = raw[_NONCE + 48 : 2 * _NONCE + 48], raw[2 * _NONCE + 48 :]
    return nonce_k, sealed_key, nonce_d, sealed


def _data_key(kek: bytes, nonce_k: bytes, sealed_key: bytes) -> bytes:
    try:
        return AESGCM(kek).decrypt(nonce_k, sealed_key, b"tokenhub-dek")
    except InvalidTag:
        raise VaultLocked("the vault key does not open this secret") from None


def unseal(kek: bytes, token: str) -> str:
    nonce_k, sealed_key, nonce_d, sealed = _split(token)
    data_key = _data_key(kek, nonce_k, sealed_key)
    try:
        return AESGCM(data_key).decrypt(nonce_d, sealed, b"tokenhub-secret").decode()
    except (InvalidTag, UnicodeDecodeError):
        raise CorruptToken("the stored credential is damaged (its data key opens, its secret does not)") from None


def rewrap(old_kek: bytes, new_kek: bytes, token: str) -> str:
    """The same secret under a new key-encryption key: only its data key is sealed again."""
    nonce_k, sealed_key, nonce_d, sealed = _split(token)
    data_key = _data_key(old_kek, nonce_k, sealed_key)
    new_nonce_k = os.urandom(_NONCE)
    new_sealed_key = AESGCM(new_kek).encrypt(new_nonce_k, data_key, b"tokenhub-dek")
    return PREFIX + base64.urlsafe_b64encode(new_nonce_k + new_sealed_key + nonce_d + sealed).decode()
