"""The process's vault: unlocked at first use with TOKENHUB_VAULT_PASSWORD, or, when that is
unset, with a key derived from SECRET_KEY (the embedded default: sealed at rest, no setup)."""

from __future__ import annotations

import os
import threading

from django.conf import settings
from django.db import transaction

from .crypto import VaultLocked, derive_kek, seal, unseal
from .models import VaultState

_CHECK = "tokenhub-vault-check"
_lock = threading.Lock()
_kek: bytes | None = None
_locked_reason = ""


def _password() -> str:
    return settings.TOKENHUB_VAULT_PASSWORD or "secret-key:" + settings.SECRET_KEY


def _unlock() -> bytes:
    global _kek, _locked_reason
    with _lock:
        if _kek is not None:
            return _kek
        with transaction.atomic():
            state = VaultState.objects.select_for_update().first()
            if state is None:
                salt = os.urandom(16)
                kek = derive_kek(_password(), salt)
                VaultState.objects.create(salt=salt, check_token=seal(kek, _CHECK))
                _kek = kek
                return kek
        kek = derive_kek(_password(), bytes(state.salt))
        try:
            unseal(kek, state.check_token)
        except VaultLocked:
            _locked_reason = "vault locked: TOKENHUB_VAULT_PASSWORD does not match the one the credentials were sealed with"
            raise VaultLocked(_locked_reason) from None
        _kek = kek
        return kek


def secret_seal(*, plaintext: str) -> str:
    return seal(_unlock(), plaintext)


def secret_unseal(*, token: str) -> str:
    """Raises VaultLocked when the vault cannot open it."""
    if not token:
        return ""
    return unseal(_unlock(), token)


def vault_forget() -> None:
    """Drop the key from memory (tests; a password change)."""
    global _kek
    with _lock:
        _kek = None
