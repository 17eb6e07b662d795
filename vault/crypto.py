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


class VaultLocked(Exception):
    """The vault has no key, or not the right one."""


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


def unseal(kek: bytes, token: str) -> str:
    if not token.startswith(PREFIX):
        raise ValueError("not a vault token")
    raw = base64.urlsafe_b64decode(token[len(PREFIX) :])
    nonce_k, sealed_key = raw[:_NONCE], raw[_NONCE : _NONCE + 48]
    nonce_d, sealed = raw[_NONCE + 48 : 2 * _NONCE + 48], raw[2 * _NONCE + 48 :]
    try:
        data_key = AESGCM(kek).decrypt(nonce_k, sealed_key, b"tokenhub-dek")
        return AESGCM(data_key).decrypt(nonce_d, sealed, b"tokenhub-secret").decode()
    except InvalidTag:
        raise VaultLocked("the vault key does not open this secret") from None
